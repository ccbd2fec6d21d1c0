"""The exact training Jacobian of a run, its SVD and its analyses, in a folder that resumes.

`run_train_jacobian` builds the run of a `TrainingConfig` (by default the setting of
Belrose & Scherlis, arXiv 2412.07003), trains it, computes J = d theta_T / d theta_0
with `jacscope.training.training_jacobian`, decomposes it with `numpy.linalg.svd` and
runs the selected analyses of `jacscope.jobs.ANALYSES`. The folder follows the
protocol of `jacscope.jobs.JobFolder`; besides `job.json`, `config.toml` and
`report.json` it holds

- `jacobian.npy`, `manifest.json`: J, written chunk by chunk by `training_jacobian`.
- `stages/singular-values.*` (and `singular-vectors.*` with `save_vectors`), each
  recording the digest of the J it was computed from.
- `stages/analysis-<name>.*`: each analysis, with its settings and the digests of
  the Jacobians it read.
- `extra/<slug>/`: the further exact Jacobians of the `data` and `seeds` analyses.

The job prints nothing; it reports through `progress` (`jacscope.Progress`) and
returns a `TrainJacobianReport` of plain values, which `jacscope.report` draws.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jacscope._memory import peak_memory_mib
from jacscope._progress import Progress, ProgressCallback, report_to
from jacscope._stages import plain
from jacscope._validation import check_count, check_losses
from jacscope.jobs._analyses import ANALYSES, DEFAULT_ANALYSES, RESTRICTED_FRACTIONS, parse_analyses
from jacscope.jobs._folder import JobFolder
from jacscope.models import accuracy, cross_entropy
from jacscope.training import Setup, TrainingConfig, build_run, jacobian_digest, training_jacobian

KIND = "train-jacobian"


@dataclasses.dataclass(frozen=True)
class ExactSettings:
    """How the exact training Jacobian is computed, decomposed and analysed.

    **Fields:**

    - `analyses`: names from `jacscope.jobs.ANALYSES` (`"spectrum"` always runs), or
      `"all"`; `data` and `seeds` each need further exact Jacobians.
    - `svd_dtype`: precision of the SVD (LAPACK gesdd).
    - `save_vectors`: also save U and Vt (2 P^2 numbers) in the folder.
    - `restricted_ks`: subspace dimensions of the `restricted` analysis (default: 2, 5,
      10, 20 and 40% of P).
    - `chunk_size`: columns of J per chunk (default: by memory).
    - `max_bytes`: memory budget of J's chunks, in bytes.
    """

    analyses: tuple[str, ...] = DEFAULT_ANALYSES
    svd_dtype: Literal["float32", "float64"] = "float32"
    save_vectors: bool = False
    restricted_ks: tuple[int, ...] | None = None
    chunk_size: int | None = None
    max_bytes: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "analyses", parse_analyses(self.analyses))
        if self.svd_dtype not in ("float32", "float64"):
            raise ValueError(
                f"svd_dtype must be 'float32' or 'float64', received {self.svd_dtype!r}"
            )
        if self.restricted_ks is not None:
            object.__setattr__(self, "restricted_ks", tuple(self.restricted_ks))
            for k in self.restricted_ks:
                check_count(k, "restricted_ks")
        for name in ("chunk_size", "max_bytes"):
            if getattr(self, name) is not None:
                check_count(getattr(self, name), name)


class TrainJacobianReport(NamedTuple):
    """What `run_train_jacobian` found; every field is a plain JSON value.

    **Fields:**

    - `config`: `dataclasses.asdict(TrainingConfig)`.
    - `learning_rate`: the peak learning rate used.
    - `num_params`: P.
    - `num_steps`: T.
    - `training`: final training-set and test-set loss and accuracy (`train_loss`,
      `train_accuracy`, `test_loss`, `test_accuracy`), the same at initialisation
      (`initial_*`) and the loss of the first and last step.
    - `jacobian`: `file`, `shape`, `dtype`, `seconds` and achieved `gflop_per_s`
      (`None` when J was reused from the folder).
    - `svd`: `routine`, `dtype`, `seconds`, `file`, `vectors_saved`.
    - `regions`: `RegionCounts._asdict()` of the spectrum (counts per tau).
    - `alignment`: the per-region summary of cos(u_i, v_i) (`None` if not run).
    - `analyses`: name -> `{"seconds", "numbers", "arrays"}`: the JSON part of each
      result and the file holding its arrays (`None` if it has none).
    - `timings`: seconds per stage (`train`, `jacobian`, `svd`, each analysis) and
      `total` (this call).
    - `peak_memory_mib`: peak resident memory of the process (`ru_maxrss`).
    - `resumed`: the stages taken from the folder instead of computed.
    - `dtype`: the floating-point type of training.
    """

    config: dict
    learning_rate: float
    num_params: int
    num_steps: int
    training: dict
    jacobian: dict
    svd: dict
    regions: dict
    alignment: list | None
    analyses: dict
    timings: dict
    peak_memory_mib: float
    resumed: list
    dtype: str


@eqx.filter_jit
def _train(run):
    return run.train()


@eqx.filter_jit
def _metrics(apply_fn, params, x, y):
    logits = apply_fn(params, x)
    return cross_entropy(logits, y), accuracy(logits, y)


def train_and_evaluate(setup: Setup) -> tuple[Any, dict]:
    """Train `setup.run`; return theta_T and the loss and accuracy of theta_0 and theta_T.

    **Returns:** `(theta_T, training)` with `training` holding `train_loss`,
    `train_accuracy`, `test_loss`, `test_accuracy`, the same for theta_0
    (`initial_*`) and the loss of the first and last step.

    **Raises:** `FloatingPointError` naming the first step whose loss is not finite.
    """
    theta_T, losses = _train(setup.run)
    losses = np.asarray(losses)
    check_losses(losses, f"lower --lr (now {setup.config.learning_rate})")
    data = setup.dataset
    training = {"first_step_loss": float(losses[0]), "last_step_loss": float(losses[-1])}
    for prefix, params in (("initial_", setup.run.params0), ("", theta_T)):
        for split, x, y in (
            ("train", data.x_train, data.y_train),
            ("test", data.x_test, data.y_test),
        ):
            loss, acc = _metrics(setup.apply_fn, params, jnp.asarray(x), jnp.asarray(y))
            training[f"{prefix}{split}_loss"] = float(loss)
            training[f"{prefix}{split}_accuracy"] = float(acc)
    return theta_T, training


class _Job:
    """The state of one call of `run_train_jacobian`: what the analyses read (private)."""

    def __init__(self, setup: Setup, folder: JobFolder, settings: ExactSettings, progress):
        self.setup = setup
        self.config = setup.config
        self.folder = folder
        self.settings = settings
        self.progress = progress
        self.theta_T = None
        self.J: np.ndarray | None = None
        self.digest: str | None = None  # of the main J, once it is finished
        self.restricted_ks: list[int] = []
        self.svd_seconds: float | None = None  # of the main J's decomposition
        self._S: np.ndarray | None = None
        self._vectors: tuple | None = None

    def jacobian(self, setup: Setup, path: Path | None, label: str) -> tuple[np.ndarray, dict]:
        """J of `setup.run` through `training_jacobian`, kept in (and resumed from) `path`."""
        # training_jacobian reports once before the first chunk (with the columns found
        # finished in the folder) and after every round of chunks.
        seen: list[Progress] = []

        def forward(update: Progress) -> None:
            seen.append(update)
            self.progress(update._replace(task=f"J ({label})"))

        start = time.perf_counter()
        J = training_jacobian(
            setup.run,
            chunk_size=self.settings.chunk_size,
            max_bytes=self.settings.max_bytes,
            out=path,
            config=dataclasses.asdict(setup.config),
            progress=forward,
        )
        last = seen[-1]
        info = {
            "seconds": time.perf_counter() - start,
            "computed": last.done > seen[0].done,
            "gflop_per_s": last.flops / last.elapsed / 1e9 if last.elapsed > 0 else None,
        }
        return np.asarray(J), info

    def _decompose(self, J: np.ndarray, vectors: bool, label: str) -> tuple:
        """(U, S, Vt) of J by `numpy.linalg.svd` in the SVD dtype (U, Vt `None` unless
        `vectors`); LAPACK gives no progress, so the task is shown as begun and done."""
        kind = "full SVD" if vectors else "singular values"
        task = f"{kind} ({label}, {J.shape[0]} x {J.shape[1]})"
        self.progress(Progress(task, 0, 1, "decompositions"))
        A = J.astype(self.settings.svd_dtype, copy=False)
        result = (
            tuple(np.linalg.svd(A)) if vectors else (None, np.linalg.svd(A, compute_uv=False), None)
        )
        self.progress(Progress(task, 1, 1, "decompositions"))
        return result

    def singular_values(self) -> np.ndarray:
        """S of the main J, from the folder when it was computed from this J."""
        if self._S is None:
            stage = self.folder.stage(
                "singular-values",
                lambda: {"S": self._decompose(self.J, False, "main")[1]},
                depends={"jacobian": self.digest, "dtype": self.settings.svd_dtype},
            )
            self._S, self.svd_seconds = stage["S"], stage["seconds"]
        return self._S

    def singular_vectors(self) -> tuple:
        """(U, S, Vt) of the main J: from the folder if saved there, else one full SVD
        (saved with `save_vectors`)."""
        if self._vectors is None:
            depends = {"jacobian": self.digest, "dtype": self.settings.svd_dtype}
            saved = self.folder.load("singular-vectors", depends)
            if saved is not None:
                self.folder.resumed.append("singular-vectors")
                U, Vt = saved["U"], saved["Vt"]
                S = self.singular_values()
            else:
                start = time.perf_counter()
                U, S, Vt = self._decompose(self.J, True, "main")
                seconds = time.perf_counter() - start
                self.svd_seconds = seconds
                if self._S is None and self.folder.load("singular-values", depends) is None:
                    self.folder.save("singular-values", {"S": S}, depends=depends, seconds=seconds)
                self._S = S if self._S is None else self._S
                if self.settings.save_vectors:
                    self.folder.save(
                        "singular-vectors", {"U": U, "Vt": Vt}, depends=depends, seconds=seconds
                    )
            self._vectors = (U, self._S, Vt)
        return self._vectors

    def extra_spectrum(self, slug: str, config: TrainingConfig, vectors: bool = False) -> tuple:
        """(S, Vt or None) of the J of another run, its J kept in `extra/<slug>/`."""
        path = None if self.folder.path is None else self.folder.path / "extra" / slug
        J, _ = self.jacobian(build_run(config), path, slug.replace("_", " "))
        digest = None if path is None else jacobian_digest(path)
        depends = {"jacobian": digest, "dtype": self.settings.svd_dtype}
        if not vectors:
            stage = self.folder.stage(
                f"extra-{slug}-singular-values",
                lambda: {"S": self._decompose(J, False, slug)[1]},
                depends=depends,
            )
            return stage["S"], None
        _, S, Vt = self._decompose(J, True, slug)
        return S, Vt

    def analysis_settings(self, name: str) -> dict:
        """The settings of analysis `name` and the digests of the Jacobians it reads: a
        saved result is reused only if they match."""
        analysis = ANALYSES[name]
        slugs = analysis.extra_runs(self.config)
        base = None if self.folder.path is None else self.folder.path / "extra"
        digests = {"main": self.digest}
        digests.update(
            {slug: None if base is None else jacobian_digest(base / slug) for slug in slugs}
        )
        return {**analysis.settings(self), "jacobians": digests}


def run_train_jacobian(
    config: TrainingConfig,
    out: str | Path | None,
    settings: ExactSettings = ExactSettings(),  # noqa: B008 (frozen)
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> TrainJacobianReport:
    """Train, compute the exact training Jacobian, decompose it and analyse it, resumably.

    J = d theta_T / d theta_0 (P x P) comes from `jacscope.training.training_jacobian`
    (chunked, saved to `out/jacobian.npy`); its SVD J = U diag(S) Vt from
    `numpy.linalg.svd` in `settings.svd_dtype`. Then each analysis of
    `settings.analyses` runs (`jacscope.jobs.ANALYSES`, the settings of Belrose &
    Scherlis, arXiv 2412.07003) and is saved at once; analyses finished in `out` from
    the same J are reported too, so a rerun with fewer analyses keeps them. Finished
    work found in `out` for the same configuration is reused: J chunk by chunk, the
    spectrum (the singular vectors only if saved), and every finished analysis computed
    from the same J.

    **Arguments:**

    - `config`: the `TrainingConfig` of the run.
    - `out`: the output folder (`None`: keep nothing).
    - `settings`: an `ExactSettings`.
    - `force`: discard what `out` holds and start over (also for another config).
    - `progress`: called with a `jacscope.Progress` as each task advances (the
      chunks of every exact Jacobian, each stage).

    **Returns:** a `TrainJacobianReport`.

    **Raises:** `jacscope.FolderError` if `out` holds another configuration (without
    `force`) or another process writes it; `ValueError` for a bad setting;
    `FloatingPointError` if training diverges. Nothing is written before the
    configuration is checked.
    """
    start = time.perf_counter()
    progress = report_to(progress)
    setup = build_run(config)
    num_params = int(ravel_pytree(setup.run.params0)[0].size)
    if settings.restricted_ks is None:
        ks = sorted({max(1, round(f * num_params)) for f in RESTRICTED_FRACTIONS})
    else:
        ks = list(settings.restricted_ks)
        if max(ks) > num_params:
            raise ValueError(f"restricted_ks must lie in [1, P = {num_params}], received {ks}")
    identity = {"config": dataclasses.asdict(config), "svd_dtype": settings.svd_dtype}
    sections = {"command": KIND, "mode": "exact", "training": config, "exact": settings}
    folder = JobFolder(out, KIND, identity, sections)
    with folder.claimed(force=force):
        job = _Job(setup, folder, settings, progress)
        job.restricted_ks = ks
        timings: dict[str, float] = {}

        progress(Progress("training", 0, 1, "stages"))
        t0 = time.perf_counter()
        job.theta_T, training = train_and_evaluate(setup)
        timings["train"] = time.perf_counter() - t0
        progress(Progress("training", 1, 1, "stages"))

        job.J, info = job.jacobian(setup, folder.path, "main")
        job.digest = None if folder.path is None else jacobian_digest(folder.path)
        if info["computed"]:
            timings["jacobian"] = info["seconds"]
        else:
            folder.resumed.append("jacobian")

        # every analysis finished here from this J is kept in the report, asked for or not
        saved = {
            name: folder.load(f"analysis-{name}", job.analysis_settings(name)) for name in ANALYSES
        }
        todo = [name for name in settings.analyses if saved[name] is None]
        # the decomposition is timed as its own stage, not inside an analysis
        if settings.save_vectors or any(ANALYSES[name].needs_vectors for name in todo):
            job.singular_vectors()
        elif todo:
            job.singular_values()
        records = {}
        for name in ANALYSES:
            if name not in settings.analyses and saved[name] is None:
                continue
            if saved[name] is None:
                progress(Progress(f"analysis: {name}", 0, 1, "stages"))
                t0 = time.perf_counter()
                result = ANALYSES[name].compute(job, job.analysis_settings(name))
                # saved with the digests of the further Jacobians it read, finished now
                saved[name] = folder.save(
                    f"analysis-{name}",
                    result,
                    depends=job.analysis_settings(name),
                    seconds=time.perf_counter() - t0,
                )
                progress(Progress(f"analysis: {name}", 1, 1, "stages"))
            else:
                folder.resumed.append(name)
            arrays = [k for k, v in saved[name].items() if isinstance(v, np.ndarray)]
            numbers = {k: v for k, v in saved[name].items() if k not in (*arrays, "seconds")}
            records[name] = {
                "seconds": saved[name]["seconds"],
                "numbers": plain(numbers),
                "arrays": f"stages/analysis-{name}.npz" if arrays else None,
            }
        timings["svd"] = job.svd_seconds
        timings.update({f"analysis:{name}": rec["seconds"] for name, rec in records.items()})
        timings["total"] = time.perf_counter() - start
        report = TrainJacobianReport(
            config=dataclasses.asdict(config),
            learning_rate=config.learning_rate,
            num_params=num_params,
            num_steps=setup.run.num_steps,
            training=training,
            jacobian={
                "file": "jacobian.npy",
                "shape": [int(d) for d in job.J.shape],
                "dtype": job.J.dtype.name,
                "seconds": timings.get("jacobian"),
                "gflop_per_s": info["gflop_per_s"],
            },
            svd={
                "routine": "numpy.linalg.svd (LAPACK gesdd)",
                "dtype": settings.svd_dtype,
                "seconds": timings["svd"],
                "file": "stages/singular-values.npz",
                "vectors_saved": bool(settings.save_vectors),
            },
            regions=records["spectrum"]["numbers"],
            alignment=records["alignment"]["numbers"]["summary"]
            if "alignment" in records
            else None,
            analyses=records,
            timings=timings,
            peak_memory_mib=peak_memory_mib(),
            resumed=list(folder.resumed),
            dtype=config.dtype,
        )
        folder.finish(report)
        return report
