"""A folder of finished Jacobian columns that a killed computation resumes from.

Layout of `out/`:

- `jacobian.npy`: the (P, P) matrix, an `.npy` file in Fortran (column-major) order,
  written through `np.lib.format.open_memmap` so that a block of columns is one
  contiguous range of the file and memory stays bounded; `np.load(path,
  mmap_mode="r")` reads it back without loading it.
- `manifest.json`: what was computed (hashes of the configuration, the chunk
  boundaries), which chunks are finished and the SHA-256 of each finished chunk's
  columns. It is replaced atomically, and only after the chunks it lists have been
  flushed to `jacobian.npy`.

A manifest whose configuration hash differs from the current one is refused with a
`FolderError` naming what differs (unless `force=True`, which starts over). On resume
every finished chunk is checked against its checksum; a damaged one, or all of them
when `jacobian.npy` cannot be opened (truncated), is recomputed, with a warning.
"""

from __future__ import annotations

import errno
import hashlib
import os
import warnings
from typing import Any

import numpy as np

from jacscope._fingerprint import combined_hash, differing
from jacscope._io import FolderError, read_json, write_json_atomic

FORMAT = "jacscope.training_jacobian/1"
MATRIX = "jacobian.npy"
MANIFEST = "manifest.json"


def read_manifest(folder: str) -> dict | None:
    """The manifest in `folder`, or None when there is none."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.exists(path):
        return None
    return read_json(path)


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
        self.hash = combined_hash(self.fingerprint)
        self.info = info
        self._matrix_path = os.path.join(folder, MATRIX)
        self._manifest_path = os.path.join(folder, MANIFEST)
        self._force = force
        self._create = create
        self.finished: set[int] = set()
        self.checksums: dict[int, str] = {}
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
            raise FolderError(
                f"{self._manifest_path} has format {manifest.get('format')!r}, not {FORMAT!r};"
                " pass force=True (--force) to start over"
            )
        if manifest.get("hash") != self.hash:
            theirs = manifest.get("fingerprint", {})
            differ = differing(theirs, self.fingerprint)
            raise FolderError(
                f"{self._manifest_path} belongs to a different computation "
                f"(differs in: {', '.join(differ) or 'format'}); resuming would mix "
                "Jacobians. Pass force=True (--force) to discard it and start over, or "
                "choose another output folder."
            )
        if not os.path.exists(self._matrix_path):
            raise FolderError(
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
            self._recreate_matrix()
            self.finished, self.checksums = set(), {}
            self._write_manifest()
        manifest = read_manifest(self.folder)
        if manifest is None or manifest.get("hash") != self.hash:
            raise FolderError(f"{self._manifest_path} was not created for this computation")
        self.finished = {int(i) for i in manifest["finished"]}
        self.checksums = {int(c): h for c, h in manifest.get("checksums", {}).items()}
        try:
            _check_npy_size(self._matrix_path)
            matrix = np.lib.format.open_memmap(self._matrix_path, mode="r+")
        except (OSError, ValueError) as err:
            if not self._create:
                raise
            warnings.warn(
                f"{self._matrix_path} is damaged ({err}); recomputing its "
                f"{len(self.finished)} finished chunks",
                stacklevel=3,
            )
            self._recreate_matrix()
            self.finished, self.checksums = set(), {}
            self._write_manifest()
            matrix = np.lib.format.open_memmap(self._matrix_path, mode="r+")
        if matrix.shape != self.shape or matrix.dtype != self.dtype:
            raise FolderError(
                f"{self._matrix_path} holds a {matrix.shape} {matrix.dtype} array, expected "
                f"{self.shape} {self.dtype}; pass force=True (--force) to start over"
            )
        self._matrix = matrix
        if self._create:
            self._verify()

    def _recreate_matrix(self) -> None:
        matrix = np.lib.format.open_memmap(
            self._matrix_path, mode="w+", dtype=self.dtype, shape=self.shape, fortran_order=True
        )
        matrix.flush()
        del matrix
        # Reserve the file's blocks now: a full disk is then an OSError (ENOSPC) here,
        # not a SIGBUS when a memory-mapped chunk is first written.
        with open(self._matrix_path, "rb+") as handle:
            try:
                os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
            except OSError as err:
                if err.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise

    def _checksum(self, chunk: int) -> str:
        start, stop = self.chunks[chunk]
        return hashlib.sha256(self._matrix[:, start:stop].tobytes(order="F")).hexdigest()

    def _verify(self) -> None:
        """Drop every finished chunk whose columns no longer match their checksum (or
        that has none), so that it is recomputed, and say so."""
        damaged = sorted(c for c in self.finished if self.checksums.get(c) != self._checksum(c))
        if damaged:
            warnings.warn(
                f"{self._matrix_path}: {len(damaged)} finished chunk(s) no longer match "
                f"their checksums (chunks {', '.join(map(str, damaged[:10]))}"
                f"{', ...' if len(damaged) > 10 else ''}); recomputing them",
                stacklevel=4,
            )
            self.finished.difference_update(damaged)
            for c in damaged:
                self.checksums.pop(c, None)
            self._write_manifest()

    def write(self, chunk: int, block: np.ndarray) -> None:
        """Write the columns of `chunk` (block has at least their number of columns)."""
        start, stop = self.chunks[chunk]
        self._matrix[:, start:stop] = block[:, : stop - start]

    def flush(self) -> None:
        """Make every written column durable (before `commit` lists it)."""
        self._matrix.flush()

    def commit(self, chunks: list[int]) -> None:
        """Record `chunks` as finished, with their checksums, in the manifest (atomic
        replace)."""
        for c in chunks:
            self.checksums[int(c)] = self._checksum(int(c))
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
            "checksums": {str(c): self.checksums[c] for c in sorted(self.checksums)},
            **self.info,
        }
        write_json_atomic(self._manifest_path, manifest, indent=1)


def jacobian_digest(folder: str | os.PathLike) -> str | None:
    """A digest of the finished training Jacobian stored in `folder`: one hash of the
    computation's fingerprint and every chunk's SHA-256, so two folders share it only if
    they hold the same columns of the same computation. Results derived from a J (its
    spectrum, the analyses) record it and are reused only while it is unchanged.

    **Returns:** the hex digest, or `None` unless every chunk of J is finished.
    """
    manifest = read_manifest(os.fspath(folder))
    if manifest is None or len(manifest.get("finished", ())) != len(manifest.get("chunks", ())):
        return None
    return combined_hash({"computation": manifest["hash"], **manifest["checksums"]})


def jacobian_chunks(folder: str | os.PathLike) -> tuple[int, int]:
    """(finished, total) chunks of the training Jacobian stored in `folder`; (0, 0)
    when it holds none."""
    manifest = read_manifest(os.fspath(folder)) or {}
    return len(manifest.get("finished", ())), len(manifest.get("chunks", ()))


def _check_npy_size(path: str) -> None:
    """`ValueError` if the `.npy` file at `path` is shorter than its header says (a
    memory map of it would fault on the missing pages instead of raising)."""
    with open(path, "rb") as handle:
        major, _ = np.lib.format.read_magic(handle)
        read_header = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(handle)
        expected = handle.tell() + int(np.prod(shape)) * np.dtype(dtype).itemsize
    size = os.path.getsize(path)
    if size < expected:
        raise ValueError(f"truncated: {size:,} of {expected:,} bytes")
