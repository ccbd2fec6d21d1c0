"""Figures and the report.html of a matrix-free train-jacobian folder.

Draws what `jacscope.jobs.matrix_free` returned (every number is in report.json);
nothing is computed beyond picking and formatting numbers. Estimated numbers (the
density and the region counts) are labelled as estimates with their standard errors
and quadrature ranges; the singular values carry their residuals. The page opens with
the findings in words, and its figures are also written as PNG and SVG to `figures/`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from jacscope._memory import format_bytes
from jacscope.report._html import Section, Table, html_page, save_figure, write_html
from jacscope.report._regions import REGION_HEADERS, region_rows, region_title
from jacscope.report._training import (
    findings_section,
    key_value_table,
    label,
    run_description,
    run_sections,
    subplots,
    time_table,
)


def top_singular_values_figure(top_j: Mapping[str, Any], top_j_minus_i: Mapping[str, Any]):
    """The top-k singular values of J and of J - I, with their residual error bars."""
    fig, ((left, right),) = subplots(10, 3.6, 1, 2)
    for ax, top, name in ((left, top_j, "J"), (right, top_j_minus_i, "J - I")):
        values = np.asarray(top["values"], dtype=float)
        # some singular value lies within residual / sqrt(2) of each value
        errors = np.asarray(top["residuals"], dtype=float) / np.sqrt(2)
        index = np.arange(1, values.size + 1)
        ax.errorbar(index, values, yerr=errors, fmt="o", ms=3, capsize=2, lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("index i")
        ax.set_ylabel(rf"$s_i({name})$")
        ax.set_title(f"top {values.size} singular values of {name} ({top['method']})")
    left.axhline(1.0, color="black", ls="--", lw=0.8)
    return fig


def density_figure(density: Mapping[str, Any], taus) -> Figure:
    """Estimated density of J's singular values: smoothed, and as a histogram with errors."""
    fig, ((left, right),) = subplots(10, 3.6, 1, 2)
    grid, values = np.asarray(density["grid"]), np.asarray(density["density"])
    left.plot(grid, values, lw=1.2)
    left.set_yscale("symlog", linthresh=1.0)
    left.set_xlabel("singular value s")
    left.set_ylabel("density (integrates to P)")
    left.set_title(f"smoothed density (bandwidth {density['bandwidth']:.3g})")
    edges = np.asarray(density["edges"])
    counts = np.asarray(density["counts"])
    ranges = np.asarray(density["counts_range"])
    errors = np.stack([counts - ranges[:, 0], ranges[:, 1] - counts])
    centres = np.sqrt(edges[1:] * np.maximum(edges[:-1], edges[1] / 2))
    right.bar(edges[1:-1], counts[1:], width=np.diff(edges[1:]), align="edge", alpha=0.6)
    right.errorbar(centres[1:], counts[1:], yerr=errors[:, 1:], fmt="none", ecolor="black", lw=0.8)
    right.set_xscale("log")
    right.set_yscale("symlog", linthresh=1.0)
    right.set_ylim(0, 3 * max(float(counts.max()), 1.0))
    right.set_xlabel("singular value s")
    right.set_ylabel("estimated count per bin")
    right.set_title(
        f"histogram ({density['num_probes']} probes x {density['depth']} Lanczos steps)"
    )
    for ax in (left, right):
        for tau in taus:
            for edge in (1 - tau, 1 + tau):
                ax.axvline(edge, color="gray", ls=":", lw=0.6)
    return fig


def stage_seconds(report: Mapping[str, Any]) -> dict[str, float]:
    """Seconds per stage: training, then the analysis's stages, then the total."""
    analysis = {k: v for k, v in report["analysis"]["timings"].items() if k != "total"}
    return {"train": report["timings"]["train"], **analysis, "total": report["timings"]["total"]}


def top_rows(top_j: Mapping[str, Any], top_j_minus_i: Mapping[str, Any]) -> list[list[Any]]:
    """Rows (i, s_i(J), residual / s, s_i(J - I), residual / s) of the computed triplets."""
    return [
        [i + 1, s, r, s2, r2]
        for i, (s, r, s2, r2) in enumerate(
            zip(
                top_j["values"],
                top_j["relative_residuals"],
                top_j_minus_i["values"],
                top_j_minus_i["relative_residuals"],
                strict=True,
            )
        )
    ]


