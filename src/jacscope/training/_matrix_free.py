"""The training Jacobian of a large model, analysed without forming it.

`matrix_free_analysis` measures J = d theta_T / d theta_0 through products only
(`training_jacobian_operator`): the top-k singular triplets of J (the chaotic end)
and of J - I (the directions training changes most: chaotic and stable), a density
of J's singular values from stochastic Lanczos quadrature, and from it the number
of chaotic, bulk and stable directions with their standard errors. Everything it
finishes is saved under `out/matrix_free/` as it goes, each probe batch of the
density on its own, so that a killed run resumes without recomputing finished work:

- `manifest.json`: hashes of params0, the batches, `config` and the options; a
  folder written for something else is refused unless `force=True`.
- `top_j.npz` / `top_j.json`, `top_j_minus_i.npz` / `.json`: singular triplets
  (`U` (P, k), `S`, `Vt` (k, P), residuals) and their summary.
- `probes/batch_<b>.npz`: the quadrature nodes and weights of probe batch b.

Citation: Belrose & Scherlis, "Understanding Gradient Descent through the Training
Jacobian", arXiv 2412.07003.
"""

from __future__ import annotations

import resource
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jacscope import linalg
from jacscope._io import atomic_path, read_json, write_json_atomic
from jacscope.operators import identity
from jacscope.training._analysis_spectrum import DEFAULT_TAUS, REGIONS, region_masks
from jacscope.training._operator import TrainingJacobianOperator, training_jacobian_operator
from jacscope.training._run import TrainingRun
from jacscope.training._store import hash_json, hash_tree

STAGES = ("operator", "top_j", "top_j_minus_i", "density")
"""The stages of `matrix_free_analysis`, in order, as named to its progress callback."""

FOLDER = "matrix_free"
_FORMAT = "jacscope.matrix_free/1"
_ESTIMATED = ("density", "regions")


class SingularTriplets(NamedTuple):
    """The top-k singular values of an operator and how well they are resolved.

    **Fields:**

    - `values`: s_1 >= ... >= s_k.
    - `residuals`: `||A v_i - s_i u_i||` (`jacscope.linalg.svd_topk`); some singular
      value of A lies within `residuals[i] / sqrt(2)` of `values[i]`.
    - `relative_residuals`: `residuals[i] / values[i]`.
    - `method`: the `svd_topk` method.
    - `num_matvecs`: products with A or A^T spent.
    - `sweeps`: passes through training they took (a batched product is one).
    - `seconds`: wall time.
    """

    values: list[float]
    residuals: list[float]
    relative_residuals: list[float]
    method: str
    num_matvecs: int
    sweeps: int
    seconds: float


class SingularValueDensity(NamedTuple):
    """A histogram of J's P singular values, estimated by stochastic Lanczos quadrature.

    **Fields:**

    - `edges`: bin edges (log-spaced over the range the quadrature found, the first
      at 0).
    - `counts`: estimated number of singular values per bin (they sum to P).
    - `counts_stderr`: standard errors of `counts` over the probes.
    - `num_probes`, `depth`: probes and Lanczos steps per probe.
    """

    edges: list[float]
    counts: list[float]
    counts_stderr: list[float]
    num_probes: int
    depth: int


class RegionEstimates(NamedTuple):
    """Estimated counts of the chaotic, bulk and stable singular values of J.

    Per tolerance tau (`jacscope.training.region_counts`: chaotic s > 1 + tau, bulk
    |s - 1| <= tau, stable s < 1 - tau), each probe p gives the unbiased estimate
    P sum_j w_pj 1[s_pj in region] from its quadrature nodes s_pj and weights w_pj;
    the value is the mean over probes and the standard error their standard
    deviation / sqrt(num_probes). The quadrature's own bias is not included: it is
    small when the Lanczos depth resolves the spectrum near 1 +- tau.

    **Fields:**

    - `taus`: the tolerances.
    - `chaotic`, `bulk`, `stable`: estimated counts per tau.
    - `chaotic_stderr`, `bulk_stderr`, `stable_stderr`: their standard errors.
    - `bulk_fraction`, `bulk_fraction_stderr`: bulk / P and its standard error.
    - `num_directions`: P.
    - `num_probes`: probes averaged.
    """

    taus: list[float]
    chaotic: list[float]
    chaotic_stderr: list[float]
    bulk: list[float]
    bulk_stderr: list[float]
    stable: list[float]
    stable_stderr: list[float]
    bulk_fraction: list[float]
    bulk_fraction_stderr: list[float]
    num_directions: int
    num_probes: int


