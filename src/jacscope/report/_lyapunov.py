"""The figure and report.html of a `jacscope lyapunov` folder.

Draws what `jacscope.jobs.lyapunov` put in report.json; nothing is computed beyond
picking and formatting numbers. Every exponent is shown with its standard error (batch
means). The Kaplan-Yorke dimension is a number only when the k exponents resolve it;
otherwise it is stated as unresolved, at least k, never as a number. The exponents'
text comes from here for the page and the terminal alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from jacscope.jobs.lyapunov import KIND_FIELDS, LyapunovResult
from jacscope.report._html import Section, Table, html_page, human_seconds, save_figure, write_html
from jacscope.report._training import key_value_table, subplots, time_table

EXPONENT_HEADERS = ["i", "exponent ± standard error"]
"""The columns of `exponent_rows`."""

_SHOWN = 8  # exponents drawn in the convergence panel

_LABELS = {
    "k": "exponents k",
    "num_steps": "steps measured",
    "transient": "transient steps",
    "duration": "time measured",
    "interval": "time between reorthonormalisations",
    "transient_time": "transient time",
    "num_batches": "batches",
    "seed": "seed",
    "dtype": "floating-point type",
    "hidden": "hidden size",
    "train_steps": "Adam steps of training",
}
"""Readable labels of the settings of a Lyapunov configuration."""


def _data(report: LyapunovResult | Mapping[str, Any]) -> dict[str, Any]:
    return report._asdict() if hasattr(report, "_asdict") else dict(report)


def exponent_text(value: float, stderr: float) -> str:
    """An exponent with its standard error: `"0.4187 ± 0.0021"`."""
    return f"{value:.4g} ± {stderr:.2g}"


def exponent_rows(report: LyapunovResult | Mapping[str, Any]) -> list[list[Any]]:
    """Rows (i, exponent ± standard error) of the k exponents, largest first."""
    data = _data(report)
    return [
        [i, exponent_text(value, stderr)]
        for i, (value, stderr) in enumerate(zip(data["exponents"], data["stderr"], strict=True), 1)
    ]


def kaplan_yorke_text(report: LyapunovResult | Mapping[str, Any]) -> str:
    """The Kaplan-Yorke dimension as a number when the k exponents resolve it, else
    `"unresolved: at least k; more exponents (larger --k) would resolve it"`."""
    data = _data(report)
    if data["kaplan_yorke_resolved"]:
        return f"{data['kaplan_yorke']:.4g}"
    k = len(data["exponents"])
    return f"unresolved: at least {k}; more exponents (larger --k) would resolve it"


def convergence_figure(report: LyapunovResult | Mapping[str, Any]) -> Figure:
    """Left: the running estimate of each of the (at most 8) leading exponents after
    each batch against the length measured, the final standard error as a bar at the
    end. Right: the k exponents by index with their standard errors, and zero."""
    data = _data(report)
    unit = data["system"]["unit"]
    running = np.asarray(data["running"], dtype=float)
    exponents = np.asarray(data["exponents"], dtype=float)
    stderr = np.asarray(data["stderr"], dtype=float)
    num_batches, k = running.shape
    ends = data["measured"] * np.arange(1, num_batches + 1) / num_batches
    fig, ((left, right),) = subplots(10, 3.6, 1, 2)
    shown = min(k, _SHOWN)
    for i in range(shown):
        (line,) = left.plot(
            ends, running[:, i], marker="o", ms=2.5, lw=1, label=rf"$\lambda_{{{i + 1}}}$"
        )
        left.errorbar(ends[-1], exponents[i], yerr=stderr[i], color=line.get_color(), capsize=3)
    left.axhline(0.0, color="black", ls="--", lw=0.8)
    left.set_xlabel("steps measured" if unit == "step" else "time measured")
    left.set_ylabel(f"running estimate (per {unit})")
    left.set_title(f"convergence of the {shown} leading exponents over {num_batches} batches")
    left.legend(fontsize=7, ncol=2)
    index = np.arange(1, k + 1)
    right.errorbar(index, exponents, yerr=stderr, fmt="o", ms=3, capsize=2, lw=1)
    right.axhline(0.0, color="black", ls="--", lw=0.8)
    right.xaxis.get_major_locator().set_params(integer=True)
    right.set_xlabel("index i")
    right.set_ylabel(rf"$\lambda_i$ (per {unit})")
    right.set_title(f"the {k} leading exponents ± standard error")
    return fig


def _findings(data: Mapping[str, Any]) -> list[str]:
    system, config = data["system"], data["config"]
    unit = system["unit"]
    first = exponent_text(data["exponents"][0], data["stderr"][0])
    length = (
        f"{data['num_steps']:,} steps"
        if system["kind"] == "map"
        else f"a time of {data['measured']:g} ({data['num_steps']:,} intervals)"
    )
    points = [
        f"The largest Lyapunov exponent of {system['summary']} is {first} per {unit}, "
        f"measured over {length} in {config['num_batches']} batches, the standard error "
        "from their spread.",
        f"Kaplan-Yorke dimension: {kaplan_yorke_text(data)}.",
    ]
    if "loss_first" in system:
        points.append(
            f"The GRU was trained for {config['gru']['train_steps']} Adam steps: loss "
            f"{system['loss_first']:.3g} -> {system['loss_last']:.3g}."
        )
    if data["resumed"]:
        points.append(
            f"The spectrum was taken from the folder (computed in "
            f"{human_seconds(data['timings']['spectrum'])})."
        )
    return points


def lyapunov_report_sections(
    report: LyapunovResult | Mapping[str, Any], folder: str | os.PathLike | None = None
) -> list[Section]:
    """The sections of report.html of a Lyapunov report; with a `folder`, the figure is
    also written to `folder/figures/` as PNG and SVG."""
    data = _data(report)
    system, config = data["system"], data["config"]
    unit = system["unit"]
    k = len(data["exponents"])
    measurement = {
        name: config[name]
        for name in ("k", *KIND_FIELDS[system["kind"]], "num_batches", "seed", "dtype")
    }
    measurement["k"] = k if config["k"] is None else config["k"]
    return [
        Section("Findings", points=_findings(data), anchor="findings"),
        Section(
            "Exponents",
            f"The {k} leading Lyapunov exponents of {system['summary']} (n = "
            f"{system['state_size']:,}), per {unit}, by the QR method: tangent vectors "
            "carried by Jacobian-vector products, never the Jacobian, and "
            "reorthonormalised. Each is the mean of its batch estimates ± their standard "
            "error. The Kaplan-Yorke dimension j + (lambda_1 + ... + lambda_j) / "
            "|lambda_(j+1)|, j the last index with a nonnegative partial sum, is known "
            "only when the partial sums of the k exponents turn negative (or k = n).",
            tables=[
                Table(f"exponents (per {unit})", EXPONENT_HEADERS, exponent_rows(data)),
                Table(
                    "dimension", ["quantity", "value"], [["Kaplan-Yorke", kaplan_yorke_text(data)]]
                ),
            ],
        ),
        Section(
            "Convergence",
            figures=[
                save_figure(
                    convergence_figure(data),
                    folder,
                    "lyapunov",
                    "Left: the running estimate of each leading exponent (at most 8) after "
                    "each batch (flat lines have converged); the bar at the end is ± the "
                    "standard error. "
                    "Right: the exponents by index with their standard errors; the dashed "
                    "line is zero.",
                )
            ],
        ),
        Section(
            "Configuration",
            tables=[
                key_value_table(
                    f"system: {system['name']}",
                    config[system["name"].replace("-", "_")],
                    _LABELS,
                ),
                key_value_table("measurement", measurement, _LABELS),
            ],
        ),
        Section(
            "Cost",
            tables=[
                time_table(data["timings"]),
                key_value_table("resources", {"taken from the folder": data["resumed"]}),
            ],
        ),
    ]


def write_lyapunov_report(folder: str | os.PathLike, report: LyapunovResult | Mapping) -> Path:
    """Write report.html of a finished `jacscope lyapunov` folder (the job has written
    report.json), and its figure as `figures/lyapunov.png` and `.svg`.

    **Arguments:**

    - `folder`: the job folder.
    - `report`: a `jacscope.jobs.LyapunovResult` or its dict, as read back from
      report.json.

    **Returns:** the path of report.html.
    """
    folder = Path(folder)
    data = _data(report)
    system = data["system"]
    subtitle = (
        f"{system['summary']}; n = {system['state_size']:,}, exponents per {system['unit']}. "
        "QR method of Benettin, Galgani, Giorgilli & Strelcyn (Meccanica, 1980)."
    )
    page = html_page(
        f"Lyapunov spectrum: {system['name']}", lyapunov_report_sections(data, folder), subtitle
    )
    return write_html(folder / "report.html", page)
