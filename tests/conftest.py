"""Shared test setup: float64 on, one CPU device, fixed PRNG keys."""

import jax
import pytest

jax.config.update("jax_enable_x64", True)
# Fix the devices before any test runs: one CPU device in every test of this process,
# whichever test comes first (the command line's `use_cpu_cores` then leaves them as
# they are). Tests of several devices run in subprocesses of their own.
jax.devices()


@pytest.fixture
def key():
    """A fixed PRNG key; tests split it for independent draws."""
    return jax.random.key(0)
