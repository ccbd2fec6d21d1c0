"""Shared test setup: float64 on, fixed PRNG keys."""

import jax
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    """A fixed PRNG key; tests split it for independent draws."""
    return jax.random.key(0)
