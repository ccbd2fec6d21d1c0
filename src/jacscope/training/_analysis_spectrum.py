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
    """Counts of the three regions of a spectrum, one entry per tolerance.

    **Fields:**

    - `taus`: the tolerances.
    - `chaotic`, `bulk`, `stable`: the number of singular values in each of
      `region_intervals(tau)` for each tau.
    - `num_directions`: n, the length of the spectrum.
    - `largest`, `smallest`: s_max and s_min.
    """

    taus: list[float]
    chaotic: list[int]
    bulk: list[int]
    stable: list[int]
    num_directions: int
    largest: float
    smallest: float


def region_counts(singular_values, taus=DEFAULT_TAUS) -> RegionCounts:
    """Count the chaotic, bulk and stable singular values of J for each tolerance.

    **Arguments:**

    - `singular_values`: `(n,)` singular values of the training Jacobian.
    - `taus`: tolerances of the bulk |s - 1| <= tau.

    **Returns:** a `RegionCounts` (plain values, JSON-ready via `_asdict()`).

    Citation: Belrose & Scherlis, arXiv 2412.07003.
    """
    s = _singular_values(singular_values)
    if s.size == 0:
        raise ValueError("singular_values is empty")
    counts = {name: [] for name in REGIONS}
    for tau in taus:
        for name, mask in region_masks(s, tau).items():
            counts[name].append(int(mask.sum()))
    return RegionCounts(
        taus=[float(t) for t in taus],
        chaotic=counts["chaotic"],
        bulk=counts["bulk"],
        stable=counts["stable"],
        num_directions=int(s.size),
        largest=float(s.max()),
        smallest=float(s.min()),
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
