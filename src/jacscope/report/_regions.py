"""The region counts of a spectrum as text: one layout for exact and estimated counts.

Both paths of `jacscope train-jacobian` report a `jacscope.training.RegionCounts`,
and every table of it (report.html and the terminal alike) comes from here. An exact
count is printed as a number. An estimated one is marked "≈", with its standard
error over probes and its 95% range (which also bounds the quadrature error). A
count whose range the budget does not narrow to the resolution is printed as
"unresolved" with its range, never as a number, and the bulk share names the products
with J that would resolve it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jacscope.training._analysis_spectrum import REGIONS

REGION_HEADERS = ["tau", "chaotic", "bulk", "stable", "bulk share"]
"""The columns of `region_rows`."""

ESTIMATE_MARK = "≈"
"""The mark in front of an estimated number."""


def region_title(regions: Mapping[str, Any]) -> str:
    """The title of a region table: n and the ends of the spectrum, and for estimates
    how to read them and from how many probes."""
    ends = [f"P = {regions['num_directions']:,}", f"s_max = {regions['largest']:.4g}"]
    if regions["smallest"] is not None:
        ends.append(f"s_min = {regions['smallest']:.4g}")
    if regions["exact"]:
        return f"region counts, exact ({', '.join(ends)})"
    return (
        f"region counts, estimated: {ESTIMATE_MARK} value ± standard error in [95% range] "
        f"({', '.join(ends)}, {regions['num_probes']} probes)"
    )


def count_text(regions: Mapping[str, Any], name: str, j: int) -> str:
    """The count of region `name` at the j-th tau: `"1,234"` when exact,
    `"≈ 1,234 ± 5 in [1,220, 1,250]"` when estimated and resolved,
    `"unresolved at this budget: in [0, 9,000]"` otherwise."""
    value = regions[name][j]
    if regions["exact"]:
        return f"{value:,}"
    low, high = regions[f"{name}_range"][j]
    if not regions[f"{name}_resolved"][j]:
        return f"unresolved at this budget: in [{low:,.0f}, {high:,.0f}]"
    stderr = regions[f"{name}_stderr"][j]
    return f"{ESTIMATE_MARK} {value:,.0f} ± {stderr:,.0f} in [{low:,.0f}, {high:,.0f}]"


def share_text(regions: Mapping[str, Any], j: int) -> str:
    """The bulk's share of the directions at the j-th tau, marked like `count_text`;
    an unresolved share names the products with J that would resolve it."""
    fraction = regions["bulk_fraction"][j]
    if regions["exact"]:
        return f"{100 * fraction:.1f}%"
    low, high = regions["bulk_fraction_range"][j]
    if not regions["bulk_resolved"][j]:
        return (
            f"unresolved: in [{low:.3f}, {high:.3f}]; ~{regions['chebyshev_products'][j]:,} "
            "products would resolve it"
        )
    stderr = regions["bulk_fraction_stderr"][j]
    return (
        f"{ESTIMATE_MARK} {100 * fraction:.2f}% ± {100 * stderr:.2f}% in "
        f"[{100 * low:.2f}%, {100 * high:.2f}%]"
    )


def region_rows(regions: Mapping[str, Any]) -> list[list[Any]]:
    """One row per tau under `REGION_HEADERS`: tau, the three counts, the bulk share."""
    return [
        [tau, *(count_text(regions, name, j) for name in REGIONS), share_text(regions, j)]
        for j, tau in enumerate(regions["taus"])
    ]
