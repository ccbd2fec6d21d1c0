"""`jacscope.load(DIR)`: what an output folder holds, as typed results, without rerunning."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jacscope._io import FolderError, read_json
from jacscope.jobs import lyapunov, matrix_free, spectrum, train_jacobian
from jacscope.jobs._analyses import DEFAULT_ANALYSES
from jacscope.jobs._config_file import build
from jacscope.jobs._folder import FORMAT, JOB, RESULT, STAGES, JobFolder
from jacscope.training import TrainingConfig, jacobian_digest


class FolderResults(NamedTuple):
    """What a job's output folder holds.

    **Fields:**

    - `path`: the folder.
    - `kind`: the command that wrote it (`"train-jacobian"`,
      `"train-jacobian --matrix-free"`, `"spectrum"`, `"lyapunov"`).
    - `config`: its configuration, typed (`TrainingConfig`, `SpectrumConfig` or
      `LyapunovConfig`).
    - `settings`: the method's settings, typed (`ExactSettings` fields are not part of
      a folder's identity, so `None` for an exact folder; `MatrixFreeSettings`), or
      the stored JSON.
    - `result`: the finished result (`TrainJacobianReport`, `MatrixFreeReport`,
      `SpectrumResult` or `LyapunovResult`), `None` while the job has not finished.
    - `done`: the finished stages, in the order they were written.
    - `missing`: the stages a finished job of this kind still needs (with the default
      analyses for an exact folder); rerunning the same command computes them.
    """

    path: Path
    kind: str
    config: Any
    settings: Any
    result: Any
    done: list[str]
    missing: list[str]

    @property
    def finished(self) -> bool:
        """Whether the job finished (`report.json` was written)."""
        return self.result is not None

    def stage(self, name: str) -> dict:
        """The numbers and arrays of the finished stage `name`.

        **Raises:** `KeyError` naming the finished stages if `name` is not one.
        """
        if name not in self.done:
            raise KeyError(f"{name!r} is not finished in {self.path}; finished: {self.done}")
        record = read_json(self.path / STAGES / f"{name}.json")
        return JobFolder(self.path, self.kind, {}).load(name, record["depends"])

    def jacobian(self) -> np.ndarray:
        """The exact J of an exact folder, memory-mapped (read-only)."""
        if "jacobian" not in self.done:
            raise KeyError(f"{self.path} holds no finished exact Jacobian")
        return np.load(self.path / "jacobian.npy", mmap_mode="r")


def load(path: str | os.PathLike) -> FolderResults:
    """The results of the job folder at `path`, finished or partial.

    ```python
    results = jacscope.load("results/demo")
    results.result.regions          # the finished report's region counts
    results.stage("singular-values")["S"]
    results.missing                 # what the same command would still compute
    ```

    **Raises:** `jacscope.FolderError` if `path` is not a job folder of this version, or
    a file in it is damaged.
    """
    path = Path(path)
    if not (path / JOB).exists():
        raise FolderError(f"{path} is not a jacscope output folder (it has no {JOB})")
    claim = read_json(path / JOB)
    if claim.get("format") != FORMAT:
        raise FolderError(f"{path}/{JOB} is of format {claim.get('format')!r}, not {FORMAT!r}")
    kind, identity = claim["kind"], claim["identity"]
    stage_files = sorted((path / STAGES).glob("*.json"), key=os.path.getmtime)
    done = [file.stem for file in stage_files]
    stored = read_json(path / RESULT) if (path / RESULT).exists() else None
    if kind == train_jacobian.KIND:
        config, settings = build(TrainingConfig, identity["config"]), None
        result = None if stored is None else train_jacobian.TrainJacobianReport(**stored)
        if jacobian_digest(path) is not None:
            done.insert(0, "jacobian")
        names = DEFAULT_ANALYSES if result is None else tuple(result.analyses)
        expected = ["jacobian", "singular-values", *(f"analysis-{n}" for n in names)]
    elif kind == matrix_free.KIND:
        config = build(TrainingConfig, identity["config"])
        settings = build(matrix_free.MatrixFreeSettings, identity["settings"])
        result = None if stored is None else matrix_free.MatrixFreeReport(**stored)
        batches = -(-settings.slq.num_probes // settings.slq.probes_per_batch)
        expected = ["top_j", "top_j_minus_i", *(f"density-batch-{b:05d}" for b in range(batches))]
    elif kind == spectrum.KIND:
        config = build(spectrum.SpectrumConfig, identity["config"])
        settings = None
        result = None if stored is None else spectrum.SpectrumResult(**stored)
        expected = ["svd", "trace", "frobenius"]
    elif kind == lyapunov.KIND:
        config, settings = build(lyapunov.LyapunovConfig, identity["config"]), None
        result = None if stored is None else lyapunov.LyapunovResult(**stored)
        expected = list(lyapunov.STAGES)
    else:
        raise FolderError(f"{path} holds a job of unknown kind {kind!r}")
    missing = [name for name in expected if name not in done]
    return FolderResults(path, kind, config, settings, result, done, missing)
