"""The figures and report.html of a `jacscope flow` folder.

Draws what `jacscope.jobs.flow` put in report.json and, for the density and the
samples, in `stages/evaluate.npz`; nothing is computed beyond picking and formatting
numbers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from jacscope._io import load_npz
from jacscope.jobs.flow import EXTENT, NUM_TEST, FlowResult
from jacscope.report._html import Section, Table, html_page, save_figure, write_html
from jacscope.report._training import key_value_table, subplots, time_table

SUMMARY_HEADERS = ["quantity", "value"]
"""The columns of `summary_rows`."""

_LABELS = {
    "dataset": "data set",
    "regulariser": "regulariser",
    "iterations": "Adam steps",
    "batch_size": "batch size",
    "hidden": "hidden widths",
    "learning_rate": "learning rate",
    "seed": "seed",
    "checkpoint_every": "iterations per chunk",
}
"""Readable labels of the settings of a flow configuration."""


def _data(report: FlowResult | Mapping[str, Any]) -> dict[str, Any]:
    return report._asdict() if hasattr(report, "_asdict") else dict(report)


def summary_rows(report: FlowResult | Mapping[str, Any]) -> list[list[Any]]:
    """Rows (quantity, value) of the trained flow's numbers, for the page and terminal."""
    data = _data(report)
    losses = data["loss_curve"]["loss"]
    return [
        [f"test NLL ({NUM_TEST} held-out samples, nats)", f"{data['test_nll']:.4g}"],
        ["solver steps per solve", f"{data['steps']:.4g}"],
        ["kinetic energy (mean)", f"{data['penalties']['kinetic_energy']:.4g}"],
        ["Jacobian Frobenius (mean)", f"{data['penalties']['jacobian_frobenius']:.4g}"],
        ["training loss, first -> last chunk", f"{losses[0]:.4g} -> {losses[-1]:.4g}"],
        ["parameters", f"{data['num_params']:,}"],
    ]


def _hist(ax, points: np.ndarray, title: str) -> None:
    ax.hist2d(points[:, 0], points[:, 1], bins=80, range=[[-EXTENT, EXTENT], [-EXTENT, EXTENT]])
    ax.set_title(title)
    ax.set_aspect("equal")


def densities_figure(arrays: Mapping[str, np.ndarray], dataset: str) -> Figure:
    """Side by side: a histogram of data samples, the learned density exp(log p) on the
    grid, and a histogram of the flow's samples, all on [-3, 3]^2."""
    fig, ((data_ax, density_ax, samples_ax),) = subplots(12, 4.4, 1, 3)
    _hist(data_ax, np.asarray(arrays["data"]), f"data: {dataset}")
    density_ax.imshow(
        np.asarray(arrays["density"]),
        origin="lower",
        extent=(-EXTENT, EXTENT, -EXTENT, EXTENT),
        aspect="equal",
    )
    density_ax.set_title("learned density p(x)")
    _hist(samples_ax, np.asarray(arrays["samples"]), "samples of the flow")
    return fig


def loss_figure(report: FlowResult | Mapping[str, Any]) -> Figure:
    """The mean training loss of each chunk against the iteration it ends at."""
    data = _data(report)
    curve = data["loss_curve"]
    fig, ((ax,),) = subplots(6, 3.6)
    ax.plot(curve["iteration"], curve["loss"], marker="o", ms=3, lw=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean training loss of the chunk")
    ax.set_title("training loss")
    return fig


def _findings(data: Mapping[str, Any]) -> list[str]:
    config = data["config"]
    regularised = (
        "unregularised"
        if config["regulariser"] == "none"
        else f"with the {config['regulariser']} regulariser (weight 0.05)"
    )
    points = [
        f"A continuous normalising flow ({data['num_params']:,} parameters, hidden "
        f"{', '.join(map(str, config['hidden']))}) trained {regularised} for "
        f"{config['iterations']:,} Adam steps on {config['dataset']} reaches a test NLL of "
        f"{data['test_nll']:.4g} nats on {NUM_TEST} held-out samples.",
        f"The adaptive solver takes {data['steps']:.3g} steps per solve of the trained flow.",
    ]
    if data["resumed"]:
        points.append(f"Taken from the folder: {', '.join(data['resumed'])}.")
    return points


def flow_report_sections(
    report: FlowResult | Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    folder: str | os.PathLike | None = None,
) -> list[Section]:
    """The sections of report.html of a flow report (`arrays`: the `density`,
    `samples` and `data` of stages/evaluate.npz); with a `folder`, the figures are also
    written to `folder/figures/` as PNG and SVG."""
    data = _data(report)
    config = data["config"]
    return [
        Section("Findings", points=_findings(data), anchor="findings"),
        Section(
            "Results",
            "The test NLL is -mean log p(x) (exact divergence) on held-out samples; the "
            "steps, kinetic energy int ||f||^2 dt and Jacobian Frobenius int ||df/dz||_F^2 "
            "dt are means over the same solves.",
            tables=[Table("the trained flow", SUMMARY_HEADERS, summary_rows(data))],
        ),
        Section(
            "Densities",
            figures=[
                save_figure(
                    densities_figure(arrays, config["dataset"]),
                    folder,
                    "flow-densities",
                    "Left: a histogram of samples of the data. Middle: the learned "
                    "density exp(log p) on a grid. Right: a histogram of samples of the "
                    "flow (standard-normal base points carried forward).",
                ),
                save_figure(
                    loss_figure(data),
                    folder,
                    "flow-loss",
                    "The mean training loss (regulariser included) of each chunk.",
                ),
            ],
        ),
        Section(
            "Configuration",
            tables=[key_value_table("training", config, _LABELS)],
        ),
        Section(
            "Cost",
            tables=[
                time_table(data["timings"]),
                key_value_table("resources", {"taken from the folder": data["resumed"]}),
            ],
        ),
    ]


def write_flow_report(folder: str | os.PathLike, report: FlowResult | Mapping) -> Path:
    """Write report.html of a finished `jacscope flow` folder (the job has written
    report.json and stages/evaluate.npz), and its figures as `figures/flow-*.png` and
    `.svg`.

    **Arguments:**

    - `folder`: the job folder.
    - `report`: a `jacscope.jobs.FlowResult` or its dict, as read back from report.json.

    **Returns:** the path of report.html.
    """
    folder = Path(folder)
    data = _data(report)
    arrays = load_npz(folder / "stages" / "evaluate.npz")
    config = data["config"]
    subtitle = (
        f"FFJORD's concat field trained by maximum likelihood, regulariser "
        f"{config['regulariser']}; Chen et al. (NeurIPS 2018), Grathwohl et al. (ICLR 2019)."
    )
    page = html_page(
        f"Continuous normalising flow: {config['dataset']}",
        flow_report_sections(data, arrays, folder),
        subtitle,
    )
    return write_html(folder / "report.html", page)
