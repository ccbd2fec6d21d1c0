"""The command line answers a user's situation with one line and status 2, never a
traceback: flags checked as they are parsed, before any work; a folder it cannot
create or write; a full disk, with what was kept and how to resume."""

import errno
import re

import pytest

from jacscope.cli import main
from jacscope.jobs import JobFolder

TINY = ["--hidden", "8", "--epochs", "1", "--train-size", "256", "--batch-size", "32"]


@pytest.mark.parametrize(
    ("command", "flag", "value"),
    [
        ("train-jacobian", "--lr", "inf"),
        ("train-jacobian", "--lr", "nan"),
        ("train-jacobian", "--lr", "-0.1"),
        ("train-jacobian", "--momentum", "1.5"),
        ("train-jacobian", "--hidden", "0"),
        ("train-jacobian --matrix-free", "--lanczos-tol", "0"),
        ("train-jacobian --matrix-free", "--slq-num-probes", "1"),
        ("spectrum", "--lr", "inf"),
        ("spectrum", "--lr", "0"),
        ("spectrum", "--k", "-3"),
    ],
)
def test_bad_flag_values_are_refused_before_any_work(tmp_path, capsys, command, flag, value):
    """As they are parsed (a value that is not a finite number) or as the configuration
    is built (a value out of range): one line naming the setting, nothing written."""
    out = tmp_path / "run"
    try:
        status = main([*command.split(), flag, value, "--out", str(out)])
    except SystemExit as exit_info:
        status = exit_info.code
    assert status == 2
    err = " ".join(capsys.readouterr().err.split())
    setting = flag.removeprefix("--").removeprefix("lanczos-").removeprefix("slq-")
    assert (f"argument {flag}" in err or setting.replace("-", "_") in err) and value in err
    assert "Traceback" not in err and len(err) < 300
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["train-jacobian", "--hiden", "8"], "did you mean --hidden?"),
        (["train-jacobian", "--optimizer", "adm"], "did you mean adam?"),
        (["spectrum", "--wrt", "param"], "did you mean params?"),
    ],
)
def test_a_misspelt_flag_or_choice_gets_one_line_with_a_suggestion(
    tmp_path, capsys, argv, suggestion
):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert suggestion in " ".join(err.split()) and "usage:" not in err
    assert len(err.strip().splitlines()) <= 2  # one line (rich may wrap it)


def test_an_output_folder_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    err = _one_line_error(capsys, ["train-jacobian", *TINY, "--out", str(tmp_path / "file")])
    assert "is a file" in err or "Not a directory" in err


def test_ctrl_c_says_what_was_saved(tmp_path, capsys, monkeypatch):
    """Interrupted after the second chunk of J: no traceback, the chunks saved named, and
    the same command resumes from them."""
    import jacscope.training._jacobian as exact

    real = exact.training_jacobian
    reports = []

    def interrupted(run, **kwargs):
        def progress(update):
            reports.append(update)
            if len(reports) == 2:  # after the first round of chunks
                raise KeyboardInterrupt

        return real(run, **{**kwargs, "chunk_size": 20, "progress": progress})

    monkeypatch.setattr("jacscope.jobs.train_jacobian.training_jacobian", interrupted)
    out = tmp_path / "run"
    assert main(["train-jacobian", *TINY, "--out", str(out)]) == 130
    err = " ".join(capsys.readouterr().err.split())
    saved = re.search(r"interrupted: (\d+) of 31 chunks of J saved", err)  # 610 columns
    assert saved and 1 <= int(saved.group(1)) < 31, err  # one chunk per device in a round
    assert "rerun the same command to resume" in err and "Traceback" not in err


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
    def full(self, name, value, **kwargs):
        path = self.path / "stages" / f"{name}.npz"
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(JobFolder, "save", full)
    out = tmp_path / "run"
    argv = ["train-jacobian", *TINY, "--analyses", "spectrum", "--out", str(out)]
    err = _one_line_error(capsys, argv)
    assert "the disk is full (No space left on device" in err and "singular-values.npz" in err
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
