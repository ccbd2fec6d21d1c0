"""A folder of finished Jacobian columns that a killed computation resumes from.

Layout of `out/`:

- `jacobian.npy`: the (P, P) matrix, an `.npy` file in Fortran (column-major) order,
  written through `np.lib.format.open_memmap` so that a block of columns is one
  contiguous range of the file and memory stays bounded; `np.load(path,
  mmap_mode="r")` reads it back without loading it.
- `manifest.json`: what was computed (hashes of the configuration, the chunk
  boundaries) and which chunks are finished. It is replaced atomically, and only
  after the chunks it lists have been flushed to `jacobian.npy`.

A manifest whose configuration hash differs from the current one is refused with a
`ValueError` naming what differs (unless `force=True`, which starts over).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import jax
import numpy as np

from jacscope._io import read_json, write_json_atomic

FORMAT = "jacscope.training_jacobian/1"
MATRIX = "jacobian.npy"
MANIFEST = "manifest.json"


def hash_tree(tree: Any) -> str:
    """SHA-256 of a pytree of arrays: structure, shapes, dtypes and bytes."""
    digest = hashlib.sha256()
    leaves, treedef = jax.tree.flatten(tree)
    digest.update(str(treedef).encode())
    for leaf in leaves:
        arr = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{arr.dtype.str}{arr.shape}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def hash_json(value: Any, what: str) -> str:
    """SHA-256 of a JSON-able value (keys sorted); `ValueError` naming `what` if it is
    not JSON-able."""
    try:
        text = json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be JSON-serialisable: {err}") from None
    return hashlib.sha256(text.encode()).hexdigest()


def _combined(fingerprint: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()


def read_manifest(folder: str) -> dict | None:
    """The manifest in `folder`, or None when there is none."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        return read_json(path)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{path} is unreadable ({err}); pass force=True (--force) to start over"
        ) from None


class ChunkStore:
    """Finished column chunks of a (P, P) Jacobian in a folder (see the module doc).

    **Arguments:**

    - `folder`: the output folder (created if missing).
    - `shape`, `dtype`: of the Jacobian.
    - `chunks`: the list of `(start, stop)` column ranges.
    - `fingerprint`: named hashes of what determines the result (params0, batches,
      config, layout); the manifest's must match to resume.
    - `info`: extra JSON-able fields for the manifest (num_steps, config, ...).
    - `force`: discard an existing, different manifest instead of refusing it.
    - `create`: whether this process may create or reset the files (in a
      multi-process run only process 0 does; the others open what it made).
    """

    def __init__(
        self,
        folder: str,
        *,
        shape: tuple[int, int],
        dtype: Any,
        chunks: list[tuple[int, int]],
        fingerprint: dict[str, str],
        info: dict[str, Any],
        force: bool,
        create: bool,
    ):
        self.folder = folder
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.chunks = [(int(a), int(b)) for a, b in chunks]
        self.fingerprint = dict(fingerprint)
        self.hash = _combined(self.fingerprint)
        self.info = info
        self._matrix_path = os.path.join(folder, MATRIX)
        self._manifest_path = os.path.join(folder, MANIFEST)
        self._force = force
        self._create = create
        self.finished: set[int] = set()
        self._matrix: np.memmap | None = None

    def check(self) -> bool:
        """Validate an existing folder; return whether it must be (re)created.

        Raises `ValueError` if it holds a different computation and `force` is off.
        """
        manifest = read_manifest(self.folder)
        if manifest is None:
            return True
        if self._force:
            return True
        if manifest.get("format") != FORMAT:
            raise ValueError(
                f"{self._manifest_path} has format {manifest.get('format')!r}, not {FORMAT!r};"
                " pass force=True (--force) to start over"
            )
        if manifest.get("hash") != self.hash:
            theirs = manifest.get("fingerprint", {})
            differ = [k for k in self.fingerprint if theirs.get(k) != self.fingerprint[k]]
            raise ValueError(
                f"{self._manifest_path} belongs to a different computation "
                f"(differs in: {', '.join(differ) or 'format'}); resuming would mix "
                "Jacobians. Pass force=True (--force) to discard it and start over, or "
                "choose another output folder."
            )
        if not os.path.exists(self._matrix_path):
            raise ValueError(
                f"{self._manifest_path} lists finished chunks but {self._matrix_path} is "
                "missing; pass force=True (--force) to start over"
            )
        return False

    def open(self) -> None:
        """Create the files (if `check` said so and this process creates) or open them."""
        os.makedirs(self.folder, exist_ok=True)
        if self._create and self.check():
            for name in (self._manifest_path, self._matrix_path):
                if os.path.exists(name):
                    os.remove(name)
            matrix = np.lib.format.open_memmap(
                self._matrix_path,
                mode="w+",
                dtype=self.dtype,
                shape=self.shape,
                fortran_order=True,
            )
            matrix.flush()
            del matrix
            self._write_manifest()
        manifest = read_manifest(self.folder)
        if manifest is None or manifest.get("hash") != self.hash:
            raise ValueError(f"{self._manifest_path} was not created for this computation")
        self.finished = {int(i) for i in manifest["finished"]}
        matrix = np.lib.format.open_memmap(self._matrix_path, mode="r+")
        if matrix.shape != self.shape or matrix.dtype != self.dtype:
            raise ValueError(
                f"{self._matrix_path} holds a {matrix.shape} {matrix.dtype} array, expected "
                f"{self.shape} {self.dtype}; pass force=True (--force) to start over"
            )
        self._matrix = matrix

    def write(self, chunk: int, block: np.ndarray) -> None:
        """Write the columns of `chunk` (block has at least their number of columns)."""
        start, stop = self.chunks[chunk]
        self._matrix[:, start:stop] = block[:, : stop - start]

    def flush(self) -> None:
        """Make every written column durable (before `commit` lists it)."""
        self._matrix.flush()

    def commit(self, chunks: list[int]) -> None:
        """Record `chunks` as finished in the manifest (atomic replace)."""
        self.finished.update(int(c) for c in chunks)
        self._write_manifest()

    def result(self) -> np.ndarray:
        """The Jacobian, memory-mapped read-only."""
        self._matrix = None
        return np.load(self._matrix_path, mmap_mode="r")

    def _write_manifest(self) -> None:
        manifest = {
            "format": FORMAT,
            "hash": self.hash,
            "fingerprint": self.fingerprint,
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            "chunks": [list(c) for c in self.chunks],
            "finished": sorted(self.finished),
            **self.info,
        }
        write_json_atomic(self._manifest_path, manifest, indent=1)
