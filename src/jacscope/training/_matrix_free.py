"""The training Jacobian of a large model, analysed without forming it.

`matrix_free_analysis` measures J = d theta_T / d theta_0 through products only
(`training_jacobian_operator`): the top-k singular triplets of J (the chaotic end)
and of J - I (the directions training changes most: chaotic and stable), a density
of J's singular values from stochastic Lanczos quadrature, and from it the number
of chaotic, bulk and stable directions with their uncertainty. It runs in stages
(`top_j`, `top_j_minus_i`, one `density-batch-<b>` per probe batch) through a
`Stages`: a `jacscope.jobs.JobFolder` keeps each finished stage on disk, so that a
killed analysis resumes without recomputing finished work.

Citation: Belrose & Scherlis, "Understanding Gradient Descent through the Training
Jacobian", arXiv 2412.07003.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jacscope import linalg
from jacscope._fingerprint import hash_json
from jacscope._memory import peak_memory_mib
from jacscope._progress import Progress, ProgressCallback, report_to
from jacscope._stages import Stages
from jacscope._validation import check_count
from jacscope.linalg import SLQ, Lanczos, Randomized
from jacscope.linalg._svd import default_depth as linalg_default_depth
from jacscope.operators import identity
from jacscope.training._analysis_spectrum import DEFAULT_TAUS, estimated_region_counts
from jacscope.training._operator import training_jacobian_operator
from jacscope.training._run import TrainingRun

STAGES = ("operator", "top_j", "top_j_minus_i", "density")
"""The stages of `matrix_free_analysis`, in order (the keys of its `timings`); progress
is reported for the last three."""

_ESTIMATED = ("density", "regions")


class SingularTriplets(NamedTuple):
    """The top-k singular values of an operator and how well they are resolved.

    **Fields:**

    - `values`: s_1 >= ... >= s_k.
    - `residuals`: of the pair (`jacscope.linalg.svd_topk`); some singular
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
    """The density of J's P singular values, estimated by stochastic Lanczos quadrature.

    **Fields:**

    - `grid`, `density`: the Gaussian-smoothed density of
      `jacscope.linalg.spectral_density` (integrates to P), on a grid from 0 to just
      above the largest singular value found.
    - `bandwidth`: its kernel width.
    - `edges`: histogram bin edges (log-spaced up to the largest quadrature node, the
      first at 0).
    - `counts`: estimated number of singular values per bin (they sum to P).
    - `counts_stderr`: standard errors of `counts` over the probes.
    - `counts_range`: per bin, the 95% interval of `jacscope.linalg.count_in`, which
      also holds the quadrature error (a bin's exact count can differ from a
      point estimate whose standard error is 0).
    - `num_probes`, `depth`: probes and Lanczos steps per probe.
    """

    grid: list[float]
    density: list[float]
    bandwidth: float
    edges: list[float]
    counts: list[float]
    counts_stderr: list[float]
    counts_range: list[list[float]]
    num_probes: int
    depth: int


class MatrixFreeResult(NamedTuple):
    """What `matrix_free_analysis` found; every field is a plain JSON value.

    **Fields:**

    - `num_params`, `num_steps`, `dtype`: P, T and the precision of training.
    - `k`: singular triplets asked for.
    - `top_j`, `top_j_minus_i`: `SingularTriplets._asdict()` of J and of J - I.
    - `density`: `SingularValueDensity._asdict()` (an estimate).
    - `regions`: `RegionCounts._asdict()`, estimated (counts with standard errors and ranges).
    - `cost`: `TrainingOperatorCost._asdict()` of the operator.
    - `sweeps`: passes through training, `{"mv", "rmv", "total"}` (this call only).
    - `training`: loss of the first and last step.
    - `timings`: seconds per stage (`STAGES`) and `total`.
    - `peak_memory_mib`: peak resident memory of the process.
    - `resumed`: the stages given back by `stages` instead of computed.
    - `estimated`: the fields that are stochastic estimates (the rest are computed,
      to within their residuals).
    """

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
    """Counts sweeps through training and tells a listener (progress) about each."""

    def __init__(self):
        self.counts = {"mv": 0, "rmv": 0}
        self.listener: Callable[[], None] | None = None

    def add(self, kind: str) -> None:
        self.counts[kind] += 1
        if self.listener is not None:
            self.listener()

    @property
    def total(self) -> int:
        return self.counts["mv"] + self.counts["rmv"]


