"""The training Jacobian of a large run, measured without forming it, in a folder that resumes.

`run_matrix_free` builds the run of a `TrainingConfig` (any size: the MLPs of the
exact path and the LeNet-5-like CNN), trains it for its loss and accuracy, and runs
`jacscope.training.matrix_free_analysis` on J = d theta_T / d theta_0: the top-k
singular triplets of J and of J - I with residuals, a density of J's singular values
and estimated counts of its chaotic, bulk and stable directions with their
uncertainty. Its stages (`top_j`, `top_j_minus_i`, each probe batch of the density)
are kept in the folder's `stages/` as they finish (`jacscope.jobs.JobFolder`), so a
killed run resumes without recomputing them.

The job prints nothing and returns a `MatrixFreeReport` of plain values, which
`jacscope.report` draws (the layout of the exact path, estimated numbers marked).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Literal, NamedTuple

import jax
from jax.flatten_util import ravel_pytree

from jacscope._memory import peak_memory_mib
from jacscope._progress import Progress, ProgressCallback, report_to
from jacscope._validation import check_count
from jacscope.jobs._folder import JobFolder
from jacscope.jobs.train_jacobian import train_and_evaluate
from jacscope.linalg import SLQ, Lanczos, Randomized
from jacscope.training import TrainingConfig, build_run, matrix_free_analysis

MODE = "matrix-free"
"""The `mode` of a matrix-free report.json (an exact one has none)."""

KIND = "train-jacobian --matrix-free"


@dataclasses.dataclass(frozen=True)
class MatrixFreeSettings:
    """How the training Jacobian is measured from products with it.

    **Fields:**

    - `k`: singular triplets of J and of J - I.
    - `method`: the top-k method, `"lanczos"` (settings in `lanczos`) or
      `"randomized"` (settings in `randomized`).
    - `lanczos`: the settings of Lanczos, `jacscope.linalg.Lanczos`.
    - `randomized`: the settings of the randomized SVD, `jacscope.linalg.Randomized`.
    - `slq`: the density's quadrature, `jacscope.linalg.SLQ`.
    - `checkpoint_every`: reverse-mode products recompute from checkpoints every
      ~sqrt(T) steps (`"sqrt"`) or every N steps, or read a stored trajectory
      (`"stored"`).
    - `probe_seed`: seed of the probe and start vectors.
    """

    k: int = 64
    method: Literal["lanczos", "randomized"] = "lanczos"
    lanczos: Lanczos = Lanczos()
    randomized: Randomized = Randomized()
    slq: SLQ = SLQ()
    checkpoint_every: int | Literal["sqrt", "stored"] = "sqrt"
    probe_seed: int = 0

    def __post_init__(self):
        check_count(self.k, "k")
        if self.method not in ("lanczos", "randomized"):
            raise ValueError(f"method must be 'lanczos' or 'randomized', received {self.method!r}")
        if self.checkpoint_every not in ("sqrt", "stored"):
            check_count(self.checkpoint_every, "checkpoint_every")

    @property
    def svd(self) -> Lanczos | Randomized:
        """The chosen top-k method object."""
        return self.lanczos if self.method == "lanczos" else self.randomized


class MatrixFreeReport(NamedTuple):
    """What `run_matrix_free` found; every field is a plain JSON value.

    **Fields:**

    - `mode`: `"matrix-free"`.
    - `config`: `dataclasses.asdict(TrainingConfig)`.
    - `learning_rate`, `num_params`, `num_steps`, `dtype`: of the run.
    - `training`: loss and accuracy of theta_0 and theta_T on the training and test
      sets (as in the exact report).
    - `options`: `dataclasses.asdict(MatrixFreeSettings)`.
    - `analysis`: `jacscope.training.MatrixFreeResult._asdict()`: `top_j`,
      `top_j_minus_i`, `density`, `regions`, `cost`, `sweeps`, `timings`.
    - `timings`: seconds of `train`, `analysis` and `total` (this call).
    - `peak_memory_mib`: peak resident memory of the process.
    - `resumed`: what was taken from the folder instead of computed.
    - `estimated`: the fields of `analysis` that are stochastic estimates (the
      singular values are computed, to within their residuals).
    """

    mode: str
    config: dict
    learning_rate: float
    num_params: int
    num_steps: int
    dtype: str
    training: dict
    options: dict
    analysis: dict
    timings: dict
    peak_memory_mib: float
    resumed: list
    estimated: list


def run_matrix_free(
    config: TrainingConfig,
    out: str | Path | None,
    settings: MatrixFreeSettings = MatrixFreeSettings(),  # noqa: B008 (frozen)
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> MatrixFreeReport:
    """Train, then measure the training Jacobian's spectrum from products with it.

    **Arguments:**

    - `config`: the `TrainingConfig` of the run.
    - `out`: the output folder (`None`: keep nothing).
    - `settings`: a `MatrixFreeSettings`.
    - `force`: discard what `out` holds (an exact job, or another analysis).
    - `progress`: called with a `jacscope.Progress` as each task advances (passes
      through training within each stage).

    **Returns:** a `MatrixFreeReport`.

    **Raises:** `jacscope.FolderError` if `out` holds another computation or another
    process writes it; `ValueError` for bad settings; `FloatingPointError` if training
    diverges (naming the step). Nothing is written before the settings are checked.
    """
    start = time.perf_counter()
    progress = report_to(progress)
    setup = build_run(config)
    num_params = int(ravel_pytree(setup.run.params0)[0].size)
    check_count(settings.k, "k", maximum=num_params)
    identity = {
        "config": dataclasses.asdict(config),
        "settings": dataclasses.asdict(settings),
        "run": setup.run.fingerprint(),
    }
    sections = {
        "command": "train-jacobian",
        "mode": MODE,
        "training": config,
        "matrix_free": settings,
    }
    folder = JobFolder(out, KIND, identity, sections)
    with folder.claimed(force=force):
        progress(Progress("training", 0, 1, "stages"))
        t0 = time.perf_counter()
        _, training = train_and_evaluate(setup)
        timings = {"train": time.perf_counter() - t0}
        progress(Progress("training", 1, 1, "stages"))

        t0 = time.perf_counter()
        result = matrix_free_analysis(
            setup.run,
            k=settings.k,
            key=jax.random.key(settings.probe_seed),
            svd=settings.svd,
            density=settings.slq,
            checkpoint_every=None
            if settings.checkpoint_every == "stored"
            else settings.checkpoint_every,
            stages=folder,
            progress=progress,
        )
        timings["analysis"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - start
        report = MatrixFreeReport(
            mode=MODE,
            config=dataclasses.asdict(config),
            learning_rate=config.learning_rate,
            num_params=num_params,
            num_steps=setup.run.num_steps,
            dtype=config.dtype,
            training=training,
            options=dataclasses.asdict(settings),
            analysis=result._asdict(),
            timings=timings,
            peak_memory_mib=peak_memory_mib(),
            resumed=list(result.resumed),
            estimated=list(result.estimated),
        )
        folder.finish(report)
        return report
