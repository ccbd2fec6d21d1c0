"""The three regions of the training Jacobian's spectrum: chaotic, bulk and stable.

Belrose & Scherlis (arXiv 2412.07003) find that the singular values s_i of
J = d theta_T / d theta_0 fall into a chaotic region (s_i > 1), a large bulk of
values extremely close to one, and a stable region (s_i < 1). With a tolerance tau:

    chaotic: s_i > 1 + tau,    bulk: 1 - tau <= s_i <= 1 + tau,    stable: s_i < 1 - tau,

with 1 - tau and 1 + tau rounded once, in float64 (`region_intervals`), so that a
value exactly at an edge belongs to exactly one region, in the exact and the
matrix-free paths alike.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jacscope import linalg

DEFAULT_TAUS = (1e-3, 1e-2, 1e-1)
"""Tolerances tau of the region boundaries used by default."""

REGIONS = ("chaotic", "bulk", "stable")


def _singular_values(singular_values) -> np.ndarray:
    s = np.asarray(singular_values, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"singular_values must be a vector, received shape {s.shape}")
    return s


def _check_tau(tau: float) -> float:
    if not np.isfinite(tau) or tau < 0:
        raise ValueError(f"tau must be finite and non-negative, received {tau!r}")
    return float(tau)


def region_intervals(tau: float) -> dict[str, tuple[float, float]]:
    """The closed intervals of the three regions at tolerance `tau`, a partition of R.

    **Returns:** `{"chaotic": (next float above 1 + tau, inf), "bulk": (1 - tau, 1 + tau),
    "stable": (-inf, next float below 1 - tau)}`, the edges computed once in float64.
    Every count of a region, exact or estimated, uses these intervals.

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.
    """
    tau = _check_tau(tau)
    lo, hi = 1.0 - tau, 1.0 + tau
    return {
        "chaotic": (float(np.nextafter(hi, np.inf)), np.inf),
        "bulk": (lo, hi),
        "stable": (-np.inf, float(np.nextafter(lo, -np.inf))),
    }


def region_masks(singular_values, tau: float) -> dict[str, np.ndarray]:
    """Boolean masks of the chaotic, bulk and stable directions at tolerance `tau`.

    **Arguments:**

    - `singular_values`: `(n,)` singular values s_i.
    - `tau`: half-width of the bulk around one.

    **Returns:** `{name: lo <= s <= hi}` over `region_intervals(tau)`, a partition of
    the n directions.

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.
    """
    s = _singular_values(singular_values)
    return {name: (s >= lo) & (s <= hi) for name, (lo, hi) in region_intervals(tau).items()}


def bulk_order(singular_values) -> np.ndarray:
    """Indices of the directions sorted by |s_i - 1|, most bulk-like first (stable sort).

    The first k entries index the k-dimensional "bulk" subspace and the last k the
    k directions farthest from the bulk ("complement of the bulk"), as in the
    restricted-training and seed experiments of arXiv 2412.07003.
    """
    s = _singular_values(singular_values)
    return np.argsort(np.abs(s - 1), kind="stable")


class RegionCounts(NamedTuple):
    """Counts of the chaotic, bulk and stable singular values of J, exact or estimated.

    One type for both paths: `region_counts` counts the singular values of a dense J
    (exact: no uncertainty), `estimated_region_counts` estimates the counts from
    stochastic Lanczos quadrature of J^T J (matrix-free). Per tolerance tau, over
    the intervals of `region_intervals`:

    - the value is the count (exact) or the SLQ point estimate, and the standard
      error its spread over probes / sqrt(num_probes): the probe error only (0 when
      exact).
    - `*_range` is the 95% interval that also holds the quadrature error: the probe
      means of the per-probe Chebyshev-Markov-Stieltjes bounds, widened by Student-t
      quantiles of their spreads (`[count, count]` when exact). It is wide when the
      Lanczos depth does not resolve the spectrum near 1 +- tau.
    - `*_resolved` says whether that interval is within +- `resolution` P; an
      unresolved count is reported as such, with its interval, never as a number.
    - `chebyshev_products`: per tau, the products with J a `jacscope.linalg.
      chebyshev_count` of the bulk would need (its degree from `chebyshev_degree`,
      `num_probes` probes, two products per degree) so that only values within
      tau / 4 of the edges 1 +- tau are left unresolved (`None` when exact).

    **Fields:**

    - `taus`: the tolerances.
    - `exact`: whether the counts are exact (from the singular values themselves).
    - `chaotic`, `bulk`, `stable`: counts per tau.
    - `chaotic_stderr`, `bulk_stderr`, `stable_stderr`: their probe standard errors.
    - `chaotic_range`, `bulk_range`, `stable_range`: `[low, high]` per tau.
    - `chaotic_resolved`, `bulk_resolved`, `stable_resolved`: booleans per tau.
    - `bulk_fraction`, `bulk_fraction_stderr`, `bulk_fraction_range`: the bulk / n.
    - `verdicts`: per tau, `{region: text}`: `"exact"`, `"resolved"`, or
      `"unresolved at this budget: in [low, high]; ..."` naming the products that
      would resolve it.
    - `num_directions`: n, the length of the spectrum.
    - `largest`: s_max (matrix-free: the top singular value plus its residual).
    - `smallest`: s_min (`None` when estimated: products do not give it).
    - `resolution`: the half-width, a fraction of n, within which a count is resolved.
    - `confidence`: the nominal coverage of the ranges (1 when exact).
    - `chebyshev_products`: see above.
    - `num_probes`: probes averaged (0 when exact).

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.
    """

    taus: list[float]
    exact: bool
    chaotic: list[float]
    chaotic_stderr: list[float]
    chaotic_range: list[list[float]]
    chaotic_resolved: list[bool]
    bulk: list[float]
    bulk_stderr: list[float]
    bulk_range: list[list[float]]
    bulk_resolved: list[bool]
    stable: list[float]
    stable_stderr: list[float]
    stable_range: list[list[float]]
    stable_resolved: list[bool]
    bulk_fraction: list[float]
    bulk_fraction_stderr: list[float]
    bulk_fraction_range: list[list[float]]
    verdicts: list[dict[str, str]]
    num_directions: int
    largest: float
    smallest: float | None
    resolution: float
    confidence: float
    chebyshev_products: list[int] | None
    num_probes: int


def _assemble(taus, counts, num, **rest) -> RegionCounts:
    """A `RegionCounts` from `counts[i][name] = (value, stderr, low, high, resolved)`."""
    fields: dict[str, list] = {}
    for name in REGIONS:
        per_tau = [count[name] for count in counts]
        fields[name] = [value for value, *_ in per_tau]
        fields[f"{name}_stderr"] = [stderr for _, stderr, *_ in per_tau]
        fields[f"{name}_range"] = [[low, high] for _, _, low, high, _ in per_tau]
        fields[f"{name}_resolved"] = [resolved for *_, resolved in per_tau]
    return RegionCounts(
        taus=[float(t) for t in taus],
        bulk_fraction=[v / num for v in fields["bulk"]],
        bulk_fraction_stderr=[e / num for e in fields["bulk_stderr"]],
        bulk_fraction_range=[[lo / num, hi / num] for lo, hi in fields["bulk_range"]],
        num_directions=int(num),
        **fields,
        **rest,
    )


def region_counts(singular_values, taus=DEFAULT_TAUS) -> RegionCounts:
    """Count the chaotic, bulk and stable singular values of J for each tolerance.

    **Arguments:**

    - `singular_values`: `(n,)` singular values of the training Jacobian.
    - `taus`: tolerances of the bulk |s - 1| <= tau.

    **Returns:** an exact `RegionCounts` (plain values, JSON-ready via `_asdict()`).

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.
    """
    s = _singular_values(singular_values)
    if s.size == 0:
        raise ValueError("singular_values is empty")
    counts = []
    for tau in taus:
        sums = {name: int(mask.sum()) for name, mask in region_masks(s, tau).items()}
        counts.append({name: (c, 0.0, c, c, True) for name, c in sums.items()})
    return _assemble(
        taus,
        counts,
        s.size,
        exact=True,
        verdicts=[dict.fromkeys(REGIONS, "exact") for _ in taus],
        largest=float(s.max()),
        smallest=float(s.min()),
        resolution=0.0,
        confidence=1.0,
        chebyshev_products=None,
        num_probes=0,
    )


def estimated_region_counts(
    density: linalg.SpectralDensity, taus, resolution: float, largest: float
) -> RegionCounts:
    """Estimate the region counts of J from the probes' Gauss rules of J^T J.

    **Arguments:**

    - `density`: `jacscope.linalg.spectral_density` of J^T J, its nodes the squared
      singular values.
    - `taus`: the tolerances.
    - `resolution`: a count is resolved when its 95% range is within +- `resolution` n.
    - `largest`: an upper bound on s_max (it sets the Chebyshev degree).

    **Returns:** an estimated `RegionCounts`: each count a `jacscope.linalg.count_in`
    of the density, with its standard error, range and verdict.

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.
    """
    num = density.dimension
    num_probes = int(density.nodes.shape[0])
    counts, products, verdicts = [], [], []
    for tau in taus:
        per_region = {}
        for name, (lo, hi) in region_intervals(tau).items():
            c = linalg.count_in(density, lo, hi)
            resolved = bool(c.resolved(resolution * num))
            per_region[name] = (c.value, c.stderr, c.low, c.high, resolved)
        lo, hi = (1 - tau) ** 2, (1 + tau) ** 2
        spectrum = (0.0, (1.01 * largest) ** 2)
        degree = linalg.chebyshev_degree(lo, hi, spectrum, tau / 4 * (1 - tau), num)
        needed = 2 * degree * num_probes
        counts.append(per_region)
        products.append(needed)
        verdicts.append(
            {
                name: "resolved"
                if resolved
                else (
                    f"unresolved at this budget: in [{low:,.0f}, {high:,.0f}] (needs +- "
                    f"{resolution * num:,.0f}); a Chebyshev count needs about {needed:,} "
                    "products with J"
                )
                for name, (_, _, low, high, resolved) in per_region.items()
            }
        )
    return _assemble(
        taus,
        counts,
        num,
        exact=False,
        verdicts=verdicts,
        largest=float(largest),
        smallest=None,
        resolution=float(resolution),
        confidence=0.95,
        chebyshev_products=products,
        num_probes=num_probes,
    )


def region_summary(values, singular_values, taus=DEFAULT_TAUS) -> list[dict]:
    """Per-region statistics of a per-direction quantity, one row per (tau, region).

    **Arguments:**

    - `values`: `(n,)` one number per singular direction (e.g. cos(u_i, v_i)).
    - `singular_values`: `(n,)` the singular values defining the regions.
    - `taus`: the tolerances.

    **Returns:** a list of dicts with `tau`, `region`, `count`, `mean`, `median`, `min`
    and `max` of the finite values in the region (`None` for an empty region).
    """
    values = np.asarray(values, dtype=np.float64)
    s = _singular_values(singular_values)
    if values.shape != s.shape:
        raise ValueError(f"values has shape {values.shape} but the spectrum has shape {s.shape}")
    rows = []
    for tau in taus:
        for name, mask in region_masks(s, tau).items():
            picked = values[mask & np.isfinite(values)]
            stats = (
                {"mean": None, "median": None, "min": None, "max": None}
                if picked.size == 0
                else {
                    "mean": float(picked.mean()),
                    "median": float(np.median(picked)),
                    "min": float(picked.min()),
                    "max": float(picked.max()),
                }
            )
            rows.append({"tau": float(tau), "region": name, "count": int(mask.sum()), **stats})
    return rows
