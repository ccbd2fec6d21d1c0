"""The slim core install: the library without the `cli` extra, and the wheel."""

import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from jacscope._extras import EXTRAS

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300
    )


def test_the_library_imports_and_refuses_the_command_line_without_the_cli_extra():
    code = textwrap.dedent(
        f"""
        import importlib.abc, sys

        BLOCKED = {set(EXTRAS["cli"])!r}

        class Absent(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {{name!r}}")
                return None

        sys.meta_path.insert(0, Absent())
        import numpy as np
        import jacscope
        import jacscope.cli

        op = jacscope.LinearOperator(lambda v: 2 * v, lambda v: 2 * v, (3, 3), np.float32)
        assert np.allclose(op.mv(np.ones(3, np.float32)), 2)
        try:
            jacscope.data.load_digits()
        except ImportError as error:
            print("DIGITS:", error)
        status = jacscope.cli.main(["spectrum"])
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print("LOADED:", loaded)
        print("STATUS:", status)
        """
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED: []" in done.stdout
    assert "STATUS: 2" in done.stdout
    assert "DIGITS: the digits data set" in done.stdout
    assert "pip install 'jacscope[cli]'" in done.stdout
    line = done.stderr.strip().splitlines()[-1]
    assert "the command line needs the 'cli' extra" in line and "rich" in line


def _wheel(tmp_path: Path) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (wheel,) = tmp_path.glob("jacscope-*.whl")
    return wheel


def _metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return archive.read(name).decode()


@pytest.mark.slow
def test_the_wheel_installs_in_a_clean_venv_with_complete_metadata(tmp_path):
    import jacscope

    wheel = _wheel(tmp_path)
    metadata = _metadata(wheel)
    assert f"Version: {jacscope.__version__}" in metadata
    assert "License-Expression: Apache-2.0" in metadata and "Classifier: " in metadata
    core = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    for requirement in core:
        if "extra ==" not in requirement:
            assert not any(dist in requirement for dist in EXTRAS["cli"].values()), requirement
    assert any("rich" in r and 'extra == "cli"' in r for r in core)
    venv = tmp_path / "clean"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # the dependencies from this environment, after the venv's own packages: its .pth
    # files (this checkout's editable install among them) are not processed
    (purelib / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    check = subprocess.run(
        [
            str(python),
            "-c",
            "import jacscope, pathlib; print(pathlib.Path(jacscope.__file__).resolve())",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0, check.stderr[-2000:]
    assert Path(check.stdout.strip()).is_relative_to(purelib.resolve())
    version = subprocess.run(
        [str(venv / "bin" / "jacscope"), "--version"], capture_output=True, text=True
    )
    assert version.stdout.strip() == f"jacscope {jacscope.__version__}", version.stderr


@pytest.mark.slow
def test_the_wheel_installs_with_its_dependencies_from_the_package_index(tmp_path):
    wheel = _wheel(tmp_path)
    venv = tmp_path / "clean"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, str(wheel)], check=True, timeout=1200)
    code = "import jacscope, sys; assert 'rich' not in sys.modules; print(jacscope.__version__)"
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    status = subprocess.run([str(venv / "bin" / "jacscope"), "spectrum"], capture_output=True)
    assert status.returncode == 2 and b"pip install 'jacscope[cli]'" in status.stderr
