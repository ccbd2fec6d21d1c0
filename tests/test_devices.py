"""`jacscope.use_cpu_cores`: one JAX CPU device per core, set before JAX runs anything."""

import os
import subprocess
import sys

import jax
import pytest

import jacscope


def test_creates_the_devices_in_a_fresh_process():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    code = "import jacscope, jax; print(jacscope.use_cpu_cores(3), len(jax.devices('cpu')))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["3", "3"]


def test_leaves_running_jax_alone():
    before = len(jax.devices("cpu"))
    assert jacscope.use_cpu_cores(before + 5) == before


@pytest.mark.parametrize("count", [0, -1, 1.5, True])
def test_rejects_bad_counts(count):
    with pytest.raises(ValueError, match="count"):
        jacscope.use_cpu_cores(count)