def _options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a matrix-free run as flat labelled rows: the chosen top-k
    method's settings and the density's, the other method's left out; an unset
    setting (`None`) takes its default."""
    chosen = options.get("method")
    rows: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, Mapping):
            if key in ("lanczos", "randomized") and key != chosen:
                continue
            rows.update({f"{key}: {label(k)}": v for k, v in value.items()})
        else:
            rows[key] = value
    return {k: "default" if v is None else v for k, v in rows.items()}


def matrix_free_report_sections(
    report: Mapping[str, Any], folder: str | os.PathLike | None = None
) -> list[Section]:
    """The sections of report.html for a matrix-free report; with a `folder`, their
    figures are also written to `folder/figures/` as PNG and SVG."""
    analysis = report["analysis"]
    top_j, top_j_minus_i = analysis["top_j"], analysis["top_j_minus_i"]
    regions, density = analysis["regions"], analysis["density"]
    cost = analysis["cost"]
    sweeps = analysis["sweeps"]
    dense_bytes = report["num_params"] ** 2 * np.dtype(report["dtype"]).itemsize
    return [
        findings_section(report),
        *run_sections(report, **_options(report["options"])),
        Section(
            "Top singular values",
            "Computed from products with J = d theta_T / d theta_0 only: the k largest "
            "singular values of J (the chaotic end) and of J - I (the directions training "
            "changes most), each with its relative residual "
            "||(A v_i - s_i u_i, A^T u_i - s_i v_i)|| / s_i.",
            [
                save_figure(
                    top_singular_values_figure(top_j, top_j_minus_i),
                    folder,
                    "top-singular-values",
                    "s_i by index (log scale); each bar spans s_i ± residual / sqrt(2), an "
                    "interval that holds a true singular value. The dashed line on the left "
                    "is s = 1.",
                )
            ],
            [
                Table(
                    f"top {len(top_j['values'])} singular values",
                    ["i", "s_i(J)", "residual / s_i", "s_i(J - I)", "residual / s_i"],
                    top_rows(top_j, top_j_minus_i),
                )
            ],
            anchor="top-singular-values",
        ),
        Section(
            "Spectrum (estimated)",
            "Stochastic Lanczos quadrature: every number in this section is an estimate. "
            "Counts are P times the mean over probes of each probe's quadrature mass in the "
            "region, ± its standard error over probes; the range is a 95% interval that "
            "also bounds the quadrature error (per-probe Chebyshev-Markov-Stieltjes bounds, "
            "widened by Student-t quantiles of their spread). A count whose range is wider "
            "than ± the resolution is shown as unresolved at this budget, with its range "
            "and the products a Chebyshev count would need.",
            [
                save_figure(
                    density_figure(density, regions["taus"]),
                    folder,
                    "spectrum",
                    "Left: the smoothed density of the singular values of J; right: the "
                    "estimated count per log-spaced bin with its 95% range. Dotted lines: "
                    "the bulk edges 1 ± tau.",
                )
            ],
            [Table(region_title(regions), REGION_HEADERS, region_rows(regions))],
            anchor="spectrum",
        ),
        Section(
            "Cost",
            tables=[
                time_table(stage_seconds(report)),
                key_value_table(
                    "passes through training",
                    {
                        "forward (mv)": sweeps["mv"],
                        "reverse (rmv)": sweeps["rmv"],
                        "total": sweeps["total"],
                    },
                ),
                key_value_table("one product", cost),
                key_value_table(
                    "resources",
                    {
                        "peak_memory_mib": report["peak_memory_mib"],
                        "dense J would need": format_bytes(dense_bytes),
                        "taken from the folder": report["resumed"],
                    },
                ),
            ],
        ),
    ]


def write_matrix_free_report(folder: str | os.PathLike, report: Any) -> Path:
    """Write report.html of a finished folder (the job has written report.json), and
    its figures as `figures/<section>.png` and `.svg`.

    **Arguments:**

    - `folder`: the job folder.
    - `report`: a `jacscope.jobs.MatrixFreeReport` or its dict.

    **Returns:** the path of report.html.
    """
    folder = Path(folder)
    data = report._asdict() if hasattr(report, "_asdict") else dict(report)
    subtitle = (
        f"{run_description(data['config'])}; P = {data['num_params']:,}, "
        f"T = {data['num_steps']:,}; matrix-free. Belrose & Scherlis, Understanding Gradient "
        "Descent through the Training Jacobian (arXiv 2412.07003)."
    )
    sections = matrix_free_report_sections(data, folder)
    return write_html(
        folder / "report.html", html_page("Training Jacobian (matrix-free)", sections, subtitle)
    )
