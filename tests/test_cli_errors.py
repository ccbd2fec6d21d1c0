"""The command line answers a user's situation with one line and status 2, never a
traceback: flags checked as they are parsed, before any work; a folder it cannot
create or write; a full disk, with what was kept and how to resume."""

import errno

import pytest

import jacscope.jobs.train_jacobian as train_jacobian_job
from jacscope.cli import main

TINY = ["--hidden", "8", "--epochs", "1", "--train-size", "256", "--batch-size", "32"]


@pytest.mark.parametrize(
    ("command", "flag", "value"),
    [
        ("train-jacobian", "--lr", "inf"),
        ("train-jacobian", "--lr", "nan"),
        ("train-jacobian", "--lr", "-0.1"),
        ("train-jacobian", "--momentum", "1.5"),
        ("train-jacobian", "--hidden", "0"),
        ("train-jacobian", "--tol", "0"),
        ("spectrum", "--lr", "inf"),
        ("spectrum", "--k", "-3"),
    ],
)
def test_bad_flag_values_are_refused_as_they_are_parsed(tmp_path, capsys, command, flag, value):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main([command, flag, value, "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and value in err and "Traceback" not in err
    assert not out.exists()


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert err.startswith("jacscope train-jacobian: error:") and "Traceback" not in err
    return err


def test_an_output_folder_under_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    err = _one_line_error(capsys, ["train-jacobian", *TINY, "--out", str(tmp_path / "file/run")])
    assert "Not a directory" in err and str(tmp_path / "file") in err


def test_an_output_folder_the_system_refuses(capsys):
    err = _one_line_error(capsys, ["train-jacobian", *TINY, "--out", "/proc/jacscope/run"])
    assert "/proc/jacscope" in err


def test_a_full_disk_says_what_is_kept_and_that_the_command_resumes(tmp_path, capsys, monkeypatch):
    def full(path, **arrays):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(train_jacobian_job, "_save_spectrum", full)
    out = tmp_path / "run"
    argv = ["train-jacobian", *TINY, "--analyses", "spectrum", "--out", str(out)]
    err = _one_line_error(capsys, argv)
    assert "the disk is full (No space left on device" in err and "spectrum.npz" in err
    assert f"kept in {out}" in err and "the same command resumes" in err
    assert (out / "jacobian.npy").exists()  # the finished stage is there to resume from


@pytest.mark.parametrize("existing", [False, True])
def test_a_read_only_filesystem(tmp_path, capsys, monkeypatch, existing):
    """EROFS (the suite runs as root, so the refusal is the file system's, simulated at
    the system call) while the folder is created, or while a file is opened inside an
    existing folder."""
    import builtins
    import os

    out = tmp_path / "ro" / "run"
    if existing:
        out.mkdir(parents=True)
    refused = str(tmp_path / "ro")

    def read_only(path):
        if os.fspath(path).startswith(refused):
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))

    real_mkdir, real_open, real_os_open = os.mkdir, builtins.open, os.open

    def mkdir(path, *args, **kwargs):
        read_only(path)
        return real_mkdir(path, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if isinstance(file, str | os.PathLike) and any(c in mode for c in "wax+"):
            read_only(file)
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            read_only(path)
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(os, "open", os_open)
    err = _one_line_error(capsys, ["train-jacobian", *TINY, "--out", str(out)])
    assert "Read-only file system" in err and refused in err
    assert not (out / "jacobian.npy").exists()