_ACTIVE: list[_Counter] = []


@contextlib.contextmanager
def _counting() -> Iterator[_Counter]:
    """A fresh counter that receives the sweeps made inside the block."""
    counter = _Counter()
    _ACTIVE.append(counter)
    try:
        yield counter
    finally:
        jax.effects_barrier()
        _ACTIVE.remove(counter)


def _count_sweep(kind: str) -> None:
    """The operator's `on_sweep`: one function for every call, so compiled programs are
    shared between calls, forwarding to the counter of the analysis now running."""
    if _ACTIVE:
        _ACTIVE[-1].add(kind)


_LANCZOS, _SLQ = Lanczos(), SLQ()


def _expected_sweeps(svd: Lanczos | Randomized, k: int, size: int) -> int:
    # svd_topk's own schedule, and one (batched) sweep for the k explicit residuals
    if isinstance(svd, Lanczos):
        explicit = int(svd.residuals == "explicit")
        return (
            2 * (svd.depth if svd.depth is not None else linalg_default_depth(k, size)) + explicit
        )
    return 2 * svd.power_iterations + 3


def _top_triplets(op, k, key, svd, counter, progress, name) -> dict:
    """svd_topk of `op` (J or J - I): the triplets as arrays and their summary."""
    start, before = time.perf_counter(), counter.total
    expected = _expected_sweeps(svd, k, op.shape[0])
    unit = "passes through training"
    counter.listener = lambda: progress(Progress(name, counter.total - before, expected, unit))
    progress(Progress(name, 0, expected, unit))
    U, S, Vt, info = linalg.svd_topk(op, k, key=key, **svd.svd_topk_arguments())
    S, residuals = np.asarray(S), np.asarray(info.residuals)
    jax.effects_barrier()
    counter.listener = None
    spent = counter.total - before
    progress(Progress(name, spent, spent, unit))  # tol may stop it early
    summary = SingularTriplets(
        values=S.tolist(),
        residuals=residuals.tolist(),
        relative_residuals=(residuals / np.where(S > 0, S, np.inf)).tolist(),
        method=svd.svd_topk_arguments()["method"],
        num_matvecs=int(info.num_matvecs),
        sweeps=spent,
        seconds=time.perf_counter() - start,
    )
    return {**summary._asdict(), "U": np.asarray(U), "S": S, "Vt": np.asarray(Vt)}