class MatrixFreeResult(NamedTuple):
    """What `matrix_free_analysis` found; every field is a plain JSON value.

    **Fields:**

    - `config`: the caller's description of the run (`None` if not given).
    - `num_params`, `num_steps`, `dtype`: P, T and the precision of training.
    - `k`: singular triplets asked for.
    - `top_j`, `top_j_minus_i`: `SingularTriplets._asdict()` of J and of J - I.
    - `density`: `SingularValueDensity._asdict()` (an estimate).
    - `regions`: `RegionEstimates._asdict()` (estimates with standard errors).
    - `cost`: `TrainingOperatorCost._asdict()` of the operator.
    - `sweeps`: passes through training, `{"mv", "rmv", "total"}` (this call only).
    - `training`: loss of the first and last step.
    - `timings`: seconds per stage (`STAGES`) and `total`.
    - `peak_memory_mib`: peak resident memory of the process.
    - `resumed`: the stages (and `density:<batch>`) taken from `out`.
    - `estimated`: the fields that are stochastic estimates (the rest are computed,
      to within their residuals).
    """

    config: dict | None
    num_params: int
    num_steps: int
    dtype: str
    k: int
    top_j: dict
    top_j_minus_i: dict
    density: dict
    regions: dict
    cost: dict
    sweeps: dict
    training: dict
    timings: dict
    peak_memory_mib: float
    resumed: list
    estimated: list


class _Counter:
    """Counts sweeps through training (the operator's `on_sweep`)."""

    def __init__(self):
        self.counts = {"mv": 0, "rmv": 0}
        self.listener: Callable[[], None] | None = None

    def __call__(self, kind: str) -> None:
        self.counts[kind] += 1
        if self.listener is not None:
            self.listener()

    @property
    def total(self) -> int:
        return self.counts["mv"] + self.counts["rmv"]


def _peak_memory_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def _claim(folder: Path, manifest: dict, force: bool) -> None:
    """Make `folder` hold this computation: refuse another one unless `force`."""
    path = folder / "manifest.json"
    if path.exists() and not force:
        stored = read_json(path)
        if stored.get("format") != _FORMAT or stored.get("hash") != manifest["hash"]:
            theirs = stored.get("fingerprint", {})
            differ = [k for k, v in manifest["fingerprint"].items() if theirs.get(k) != v]
            raise ValueError(
                f"{folder} holds a matrix-free analysis of another computation (differs "
                f"in: {', '.join(differ) or 'format'}); pass force=True (--force) to "
                f"discard it, or choose another output folder"
            )
        return
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    write_json_atomic(path, manifest)


def _expected_sweeps(method: str, k: int, depth: int | None, options: dict, size: int) -> int:
    if method == "lanczos":
        return 2 * (depth if depth is not None else min(size, 2 * k + 20))
    return 2 * options["power_iterations"] + 3


def _top_triplets(op, k, *, key, method, depth, options, counter, folder, name, progress):
    """svd_topk of `op` (J or J - I), from `folder/<name>.json` if it is there."""
    if folder is not None and (folder / f"{name}.json").exists():
        return read_json(folder / f"{name}.json"), True
    start, before = time.perf_counter(), counter.total
    expected = _expected_sweeps(method, k, depth, options, op.shape[0])
    counter.listener = lambda: progress(name, counter.total - before, expected)
    progress(name, 0, expected)
    extra = {"depth": depth} if method == "lanczos" else options
    U, S, Vt, info = linalg.svd_topk(op, k, key=key, method=method, **extra)
    S, residuals = np.asarray(S), np.asarray(info.residuals)
    jax.effects_barrier()
    counter.listener = None
    triplets = SingularTriplets(
        values=S.tolist(),
        residuals=residuals.tolist(),
        relative_residuals=(residuals / np.where(S > 0, S, np.inf)).tolist(),
        method=method,
        num_matvecs=int(info.num_matvecs),
        sweeps=counter.total - before,
        seconds=time.perf_counter() - start,
    )._asdict()
    if folder is not None:
        _save_npz(folder / f"{name}.npz", U=np.asarray(U), S=S, Vt=np.asarray(Vt),
                  residuals=residuals)
        write_json_atomic(folder / f"{name}.json", triplets)
    return triplets, False


