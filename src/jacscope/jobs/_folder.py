"""The folder protocol: one owner for every output folder of every command.

A job's folder holds

- `job.json`: the claim, `{"format", "kind", "identity"}`, written before any work.
  `identity` is everything the folder's content depends on (the training setting,
  the method's settings, the run's fingerprint); a later job of another kind or
  identity is refused with the differing fields named, unless `force` starts over.
- `config.toml`: the configuration as the command line reads it back
  (`--config DIR/config.toml` reproduces the run).
- `stages/<name>.json` (+ `<name>.npz`): each finished stage, its JSON written last,
  with the digests of what it was computed from (`depends`); a stage is reused only if
  they match.
- `report.json`: the job's result, written last: its presence marks a finished folder.

One process writes a folder at a time (`jacscope._io.folder_lock`); a refused job
leaves the folder as it found it. Every refusal is a `jacscope.FolderError`.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jacscope._io import FolderError, atomic_path, folder_lock, load_npz, read_json
from jacscope._io import write_json_atomic as write_json
from jacscope._stages import Stages, plain, split_arrays
from jacscope.jobs._config_file import to_toml

FORMAT = "jacscope.job/3"
JOB = "job.json"
CONFIG = "config.toml"
RESULT = "report.json"
STAGES = "stages"

_OWN = (JOB, CONFIG, RESULT, "report.html", STAGES, "figures", "extra")
_OWN += ("jacobian.npy", "manifest.json")  # training_jacobian's chunks of the exact J


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, Mapping):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(_flat(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): tree}


def differing(stored: Any, wanted: Any) -> list[str]:
    """The dotted names of the fields that differ between two JSON trees."""
    a, b = _flat(stored), _flat(wanted)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


class JobFolder(Stages):
    """The output folder of one job (a `Stages` kept on disk), or no folder at all
    (`path=None`: nothing is kept, every stage is computed).

    **Arguments:**

    - `path`: the folder, or `None`.
    - `kind`: what writes it (`"train-jacobian"`, `"train-jacobian --matrix-free"`,
      `"spectrum"`); a folder of another kind is refused.
    - `identity`: the JSON value the folder's content depends on.
    - `sections`: the configuration as `config.toml` holds it, `{table: dataclass or
      value}` (`jacscope.jobs._config_file.to_toml`); written once the folder is claimed.

    `resumed` lists the stages taken from the folder by this job.
    """

    def __init__(
        self,
        path: str | Path | None,
        kind: str,
        identity: Mapping[str, Any],
        sections: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.path = None if path is None else Path(path)
        self.kind = kind
        self.identity = plain(identity)
        self.sections = sections

    @contextlib.contextmanager
    def claimed(self, *, force: bool = False) -> Iterator[JobFolder]:
        """Hold the folder's lock and claim it for this job for the block.

        `force` discards what jobs wrote there first. **Raises:** `FolderError` if
        another process writes the folder, or if it holds a job of another kind or
        identity and not `force` (then nothing is changed).
        """
        if self.path is None:
            yield self
            return
        with folder_lock(self.path):
            stored = read_json(self.path / JOB) if (self.path / JOB).exists() else None
            claim = {"format": FORMAT, "kind": self.kind, "identity": self.identity}
            if stored is not None and stored != claim and not force:
                raise FolderError(self._refusal(stored))
            if force:
                self.clear()
            if force or stored != claim:
                write_json(self.path / JOB, claim)
            text = None if self.sections is None else to_toml(self.sections)
            config = self.path / CONFIG
            if text is not None and not (config.exists() and config.read_text() == text):
                with atomic_path(config) as tmp:
                    tmp.write_text(text, encoding="utf-8")
            yield self

    def _refusal(self, stored: Mapping[str, Any]) -> str:
        if stored.get("kind") != self.kind or stored.get("format") != FORMAT:
            what = f"a `jacscope {stored.get('kind', 'unknown')}` job"
            if stored.get("format") != FORMAT:
                what += f" of format {stored.get('format')!r} (this version writes {FORMAT!r})"
            return f"{self.path} holds {what}; choose another folder or pass --force to discard it"
        names = differing(stored.get("identity"), self.identity)
        return (
            f"{self.path} holds results for another configuration (differing: "
            f"{', '.join(names)}); pass --force to start over, or choose another folder"
        )

    def clear(self) -> None:
        """Remove what jobs write in the folder (other files are left alone)."""
        for name in _OWN:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)

    def load(self, name: str, depends: Mapping[str, Any] | None = None) -> dict | None:
        if self.path is None:
            return None
        path = self.path / STAGES / f"{name}.json"
        if not path.exists():
            return None
        record = read_json(path)
        if record.get("depends") != plain(depends or {}):
            return None
        merged = dict(record["numbers"])
        if record["arrays"]:
            merged.update(load_npz(self.path / STAGES / record["arrays"]))
        merged["seconds"] = record["seconds"]
        return merged

    def save(
        self, name: str, value: Any, *, depends: Mapping[str, Any] | None = None, seconds=0.0
    ) -> dict:
        """Write the stage: its arrays to `stages/<name>.npz`, its numbers and `depends`
        to `stages/<name>.json` (last, marking it finished)."""
        numbers, arrays = split_arrays(value)
        if self.path is not None:
            folder = self.path / STAGES
            if arrays:
                with atomic_path(folder / f"{name}.npz") as tmp, open(tmp, "wb") as handle:
                    np.savez(handle, **arrays)
            record = {
                "name": name,
                "depends": plain(depends or {}),
                "seconds": float(seconds),
                "numbers": numbers,
                "arrays": f"{name}.npz" if arrays else None,
            }
            write_json(folder / f"{name}.json", record)
        return {**numbers, **arrays, "seconds": float(seconds)}

    def finish(self, result: Any) -> dict:
        """Write the job's result as `report.json`, last. **Returns:** it as JSON."""
        data = plain(result)
        if self.path is not None:
            write_json(self.path / RESULT, data)
        return data