def matrix_free_analysis(
    run: TrainingRun,
    *,
    k: int = 64,
    key: jax.Array,
    svd: Lanczos | Randomized = _LANCZOS,
    density: SLQ = _SLQ,
    num_bins: int = 60,
    num_points: int = 512,
    bandwidth: float | None = None,
    taus: Sequence[float] = DEFAULT_TAUS,
    resolution: float = 0.02,
    checkpoint_every: int | Literal["sqrt"] | None = "sqrt",
    stages: Stages | None = None,
    progress: ProgressCallback | None = None,
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
    3. `density`: stochastic Lanczos quadrature (`jacscope.linalg.spectral_density`,
       singular values): each of the `density.num_probes` Rademacher probes z_p and
       `density.depth` Golub-Kahan steps (one `mv` and one `rmv` each) give nodes
       s_pj and weights w_pj with z_p^T f(J J^T) z_p ~ sum_j w_pj f(s_pj^2), so the
       mean over probes of sum_j w_pj f(s_pj^2) estimates sum_i f(s_i^2) without
       bias in the probes. A smoothed density and a histogram of the s_i
       (`SingularValueDensity`) and the chaotic, bulk and stable counts per tau
       with their intervals (an estimated `RegionCounts`, from `jacscope.linalg.count_in`)
       are read off it. Probes run `density.probes_per_batch` at a time.

    **Arguments:**

    - `run`: any `jacscope.training.TrainingRun`.
    - `k`: singular triplets per operator, `1 <= k <= P`.
    - `key`: a `jax.random` key; the same key gives the same result.
    - `svd`: the top-k method, `jacscope.linalg.Lanczos(...)` or `Randomized(...)`.
    - `density`: the quadrature, `jacscope.linalg.SLQ(...)`.
    - `num_bins`: bins of the histogram.
    - `num_points`, `bandwidth`: grid size and kernel width of the smoothed density
      (default width: 0.5% of the largest singular value).
    - `taus`: tolerances of the bulk 1 - tau <= s <= 1 + tau.
    - `resolution`: a region count is resolved when its interval lies within
      +- `resolution` P (`RegionCounts`); otherwise it is reported unresolved.
    - `checkpoint_every`: of `training_jacobian_operator` (memory/compute of `rmv`).
    - `stages`: where finished stages are kept and found (`jacscope.jobs.JobFolder`);
      a stage is reused only if it was computed from the same run (its fingerprint),
      key and settings. `None` keeps nothing.
    - `progress`: called with a `jacscope.Progress` as work advances (tasks `top_j`,
      `top_j_minus_i`, `density`; unit: passes through training; a resumed stage
      counts as done). Called from JAX's callback thread.

    **Returns:** a `MatrixFreeResult` of plain values.

    **Raises:** `ValueError` for bad settings; `FloatingPointError` if training
    diverges (naming the step).

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.
    """
    start_all = time.perf_counter()
    progress = report_to(progress)
    stages = stages if stages is not None else Stages()
    check_count(num_bins, "num_bins")
    check_count(num_points, "num_points", minimum=2)
    if not isinstance(svd, Lanczos | Randomized):
        raise ValueError(
            f"svd must be jacscope.linalg.Lanczos(...) or Randomized(...), received {svd!r}"
        )
    if not isinstance(density, SLQ):
        raise ValueError(f"density must be jacscope.linalg.SLQ(...), received {density!r}")
    taus = [float(t) for t in taus]
    for tau in taus:
        if not (np.isfinite(tau) and 0 <= tau < 1):
            raise ValueError(f"taus must lie in [0, 1), received {tau!r}")
    if not (isinstance(resolution, int | float) and 0 < resolution <= 1):
        raise ValueError(f"resolution must lie in (0, 1], received {resolution!r}")
    if bandwidth is not None and not (np.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth must be a finite number > 0, received {bandwidth!r}")
    with _counting() as counter:
        timings: dict[str, float] = {}
        resumed_before = len(stages.resumed)
        t0 = time.perf_counter()
        op = training_jacobian_operator(
            run, checkpoint_every=checkpoint_every, on_sweep=_count_sweep
        )
        num_params = op.shape[0]
        check_count(k, "k", maximum=num_params)
        losses = np.asarray(op.losses)
        timings["operator"] = time.perf_counter() - t0
        depends = {
            "run": hash_json(run.fingerprint(), "fingerprint"),
            "k": int(k),
            "key": np.asarray(jax.random.key_data(key)).tolist(),
            "svd": {"type": type(svd).__name__, **dataclasses.asdict(svd)},
        }

        keys = jax.random.split(key, 3)
        # J + c I with c an array, so that J and J - I share one compiled svd_topk
        tops = {}
        for index, (name, shift) in enumerate((("top_j", 0.0), ("top_j_minus_i", -1.0))):
            operator = op + jnp.asarray(shift, op.dtype) * identity(num_params, op.dtype)
            t0 = time.perf_counter()
            triplets = stages.stage(
                name,
                lambda operator=operator, index=index, name=name: _top_triplets(
                    operator, k, keys[index], svd, counter, progress, name
                ),
                depends=depends,
            )
            tops[name] = {field: triplets[field] for field in SingularTriplets._fields}
            timings[name] = time.perf_counter() - t0

        t0 = time.perf_counter()
        top = tops["top_j"]["values"][0] + tops["top_j"]["residuals"][0]
        grid = np.linspace(0.0, 1.05 * top, num_points)
        bandwidth = bandwidth if bandwidth is not None else 0.005 * top
        depends = {
            **depends,
            "density": dataclasses.asdict(density),
            "grid": [0.0, float(1.05 * top), int(num_points)],
            "bandwidth": float(bandwidth),
        }
        combined = _density_batches(
            op, keys[2], grid, bandwidth, density, stages, depends, counter, progress
        )
        histogram = _histogram(combined, num_bins, density.depth, bandwidth)
        regions = estimated_region_counts(combined, taus, resolution, top)
        timings["density"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - start_all
        jax.effects_barrier()
        return MatrixFreeResult(
            num_params=num_params,
            num_steps=run.num_steps,
            dtype=jnp.dtype(op.dtype).name,
            k=int(k),
            top_j=tops["top_j"],
            top_j_minus_i=tops["top_j_minus_i"],
            density=histogram._asdict(),
            regions=regions._asdict(),
            cost=op.cost()._asdict(),
            sweeps={**counter.counts, "total": counter.total},
            training={"first_step_loss": float(losses[0]), "last_step_loss": float(losses[-1])},
            timings=timings,
            peak_memory_mib=peak_memory_mib(),
            resumed=stages.resumed[resumed_before:],
            estimated=list(_ESTIMATED),
        )


def _density_batches(op, key, grid, bandwidth, density, stages, depends, counter, progress):
    """`spectral_density` of J, `density.probes_per_batch` probes at a time, each batch a
    stage."""
    num_probes, per_batch, depth = density.num_probes, density.probes_per_batch, density.depth
    num_batches = -(-num_probes // per_batch)
    expected = 2 * depth * num_probes
    unit = "passes through training"
    parts = []
    for batch in range(num_batches):
        size = min(per_batch, num_probes - batch * per_batch)
        base, before = 2 * depth * batch * per_batch, counter.total
        counter.listener = lambda base=base, before=before: progress(
            Progress("density", base + counter.total - before, expected, unit)
        )
        counter.listener()

        def compute(batch=batch, size=size):
            estimate = linalg.spectral_density(
                op,
                key=jax.random.fold_in(key, batch),
                num_probes=size,
                depth=depth,
                grid=grid,
                bandwidth=bandwidth,
            )
            return {
                "density": np.asarray(estimate.density),
                "nodes": np.asarray(estimate.nodes),
                "weights": np.asarray(estimate.weights),
                "num_matvecs": np.asarray(estimate.num_matvecs),
            }

        parts.append(stages.stage(f"density-batch-{batch:05d}", compute, depends=depends))
        jax.effects_barrier()
        progress(Progress("density", base + 2 * depth * size, expected, unit))
    counter.listener = None
    nodes = np.concatenate([part["nodes"] for part in parts])
    return linalg.SpectralDensity(
        grid=np.asarray(grid),
        density=sum(part["density"] * part["nodes"].shape[0] for part in parts) / num_probes,
        nodes=nodes,
        weights=np.concatenate([part["weights"] for part in parts]),
        dimension=op.shape[0],
        num_matvecs=int(sum(int(part["num_matvecs"]) for part in parts)),
    )


def _histogram(density, num_bins, depth, bandwidth) -> SingularValueDensity:
    """Counts per log-spaced bin (first edge 0, last the largest node) with stderr."""
    nodes = np.asarray(density.nodes)[np.asarray(density.weights) > 0]
    top = float(nodes.max())
    positive = nodes[nodes > 0]
    bottom = float(positive.min()) if positive.size else top / 10
    bottom = bottom if bottom < top else top / 10
    edges = np.concatenate([[0.0], np.geomspace(bottom, top, num_bins)])
    edges[-1] = np.nextafter(top, np.inf)
    counts, stderr, ranges = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        # count_in counts [lo, hi]; a node on a shared edge belongs to the upper bin.
        count = linalg.count_in(density, lo, np.nextafter(hi, -np.inf))
        counts.append(count.value)
        stderr.append(count.stderr)
        ranges.append([count.low, count.high])
    return SingularValueDensity(
        grid=np.asarray(density.grid).tolist(),
        density=np.asarray(density.density).tolist(),
        bandwidth=float(bandwidth),
        edges=edges.tolist(),
        counts=counts,
        counts_stderr=stderr,
        counts_range=ranges,
        num_probes=int(density.nodes.shape[0]),
        depth=int(depth),
    )