def matrix_free_analysis(
    run: TrainingRun,
    *,
    k: int = 64,
    key: jax.Array,
    method: Literal["lanczos", "randomized"] = "lanczos",
    depth: int | None = None,
    oversampling: int = 10,
    power_iterations: int = 2,
    num_probes: int = 8,
    probes_per_batch: int = 1,
    density_depth: int = 40,
    num_bins: int = 60,
    taus: Sequence[float] = DEFAULT_TAUS,
    checkpoint_every: int | Literal["sqrt"] | None = "sqrt",
    out: str | Path | None = None,
    force: bool = False,
    config: dict | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> MatrixFreeResult:
    """Top singular triplets, singular-value density and region counts of a training
    Jacobian, from products with it only.

    With J = d theta_T / d theta_0 as `training_jacobian_operator(run)` (P x P, never
    formed):

    1. `top_j`: the k largest singular values of J, the chaotic end of its spectrum,
       by `jacscope.linalg.svd_topk` with their residuals ||J v_i - s_i u_i||.
    2. `top_j_minus_i`: the same for J - I. Along the bulk J v ~ v, so J - I is
       small there and large along the chaotic and stable directions, the ones
       training changes most (Belrose & Scherlis, arXiv 2412.07003).
    3. `density`: stochastic Lanczos quadrature of J^T J: `num_probes` random unit
       vectors z_p, `density_depth` Lanczos steps each (one `mv` and one `rmv` per
       step) give nodes s_pj^2 and weights w_pj with z_p^T f(J^T J) z_p ~
       sum_j w_pj f(s_pj^2), so P mean_p sum_j w_pj f(s_pj^2) estimates
       sum_i f(s_i^2) without bias in the probes. A histogram of the s_i
       (`SingularValueDensity`) and the chaotic, bulk and stable counts per tau
       with standard errors (`RegionEstimates`) are read off it. Probes are run
       `probes_per_batch` at a time and each batch is saved when done.

    **Arguments:**

    - `run`: any `jacscope.training.TrainingRun`.
    - `k`: singular triplets per operator, `1 <= k <= P`.
    - `key`: a `jax.random` key; the same key gives the same result.
    - `method`, `depth`, `oversampling`, `power_iterations`: of `svd_topk`
      (`depth`: Lanczos steps, default `min(P, 2k + 20)`; raise it if the residuals
      are too large).
    - `num_probes`, `probes_per_batch`, `density_depth`: the quadrature.
    - `num_bins`: bins of the histogram.
    - `taus`: tolerances of the bulk |s - 1| <= tau.
    - `checkpoint_every`: of `training_jacobian_operator` (memory/compute of `rmv`).
    - `out`: a folder; finished stages and probe batches are saved in
      `out/matrix_free/` and reused by a later call with the same arguments.
    - `force`: discard what `out/matrix_free/` holds and start over.
    - `config`: a JSON-able description of how the run was built (the step function
      cannot be hashed; this tells runs apart in the manifest).
    - `progress`: `progress(stage, done, total)` as work advances: sweeps through
      training within a stage (`top_j`, `top_j_minus_i`), probe batches for
      `density`.

    **Returns:** a `MatrixFreeResult` of plain values.

    **Raises:** `ValueError` for bad options or if `out` holds another computation;
    `FloatingPointError` if training diverges (naming the step).
    """
    start_all = time.perf_counter()
    progress = progress if progress is not None else (lambda stage, done, total: None)
    for name, value, minimum in (
        ("num_probes", num_probes, 2),
        ("probes_per_batch", probes_per_batch, 1),
        ("density_depth", density_depth, 1),
        ("num_bins", num_bins, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, received {value!r}")
    if method not in ("lanczos", "randomized"):
        raise ValueError(f"method must be 'lanczos' or 'randomized', received {method!r}")
    taus = [float(t) for t in taus]
    options = {
        "k": int(k),
        "method": method,
        "depth": depth,
        "oversampling": int(oversampling),
        "power_iterations": int(power_iterations),
        "num_probes": num_probes,
        "probes_per_batch": probes_per_batch,
        "density_depth": density_depth,
        "key": np.asarray(jax.random.key_data(key)).tolist(),
    }
    timings: dict[str, float] = {}
    resumed: list[str] = []

    t0 = time.perf_counter()
    counter = _Counter()
    op = training_jacobian_operator(run, checkpoint_every=checkpoint_every, on_sweep=counter)
    num_params = op.shape[0]
    losses = np.asarray(op.losses)
    timings["operator"] = time.perf_counter() - t0

    folder = None
    if out is not None:
        folder = Path(out) / FOLDER
        fingerprint = {
            "params0": hash_tree(run.params0),
            "batches": hash_tree(run.batches),
            "config": hash_json(config, "config"),
            "options": hash_json(options, "options"),
        }
        manifest = {
            "format": _FORMAT,
            "hash": hash_json(fingerprint, "fingerprint"),
            "fingerprint": fingerprint,
            "config": config,
            "options": options,
        }
        _claim(folder, manifest, force)

    keys = jax.random.split(key, 3)
    svd_options = {"oversampling": int(oversampling), "power_iterations": int(power_iterations)}
    shifted = op - identity(num_params, op.dtype)
    tops = {}
    for index, (name, operator) in enumerate((("top_j", op), ("top_j_minus_i", shifted))):
        t0 = time.perf_counter()
        tops[name], was_resumed = _top_triplets(
            operator, k, key=keys[index], method=method, depth=depth, options=svd_options,
            counter=counter, folder=folder, name=name, progress=progress,
        )
        if was_resumed:
            resumed.append(name)
        timings[name] = time.perf_counter() - t0

    t0 = time.perf_counter()
    nodes, weights, batch_resumed = _density_probes(
        op, keys[2], num_probes, probes_per_batch, density_depth, folder, progress
    )
    resumed.extend(f"density:{b}" for b in batch_resumed)
    density = _histogram(nodes, weights, num_params, num_bins, density_depth)
    regions = _region_estimates(nodes, weights, num_params, taus)
    timings["density"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start_all
    jax.effects_barrier()
    return MatrixFreeResult(
        config=config,
        num_params=num_params,
        num_steps=run.num_steps,
        dtype=jnp.dtype(op.dtype).name,
        k=int(k),
        top_j=tops["top_j"],
        top_j_minus_i=tops["top_j_minus_i"],
        density=density._asdict(),
        regions=regions._asdict(),
        cost=op.cost()._asdict(),
        sweeps={**counter.counts, "total": counter.total},
        training={"first_step_loss": float(losses[0]), "last_step_loss": float(losses[-1])},
        timings=timings,
        peak_memory_mib=_peak_memory_mib(),
        resumed=resumed,
        estimated=list(_ESTIMATED),
    )


def _density_probes(op, key, num_probes, per_batch, depth, folder, progress):
    """Quadrature nodes (singular values) and weights of every probe, batch by batch."""
    gram = op.T @ op
    num_batches = -(-num_probes // per_batch)
    nodes, weights, resumed = [], [], []
    progress("density", 0, num_batches)
    for batch in range(num_batches):
        path = None if folder is None else folder / "probes" / f"batch_{batch:05d}.npz"
        if path is not None and path.exists():
            with np.load(path) as saved:
                batch_nodes, batch_weights = saved["nodes"], saved["weights"]
            resumed.append(batch)
        else:
            size = min(per_batch, num_probes - batch * per_batch)
            batch_nodes, batch_weights = _quadrature(
                gram, jax.random.fold_in(key, batch), size, depth
            )
            if path is not None:
                _save_npz(path, nodes=batch_nodes, weights=batch_weights)
        nodes.append(batch_nodes)
        weights.append(batch_weights)
        progress("density", batch + 1, num_batches)
    return np.concatenate(nodes), np.concatenate(weights), resumed


def _per_probe(values: np.ndarray) -> tuple[float, float]:
    """Mean over probes (axis 0) and its standard error."""
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.shape[0]))


def _region_estimates(nodes, weights, num_params, taus) -> RegionEstimates:
    counts = {name: ([], []) for name in REGIONS}
    fraction = ([], [])
    for tau in taus:
        masks = region_masks(nodes.ravel(), tau)
        for name in REGIONS:
            inside = masks[name].reshape(nodes.shape)
            value, stderr = _per_probe(num_params * (weights * inside).sum(axis=1))
            counts[name][0].append(value)
            counts[name][1].append(stderr)
            if name == "bulk":
                fraction[0].append(value / num_params)
                fraction[1].append(stderr / num_params)
    return RegionEstimates(
        taus=list(taus),
        chaotic=counts["chaotic"][0],
        chaotic_stderr=counts["chaotic"][1],
        bulk=counts["bulk"][0],
        bulk_stderr=counts["bulk"][1],
        stable=counts["stable"][0],
        stable_stderr=counts["stable"][1],
        bulk_fraction=fraction[0],
        bulk_fraction_stderr=fraction[1],
        num_directions=int(num_params),
        num_probes=int(nodes.shape[0]),
    )


def _histogram(nodes, weights, num_params, num_bins, depth) -> SingularValueDensity:
    """Counts per log-spaced bin (first edge 0) from the probes' nodes and weights."""
    carried = nodes[weights > 0]
    positive = carried[carried > 0]
    top = float(carried.max()) if carried.size else 1.0
    bottom = float(positive.min()) if positive.size else top / 10
    if not bottom < top:
        bottom = top / 10
    edges = np.concatenate([[0.0], np.geomspace(bottom, top * (1 + 1e-6), num_bins)])
    index = np.clip(np.searchsorted(edges, nodes, side="right") - 1, 0, num_bins - 1)
    per_probe = np.zeros((nodes.shape[0], num_bins))
    for probe in range(nodes.shape[0]):
        np.add.at(per_probe[probe], index[probe], num_params * weights[probe])
    stderr = per_probe.std(axis=0, ddof=1) / np.sqrt(nodes.shape[0])
    return SingularValueDensity(
        edges=edges.tolist(),
        counts=per_probe.mean(axis=0).tolist(),
        counts_stderr=stderr.tolist(),
        num_probes=int(nodes.shape[0]),
        depth=int(depth),
    )
