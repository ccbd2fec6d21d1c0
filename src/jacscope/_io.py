"""Atomic writes (a file appears complete under its final name, or not at all) and the
one-writer lock of an output folder.

Each writer produces a temporary file next to the target (same directory, so the
final `os.replace` is an atomic rename on POSIX and Windows) and renames it only
once the content is fully written and flushed. An interrupted run leaves at most a
stray `.*.tmp` file, never a truncated result under the real name.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write `path` through; rename it into place on success.

    The parent directory is created if needed. If the body raises, the temporary
    file is removed and `path` is left as it was.

    ```python
    with atomic_path(out / "figure.png") as tmp:
        fig.savefig(tmp, format="png")
    ```
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Write `obj` as JSON to `path` atomically; return the path.

    `obj` must be JSON-serialisable as is (NamedTuples become lists: pass
    `result._asdict()` to keep the field names). Non-finite floats are refused
    (`ValueError`), since they are not valid JSON.
    """
    text = json.dumps(obj, indent=indent, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value stored at `path`; a missing, unreadable or damaged file is a
    `FolderError` naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FolderError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FolderError(f"{path} is unreadable or damaged ({err}){_START_OVER}") from None


def load_npz(path: str | os.PathLike) -> dict[str, Any]:
    """The arrays stored in the `.npz` file at `path`, read in full; a missing,
    truncated or damaged file is a `FolderError` naming it."""
    try:
        with np.load(path) as data:
            return {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise FolderError(f"{path} is missing") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise FolderError(f"{path} is unreadable or damaged ({err}){_START_OVER}") from None


_START_OVER = (
    "; delete it and rerun the command to recompute it, or pass force=True (--force) to start over"
)


class FolderError(ValueError):
    """An output folder cannot be used as asked: it holds another computation, another
    live process is writing it, or what it holds is damaged beyond reuse."""


_HELD: dict[str, int] = {}
"""Folders this process holds the lock of, with how many nested holders."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold the folder's writer lock (an advisory `flock` on the folder itself) for the block.

    One process writes a folder at a time: a second writer, `force` or not, gets a
    `FolderError` naming the holder (its pid and command line, which the holder keeps
    in `folder/.writer` while it holds the lock). The lock is the kernel's, so it is
    released when the holder exits, however it exits (a SIGKILL too); a refused writer
    leaves the folder as it found it. Nested holders in one process share it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(folder)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    writer = folder / ".writer"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        try:
            holder = writer.read_text(errors="replace").strip()
        except OSError:
            holder = ""
        raise FolderError(
            f"{folder} is being written by {holder or 'another process'}; wait for it to "
            "finish or choose another folder (force does not override a live writer)"
        ) from None
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    writer.write_text(
        f"pid {os.getpid()} on {socket.gethostname()} since {stamp} "
        f"({' '.join(sys.argv) or 'python'})\n"
    )
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        writer.unlink(missing_ok=True)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
