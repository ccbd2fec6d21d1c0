"""The exact training Jacobian of a run, its SVD and its analyses, in a folder that resumes.

`run_train_jacobian` builds the run of a `TrainingConfig` (by default the setting of
Belrose & Scherlis, arXiv 2412.07003), trains it, computes J = d theta_T / d theta_0
with `jacscope.training.training_jacobian`, decomposes it with `numpy.linalg.svd` and
runs the selected analyses of `jacscope.training`. Everything it finishes is saved
under the output folder as it goes, so that a killed run resumes where it stopped:

- `jacobian.npy`, `manifest.json`: J, written chunk by chunk by `training_jacobian`.
- `job.json`: the configuration the folder belongs to, and the timings so far.
- `spectrum.npz`: the singular values `S` (and `U`, `Vt` with `save_vectors`).
- `analyses/<name>.json` (+ `.npz`): each analysis result; the JSON file is
  written last and marks the analysis finished.
- `extra/<name>/`: the additional Jacobians of the `data` and `seeds` analyses.

The job prints nothing; it reports through its `progress` and `log` callbacks and
returns a `TrainJacobianReport` of plain values, which `jacscope.report` writes as
`report.json` and `report.html`.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jacscope._io import atomic_path, folder_lock, load_npz, read_json, write_json_atomic
from jacscope._memory import peak_memory_mib
from jacscope._validation import nonfinite_steps
from jacscope.models import accuracy, cross_entropy
from jacscope.training import (
    DEFAULT_EPS,
    DEFAULT_TAUS,
    Setup,
    TrainingConfig,
    alignment,
    build_run,
    bulk_order,
    data_dependence,
    function_space_overlap,
    jacobian_digest,
    output_sensitivity,
    perturbation_response,
    probe_inputs,
    region_counts,
    restricted_training,
    seed_overlap,
    training_jacobian,
)

ANALYSES = (
    "spectrum",
    "alignment",
    "linearity",
    "restricted",
    "outputs",
    "function_space",
    "data",
    "seeds",
)
"""Every analysis the job can run, in the order it runs them."""

DEFAULT_ANALYSES = ANALYSES[:6]
"""The analyses run by default: all but `data` and `seeds`, which need further exact
Jacobians (two and one, each as costly as the main one)."""

TAUS = DEFAULT_TAUS
RESTRICTED_FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.4)
"""Subspace dimensions of the restricted-training analysis, as fractions of P."""

_FORMAT = 1
_NEEDS_VECTORS = {"alignment", "linearity", "restricted", "outputs", "function_space", "seeds"}
_DATA_VARIANTS = (
    ("real", {"labels": "real", "inputs": "real"}),
    ("shuffled labels", {"labels": "shuffled", "inputs": "real"}),
    ("noise inputs", {"labels": "real", "inputs": "noise"}),
)


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


def parse_analyses(names: str | Sequence[str]) -> tuple[str, ...]:
    """Analysis names from a list or a comma-separated string (`"all"`, `"default"`).

    **Returns:** the names in `ANALYSES` order, `"spectrum"` always included.

    **Raises:** `ValueError` naming an unknown analysis.
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    chosen = set()
    for name in names:
        if name == "all":
            chosen.update(ANALYSES)
        elif name == "default":
            chosen.update(DEFAULT_ANALYSES)
        elif name in ANALYSES:
            chosen.add(name)
        else:
            raise ValueError(
                f"unknown analysis {name!r}; choose from {', '.join(ANALYSES)}, all, default"
            )
    chosen.add("spectrum")
    return tuple(name for name in ANALYSES if name in chosen)


