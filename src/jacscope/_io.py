"""Atomic writes: a file appears complete under its final name, or not at all.

Each writer produces a temporary file next to the target (same directory, so the
final `os.replace` is an atomic rename on POSIX and Windows) and renames it only
once the content is fully written and flushed. An interrupted run leaves at most a
stray `.*.tmp` file, never a truncated result under the real name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


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
    """The JSON value stored at `path`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
