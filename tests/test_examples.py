"""Every gallery example in `examples/` runs to the end, at its reduced size, in a
subprocess; each ends with assertions about its own result, so an example that
breaks fails here."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("plot_*.py"))
FAST = {"plot_gradient_explosion"}
"""The examples run in `make test-slow` at their reduced size (most take 25 s or more,
mostly compilation), keeping `make test` under 10 minutes on 2 cores; the 12-second
gradient-explosion example also runs in `make test`. The paper's setting,
which `make demo` runs, is also checked end to end by tests/test_cli_train_jacobian.py."""


@pytest.mark.parametrize(
    "script",
    [p if p.stem in FAST else pytest.param(p, marks=pytest.mark.slow) for p in EXAMPLES],
    ids=[path.stem for path in EXAMPLES],
)
def test_example_runs(script, tmp_path):
    env = {
        **os.environ,
        "JACSCOPE_EXAMPLE_SIZE": "small",
        "MPLBACKEND": "Agg",
        "JACSCOPE_CPU_DEVICES": "1",
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{script.name} failed:\n{done.stderr[-4000:]}"


def test_examples_are_found():
    assert len(EXAMPLES) >= 9