def _plain(value: Any) -> Any:
    """`value` with numpy scalars as Python numbers, tuples as lists, NaN/inf as None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def save_result(folder: Path, name: str, result: NamedTuple, seconds: float, params: dict) -> dict:
    """Save an analysis result: arrays to `<name>.npz`, the rest to `<name>.json` (last).

    **Returns:** the JSON record `{"name", "params", "seconds", "numbers", "arrays"}`.
    """
    fields = result._asdict()
    arrays = {k: v for k, v in fields.items() if isinstance(v, np.ndarray)}
    record = {
        "name": name,
        "params": _plain(params),
        "seconds": float(seconds),
        "numbers": _plain({k: v for k, v in fields.items() if k not in arrays}),
        "arrays": f"{name}.npz" if arrays else None,
    }
    if arrays:
        with atomic_path(folder / f"{name}.npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    write_json_atomic(folder / f"{name}.json", record)
    return record


def load_result(folder: Path, name: str) -> dict | None:
    """The finished analysis `name` saved in `folder`: its numbers and arrays, merged.

    **Returns:** `None` if the analysis has not finished there.
    """
    path = Path(folder) / f"{name}.json"
    if not path.exists():
        return None
    record = read_json(path)
    merged = dict(record["numbers"])
    if record["arrays"]:
        merged.update(load_npz(Path(folder) / record["arrays"]))
    return merged


def load_spectrum(folder: Path) -> dict[str, np.ndarray]:
    """The arrays of `spectrum.npz` in a job folder (`S`, and `U`, `Vt` if saved)."""
    return load_npz(Path(folder) / "spectrum.npz")


def _save_spectrum(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def _differences(wanted: dict, stored: dict) -> list[str]:
    keys = sorted(set(wanted) | set(stored))
    return [k for k in keys if wanted.get(k) != stored.get(k)]


_OWN_FILES = ("job.json", "spectrum.npz", "report.json", "report.html")
_OWN_FOLDERS = ("analyses", "extra")
_MATRIX_FREE_FOLDER = "matrix_free"


def clear_folder(out: Path) -> None:
    """Remove what a train-jacobian job (exact or matrix-free) wrote in `out`."""
    for name in (*_OWN_FILES, "jacobian.npy", "manifest.json"):
        (out / name).unlink(missing_ok=True)
    for name in (*_OWN_FOLDERS, _MATRIX_FREE_FOLDER):
        shutil.rmtree(out / name, ignore_errors=True)


def _prepare(out: Path, job: dict, force: bool) -> dict:
    """Claim `out` for `job`: refuse another configuration unless `force`; return state."""
    path = out / "job.json"
    if (out / _MATRIX_FREE_FOLDER).exists() and not force:
        raise ValueError(
            f"{out} holds a matrix-free train-jacobian run; choose another folder or pass "
            "--force (force=True) to discard it"
        )
    if path.exists() and not force:
        stored = read_json(path)
        differing = _differences(job["config"], stored.get("config", {}))
        differing += [k for k in ("svd_dtype", "format") if stored.get(k) != job[k]]
        if differing:
            raise ValueError(
                f"{out} holds results for another configuration (differing: "
                f"{', '.join(differing)}); pass --force (force=True) to start over"
            )
        return stored
    if force:
        # jacobian.npy goes too; training_jacobian would discard it anyway (force)
        clear_folder(out)
    state = {**job, "timings": {}}
    write_json_atomic(path, state)
    return state


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
    bad = nonfinite_steps(losses)
    if bad.size:
        step = int(bad[0])
        raise FloatingPointError(
            f"training diverged: the loss is {losses[step]} at step {step}; lower --lr "
            f"(now {setup.config.learning_rate})"
        )
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
    """The state of one call of `run_train_jacobian` (private)."""

    def __init__(self, setup: Setup, out: Path, state: dict, options: dict, progress, log):
        self.setup = setup
        self.config = setup.config
        self.out = out
        self.state = state
        self.options = options
        self.progress = progress
        self.log = log
        self.resumed: list[str] = []
        self.theta_T = None
        self.J: np.ndarray | None = None
        self.need_vectors = False
        self.digest: str | None = None  # of the main J, once it is finished
        self._svd: tuple | None = None

    def mark_resumed(self, stage: str) -> None:
        if stage not in self.resumed:
            self.resumed.append(stage)

    def record_time(self, stage: str, seconds: float) -> None:
        self.state["timings"][stage] = float(seconds)
        write_json_atomic(self.out / "job.json", self.state)

    def jacobian(self, setup: Setup, folder: Path, label: str) -> tuple[np.ndarray, dict]:
        """J of `setup.run` through `training_jacobian`, saved in (and resumed from) `folder`."""
        # training_jacobian reports once before the first chunk (with the columns found
        # finished in the folder) and after every round of chunks.
        calls = {"first": None, "last": None, "gflop_per_s": None}

        def report(done, total, elapsed, flops):
            calls["first"] = done if calls["first"] is None else calls["first"]
            calls["last"] = done
            if elapsed > 0 and flops:
                calls["gflop_per_s"] = flops / elapsed / 1e9
            if self.progress is not None:
                self.progress(label, done, total, elapsed, flops)

        start = time.perf_counter()
        J = training_jacobian(
            setup.run,
            chunk_size=self.options["chunk_size"],
            max_bytes=self.options["max_bytes"],
            out=folder,
            force=self.options["force"],
            config=dataclasses.asdict(setup.config),
            progress=report,
        )
        info = {
            "seconds": time.perf_counter() - start,
            "computed": calls["last"] is not None and calls["last"] > calls["first"],
            "gflop_per_s": calls["gflop_per_s"],
        }
        return np.asarray(J), info

    def decompose(self, J: np.ndarray, vectors: bool) -> tuple:
        """(U, S, Vt) of J by `numpy.linalg.svd` in the job's SVD dtype (U, Vt None
        unless `vectors`)."""
        A = J.astype(self.options["svd_dtype"], copy=False)
        if vectors:
            return tuple(np.linalg.svd(A))
        return None, np.linalg.svd(A, compute_uv=False), None

    def spectrum(self, vectors: bool) -> tuple:
        """(U, S, Vt) of the main J: from spectrum.npz if it holds what is needed, else
        decomposed (and saved) once."""
        if self._svd is not None and (self._svd[0] is not None or not vectors):
            return self._svd
        saved = load_spectrum(self.out) if (self.out / "spectrum.npz").exists() else {}
        if saved and str(saved.get("jacobian")) != self.digest:
            self.log("spectrum.npz was computed from another J: decomposing again")
            saved = {}
        if "U" in saved or ("S" in saved and not vectors):
            self._svd = (saved.get("U"), saved["S"], saved.get("Vt"))
            self.mark_resumed("svd")
            return self._svd
        kind = "full SVD" if vectors else "singular values"
        self.log(f"{kind} of the {self.J.shape[0]} x {self.J.shape[1]} Jacobian")
        start = time.perf_counter()
        self._svd = self.decompose(self.J, vectors)
        self.record_time("svd", time.perf_counter() - start)
        U, S, Vt = self._svd
        vectors_too = {"U": U, "Vt": Vt} if vectors and self.options["save_vectors"] else {}
        _save_spectrum(
            self.out / "spectrum.npz", S=S, jacobian=np.array(str(self.digest)), **vectors_too
        )
        return self._svd

    def extra_spectrum(self, name: str, config: TrainingConfig, vectors: bool) -> tuple:
        """(S, Vt or None) of the J of another run, cached in extra/<name>/."""
        folder = self.out / "extra" / name
        path = folder / "spectrum.npz"
        if path.exists() and not vectors:
            saved = load_spectrum(folder)
            if str(saved.get("jacobian")) == jacobian_digest(folder):
                return saved["S"], None
        self.log(f"exact training Jacobian of the {name.replace('_', ' ')} run")
        J, _ = self.jacobian(build_run(config), folder, name)
        self.log(f"SVD of the {name.replace('_', ' ')} Jacobian")
        _, S, Vt = self.decompose(J, vectors)
        _save_spectrum(path, S=S, jacobian=np.array(str(jacobian_digest(folder))))
        return S, Vt

    # --- analyses ---------------------------------------------------------------------
    def test_loss_fn(self):
        x = jnp.asarray(self.setup.dataset.x_test)
        y = jnp.asarray(self.setup.dataset.y_test)
        apply_fn = self.setup.apply_fn
        return lambda params: cross_entropy(apply_fn(params, x), y)

    def params(self, name: str) -> dict:
        """The settings of analysis `name` and the digests of the Jacobians it reads; a
        saved result is reused only if they match."""
        config = self.config
        settings = {"taus": list(TAUS)}
        extra = []  # the further Jacobians it reads, by folder name under extra/
        if name == "linearity":
            settings = {"taus": list(TAUS), "directions": ["bulk", "top"], "eps": list(DEFAULT_EPS)}
        elif name == "restricted":
            settings = {"ks": self.options["restricted_ks"]}
        elif name == "outputs":
            settings = {"taus": list(TAUS), "scale": 1.0, "noise_seed": config.seed}
        elif name == "seeds":
            settings = {"taus": list(TAUS), "principal_tau": 1e-2, "other_seed": config.seed + 1}
            extra = [f"seed_{config.seed + 1}"]
        elif name == "data":
            base = dataclasses.replace(config, labels="real", inputs="real")
            extra = [
                label.replace(" ", "_")
                for label, change in _DATA_VARIANTS
                if dataclasses.replace(base, **change) != config
            ]
        digests = {"main": self.digest}
        digests.update({slug: jacobian_digest(self.out / "extra" / slug) for slug in extra})
        return {**settings, "jacobians": digests}

    def analysis(self, name: str, params: dict):
        setup, config = self.setup, self.config
        if name == "spectrum":
            return region_counts(self.spectrum(self.need_vectors)[1], params["taus"])
        if name == "data":
            base = dataclasses.replace(config, labels="real", inputs="real")
            spectra = {}
            for label, change in _DATA_VARIANTS:
                variant = dataclasses.replace(base, **change)
                if variant == config:
                    spectra[label] = self.spectrum(self.need_vectors)[1]
                else:
                    slug = label.replace(" ", "_")
                    spectra[label] = self.extra_spectrum(slug, variant, vectors=False)[0]
            return data_dependence(spectra, params["taus"])
        U, S, Vt = self.spectrum(vectors=True)
        if name == "alignment":
            return alignment(U, S, Vt, params["taus"])
        if name == "linearity":
            return perturbation_response(
                setup.run,
                U,
                S,
                Vt,
                [int(bulk_order(S)[0]), 0],
                labels=params["directions"],
                eval_fn=self.test_loss_fn(),
                eps=params["eps"],
            )
        if name == "restricted":
            run = setup.run
            return restricted_training(
                setup.loss_fn,
                setup.optimizer,
                run.params0,
                run.batches,
                S,
                Vt,
                params["ks"],
                eval_fn=self.test_loss_fn(),
            )
        if name == "outputs":
            data = setup.dataset
            key = jax.random.key(params["noise_seed"])
            return output_sensitivity(
                setup.apply_fn,
                self.theta_T,
                Vt,
                probe_inputs(data.x_train, data.x_test, key),
                scale=params["scale"],
                singular_values=S,
                taus=params["taus"],
            )
        if name == "function_space":
            return function_space_overlap(
                setup.apply_fn,
                setup.run.params0,
                jnp.asarray(setup.dataset.x_test),
                Vt,
                singular_values=S,
                taus=params["taus"],
            )
        if name == "seeds":
            other = dataclasses.replace(config, seed=params["other_seed"])
            S2, Vt2 = self.extra_spectrum(f"seed_{other.seed}", other, vectors=True)
            return seed_overlap(
                S, Vt, S2, Vt2, taus=params["taus"], principal_tau=params["principal_tau"]
            )
        raise AssertionError(name)


def run_train_jacobian(
    config: TrainingConfig,
    out: str | Path,
    *,
    analyses: Sequence[str] = DEFAULT_ANALYSES,
    save_vectors: bool = False,
    svd_dtype: str = "float32",
    restricted_ks: Sequence[int] | None = None,
    chunk_size: int | None = None,
    max_bytes: int | None = None,
    force: bool = False,
    progress: Callable[[str, int, int, float, float], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainJacobianReport:
    """Train, compute the exact training Jacobian, decompose it and analyse it, resumably.

    J = d theta_T / d theta_0 (P x P) comes from `jacscope.training.training_jacobian`
    (chunked, saved to `out/jacobian.npy`); its full SVD J = U diag(S) Vt from
    `numpy.linalg.svd` in `svd_dtype` (LAPACK gesdd). Then each analysis of
    `analyses` runs (see `ANALYSES`; the functions of `jacscope.training` with the
    settings of Belrose & Scherlis, arXiv 2412.07003) and is saved at once. Finished
    work found in `out` for the same configuration is reused: J chunk by chunk, the
    spectrum (the singular vectors only if saved), and every finished analysis.

    **Arguments:**

    - `config`: the `TrainingConfig` of the run.
    - `out`: the output folder.
    - `analyses`: names from `ANALYSES` (`"spectrum"` is always run).
    - `save_vectors`: also save U and Vt in `spectrum.npz` (2 P^2 numbers).
    - `svd_dtype`: `"float32"` or `"float64"`, the precision of the SVD.
    - `restricted_ks`: subspace dimensions of the `restricted` analysis (default:
      `RESTRICTED_FRACTIONS` of P).
    - `chunk_size`, `max_bytes`: passed to `training_jacobian`.
    - `force`: discard what `out` holds and start over (also for another config).
    - `progress`: `progress(label, done_columns, total_columns, elapsed_s, flops)`
      after each chunk of an exact Jacobian (`label` is `"main"` or the extra run).
    - `log`: `log(message)` when a stage begins.

    **Returns:** a `TrainJacobianReport`.

    **Raises:** `ValueError` if `out` holds another configuration (without `force`),
    for an unknown analysis or option; `FloatingPointError` if training diverges.
    """
    start = time.perf_counter()
    analyses = parse_analyses(analyses)
    if svd_dtype not in ("float32", "float64"):
        raise ValueError(f"svd_dtype must be 'float32' or 'float64', received {svd_dtype!r}")
    out = Path(out)
    job_record = {"config": dataclasses.asdict(config), "svd_dtype": svd_dtype, "format": _FORMAT}
    options = {
        "restricted_ks": None if restricted_ks is None else [int(k) for k in restricted_ks],
        "save_vectors": bool(save_vectors),
        "svd_dtype": svd_dtype,
        "chunk_size": chunk_size,
        "max_bytes": max_bytes,
        "force": bool(force),
    }
    # Everything is validated before anything is written.
    setup = build_run(config)
    num_params = int(ravel_pytree(setup.run.params0)[0].size)
    if options["restricted_ks"] is None:
        fractions = RESTRICTED_FRACTIONS
        options["restricted_ks"] = sorted({max(1, round(f * num_params)) for f in fractions})
    elif not all(1 <= k <= num_params for k in options["restricted_ks"]):
        raise ValueError(
            f"restricted_ks must lie in [1, P = {num_params}], received {options['restricted_ks']}"
        )
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        state = _prepare(out, job_record, force)
        job = _Job(setup, out, state, options, progress, log or (lambda message: None))

        job.log("training")
        t0 = time.perf_counter()
        job.theta_T, training = train_and_evaluate(setup)
        job.record_time("train", time.perf_counter() - t0)

        job.log("exact training Jacobian")
        job.J, info = job.jacobian(setup, out, "main")
        job.digest = jacobian_digest(out)
        if info["computed"]:
            job.record_time("jacobian", info["seconds"])
        else:
            job.mark_resumed("jacobian")

        analyses_dir = out / "analyses"
        records = {}
        for name in analyses:
            path = analyses_dir / f"{name}.json"
            saved = read_json(path) if path.exists() else None
            if saved is not None and saved.get("params") == _plain(job.params(name)):
                records[name] = saved
        todo = [name for name in analyses if name not in records]
        job.need_vectors = bool(_NEEDS_VECTORS.intersection(todo)) or save_vectors
        if todo or save_vectors:
            job.spectrum(job.need_vectors)  # timed as its own stage, not inside an analysis
        for name in analyses:
            if name not in todo:
                job.mark_resumed(name)
                continue
            job.log(f"analysis: {name}")
            t0 = time.perf_counter()
            result = job.analysis(name, job.params(name))
            seconds = time.perf_counter() - t0
            # recorded after the run: the further Jacobians it read are finished now
            records[name] = save_result(analyses_dir, name, result, seconds, job.params(name))

        timings = dict(job.state["timings"])
        timings.update({f"analysis:{name}": rec["seconds"] for name, rec in records.items()})
        timings["total"] = time.perf_counter() - start
        return TrainJacobianReport(
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
                "dtype": svd_dtype,
                "seconds": timings.get("svd"),
                "file": "spectrum.npz",
                "vectors_saved": bool(save_vectors),
            },
            regions=records["spectrum"]["numbers"],
            alignment=records["alignment"]["numbers"]["summary"]
            if "alignment" in records
            else None,
            analyses=records,
            timings=timings,
            peak_memory_mib=peak_memory_mib(),
            resumed=job.resumed,
            dtype=config.dtype,
        )
