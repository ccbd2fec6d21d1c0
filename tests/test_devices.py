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


def _devices_after(code, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JACSCOPE_CPU_DEVICES")}
    out = subprocess.run(
        [sys.executable, "-c", code + "; print(len(jax.devices('cpu')))"],
        env={**clean, **env},
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or out.stderr.strip().splitlines()[-1]


def test_importing_jacscope_makes_each_core_a_device_unless_told_otherwise():
    cores = str(os.cpu_count())
    assert _devices_after("import jax, jacscope") == cores
    assert _devices_after("import jax, jacscope", JACSCOPE_CPU_DEVICES="1") == "1"
    assert _devices_after("import jax; jax.devices(); import jacscope") == "1"
    chosen = "import jax; jax.config.update('jax_num_cpu_devices', 3); import jacscope"
    assert _devices_after(chosen) == "3"
    assert "JACSCOPE_CPU_DEVICES must be a positive integer" in _devices_after(
        "import jax, jacscope", JACSCOPE_CPU_DEVICES="two"
    )
