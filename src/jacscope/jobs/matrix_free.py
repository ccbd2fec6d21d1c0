"""The training Jacobian of a large run, measured without forming it, in a folder that resumes.

`run_matrix_free` builds the run of a `TrainingConfig` (any size: the MLPs of the
exact path and the LeNet-5-like CNN), trains it for its loss and accuracy, and runs
`jacscope.training.matrix_free_analysis` on J = d theta_T / d theta_0: the top-k
singular triplets of J and of J - I with residuals, a density of J's singular values
and estimated counts of its chaotic, bulk and stable directions with their
uncertainty. Finished stages and probe batches are saved under `out/matrix_free/`
as they complete, so a killed run resumes without recomputing them.

A folder holds either an exact job (`jacscope.jobs.train_jacobian`) or a matrix-free
one; the job refuses a folder holding the other unless `force` clears it. It prints
nothing and returns a `MatrixFreeReport` of plain values, which `jacscope.report`
writes as `report.json` and `report.html` (the same layout as the exact path, with
the estimated numbers marked).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, NamedTuple

import jax
from jax.flatten_util import ravel_pytree

from jacscope._io import folder_lock
from jacscope._memory import peak_memory_mib
from jacscope._validation import check_count
from jacscope.jobs.train_jacobian import clear_folder, train_and_evaluate
from jacscope.training import TrainingConfig, build_run, matrix_free_analysis

MODE = "matrix-free"
"""The `mode` of a matrix-free report.json (an exact one has none)."""


class MatrixFreeReport(NamedTuple):
    """What `run_matrix_free` found; every field is a plain JSON value.

    **Fields:**

    - `mode`: `"matrix-free"`.
    - `config`: `dataclasses.asdict(TrainingConfig)`.
    - `learning_rate`, `num_params`, `num_steps`, `dtype`: of the run.
    - `training`: loss and accuracy of theta_0 and theta_T on the training and test
      sets (as in the exact report).
    - `options`: the settings of the analysis (k, method, depths, probes, seed).
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
    out: str | Path,
    *,
    k: int = 64,
    method: Literal["lanczos", "randomized"] = "lanczos",
    depth: int | None = None,
    tol: float | None = None,
    num_probes: int = 8,
    density_depth: int = 40,
    checkpoint_every: int | Literal["sqrt"] | None = "sqrt",
    seed: int = 0,
    force: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> MatrixFreeReport:
    """Train, then measure the training Jacobian's spectrum from products with it.

    **Arguments:**

    - `config`: the `TrainingConfig` of the run.
    - `out`: the output folder (work is saved in `out/matrix_free/`).
    - `k`, `method`, `depth`: top-k singular triplets of J and of J - I by
      `jacscope.linalg.svd_topk` (`depth`: Lanczos steps, default `min(P, 3k + 20)`).
    - `tol`: Lanczos only; stop each iteration early once every residual is at most
      `tol` times its singular value (`depth` is then the most steps spent).
    - `num_probes`, `density_depth`: probes and Lanczos steps of the density.
    - `checkpoint_every`: memory/compute trade-off of the reverse-mode product
      (`"sqrt"`: checkpoints every ~sqrt(T) steps; an int; `None`: store the
      trajectory); see `jacscope.training_jacobian_operator`.
    - `seed`: seed of the probe and start vectors.
    - `force`: discard what `out` holds (an exact job, or another analysis).
    - `progress`: `progress(stage, done, total)`, counting sweeps through training.
    - `log`: `log(message)` when a stage begins.

    **Returns:** a `MatrixFreeReport`.

    **Raises:** `ValueError` for bad options or if `out` holds another computation;
    `FloatingPointError` if training diverges (naming the step).
    """
    start = time.perf_counter()
    log = log or (lambda message: None)
    setup = build_run(config)
    num_params = int(ravel_pytree(setup.run.params0)[0].size)
    check_count(k, "k", maximum=num_params)
    out = Path(out)
    with folder_lock(out):
        if (out / "job.json").exists():
            if not force:
                raise ValueError(
                    f"{out} holds an exact train-jacobian run; choose another folder or pass "
                    "--force (force=True) to discard it"
                )
            clear_folder(out)
        out.mkdir(parents=True, exist_ok=True)
        if force:
            # report.json marks a finished folder; a forced run replaces what it describes.
            # Without force the analysis refuses another computation before writing, and the
            # same computation gives the same report, so a refused rerun changes nothing.
            (out / "report.json").unlink(missing_ok=True)

        log("training")
        t0 = time.perf_counter()
        _, training = train_and_evaluate(setup)
        timings = {"train": time.perf_counter() - t0}

        log("matrix-free analysis")
        options = {
            "k": k,
            "method": method,
            "depth": depth,
            "tol": tol,
            "num_probes": num_probes,
            "density_depth": density_depth,
            "checkpoint_every": checkpoint_every,
            "seed": seed,
        }
        t0 = time.perf_counter()
        result = matrix_free_analysis(
            setup.run,
            k=k,
            key=jax.random.key(seed),
            method=method,
            depth=depth,
            tol=tol,
            num_probes=num_probes,
            density_depth=density_depth,
            checkpoint_every=checkpoint_every,
            out=out,
            force=force,
            config=dataclasses.asdict(config),
            progress=progress,
        )
        timings["analysis"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - start
        return MatrixFreeReport(
            mode=MODE,
            config=dataclasses.asdict(config),
            learning_rate=config.learning_rate,
            num_params=num_params,
            num_steps=setup.run.num_steps,
            dtype=config.dtype,
            training=training,
            options=options,
            analysis=result._asdict(),
            timings=timings,
            peak_memory_mib=peak_memory_mib(),
            resumed=list(result.resumed),
            estimated=list(result.estimated),
        )
