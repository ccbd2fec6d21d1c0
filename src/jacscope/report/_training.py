"""Figures and the report.json / report.html of a `jacscope train-jacobian` folder.

Everything here draws what `jacscope.jobs.train_jacobian` saved (report numbers,
`spectrum.npz`, `analyses/*.json|npz`); nothing is computed beyond picking and
formatting numbers. Figures follow Belrose & Scherlis, arXiv 2412.07003.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from jacscope._io import write_json_atomic
from jacscope.jobs.train_jacobian import TrainJacobianReport, load_result, load_spectrum
from jacscope.report._html import Section, Table, figure_png, html_page, write_html

_COLORS = {"chaotic": "C3", "bulk": "C0", "stable": "C2"}
_TINY = 1e-12  # floor for log axes


def _positive(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return np.where(values > _TINY, values, np.nan)


def _regions(S: np.ndarray, tau: float) -> dict[str, np.ndarray]:
    return {"chaotic": S > 1 + tau, "bulk": np.abs(S - 1) <= tau, "stable": S < 1 - tau}


def subplots(width: float, height: float, rows: int = 1, cols: int = 1, **kwargs):
    """A figure of `width` x `height` inches with a grid of axes and fixed margins.

    Fixed margins (in inches) instead of a layout engine: one draw per figure, about
    half the rendering time of constrained layout with log-scale axes.
    """
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(rows, cols, squeeze=False, **kwargs)
    fig.subplots_adjust(
        left=0.8 / width,
        right=1 - 0.2 / width,
        bottom=0.6 / height,
        top=1 - 0.45 / height,
        wspace=0.9 * cols / (width - 1.0) if cols > 1 else 0.2,
        hspace=1.0 * rows / (height - 1.05) if rows > 1 else 0.2,
    )
    return fig, axes


def spectrum_figure(S, taus) -> Figure:
    """Singular values of J by index (log scale), and their distance from one, |s_i - 1|."""
    S = np.asarray(S, dtype=float)
    index = np.arange(S.size)
    fig, ((left, right),) = subplots(10, 3.6, 1, 2)
    left.plot(index, _positive(S), lw=1.2)
    left.axhline(1.0, color="black", ls="--", lw=0.8)
    left.set_yscale("log")
    left.set_xlabel("index i")
    left.set_ylabel(r"singular value $s_i$")
    left.set_title("spectrum of the training Jacobian")
    right.plot(index, _positive(np.abs(S - 1)), lw=1.2)
    for tau in taus:
        right.axhline(tau, color="gray", ls=":", lw=0.8)
        right.annotate(rf"$\tau$={tau:g}", (S.size, tau), fontsize=7, ha="right", va="bottom")
    right.set_yscale("log")
    right.set_xlabel("index i")
    right.set_ylabel(r"$|s_i - 1|$")
    right.set_title(r"distance from one (bulk: $|s_i - 1| \leq \tau$)")
    return fig


def alignment_figure(cosines, S, tau: float) -> Figure:
    """cos(u_i, v_i) by index, coloured by region at tolerance `tau`."""
    cosines = np.asarray(cosines, dtype=float)
    S = np.asarray(S, dtype=float)
    index = np.arange(S.size)
    fig, ((ax,),) = subplots(7, 3.6)
    for name, mask in _regions(S, tau).items():
        ax.scatter(index[mask], cosines[mask], s=3, alpha=0.4, color=_COLORS[name], label=name)
    ax.set_xlabel("singular value index i")
    ax.set_ylabel(r"cos$(u_i, v_i)$")
    ax.set_title(rf"alignment of left and right singular vectors ($\tau$={tau:g})")
    ax.legend(markerscale=3, fontsize=8)
    return fig


def linearity_figure(result: Mapping[str, Any]) -> Figure:
    """Response of theta_T to theta_0 + eps v_i against the Jacobian's prediction s_i eps."""
    eps = np.asarray(result["eps"], dtype=float)
    labels = result["labels"]
    fig, (axes,) = subplots(5 * len(labels), 4, 1, len(labels))
    for row, (ax, label) in enumerate(zip(axes, labels, strict=True)):
        s = result["singular_values"][row]
        ax.plot(eps, s * eps, "k--", lw=1, label=r"Jacobian: $s_i \varepsilon$")
        ax.plot(
            eps,
            _positive(np.abs(result["projection"][row])),
            "o-",
            ms=3,
            label="projection on $u_i$",
        )
        ax.plot(eps, _positive(result["remainder"][row]), "o-", ms=3, label="remainder")
        ax.plot(eps, _positive(result["test_loss"][row]), "x-", ms=4, label="test loss")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"perturbation size $\varepsilon$")
        ax.set_ylabel("response in theta_T")
        ax.set_title(f"{label} direction i={result['indices'][row]} ($s_i$={s:.4g})", fontsize=10)
        ax.legend(fontsize=7)
    return fig


def restricted_figure(result: Mapping[str, Any]) -> Figure:
    """Test loss of training restricted to k-dimensional singular subspaces, against k."""
    ks = np.asarray(result["ks"])
    losses = np.asarray(result["test_loss"], dtype=float)
    names = list(result["subspaces"])
    fig, (axes,) = subplots(10, 3.8, 1, 2)
    for ax, pair in zip(axes, (("bulk", "complement"), ("top", "stable")), strict=True):
        for name in pair:
            if name in names:
                ax.plot(ks, losses[names.index(name)], "o-", ms=4, label=f"{name} subspace")
        ax.axhline(result["full_test_loss"], color="black", ls="--", lw=0.8, label="full training")
        ax.set_xlabel("subspace dimension k")
        ax.set_ylabel("test loss (nats)")
        ax.legend(fontsize=8)
    fig.suptitle("training restricted to the span of k right singular vectors")
    return fig


def data_figure(result: Mapping[str, Any]) -> Figure:
    """|s_i - 1| for the real data, shuffled labels and noise inputs, side by side."""
    fig, ((ax,),) = subplots(7, 3.8)
    for name, row in zip(result["names"], result["distance"], strict=True):
        ax.plot(_positive(row), lw=1.2, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("singular value index i")
    ax.set_ylabel(r"$|s_i - 1|$")
    ax.set_title("training on different distributions, same initialisation")
    ax.legend(fontsize=8)
    return fig


def seeds_figure(result: Mapping[str, Any]) -> Figure:
    """Overlap of the bulks of two initialisations against k, and their principal angles."""
    fig, ((left, right),) = subplots(10, 3.6, 1, 2)
    ks = np.asarray(result["ks"])
    left.plot(ks, result["mean_sq_cos"], lw=1.2, label="two seeds")
    left.plot(ks, result["expected"], "k--", lw=0.8, label="random subspaces, k/n")
    left.set_xlabel(r"k (directions sorted by $|s_i - 1|$)")
    left.set_ylabel(r"mean $\cos^2$ of principal angles")
    left.legend(fontsize=8)
    cosines = np.asarray(result["principal_cosines"], dtype=float)
    right.plot(np.arange(1, cosines.size + 1), cosines, lw=1.2)
    right.set_xlabel("principal angle index")
    right.set_ylabel("cosine")
    right.set_title(rf"principal angles between the bulks ($\tau$={result['principal_tau']:g})")
    return fig


def outputs_figure(result: Mapping[str, Any]) -> Figure:
    """Largest KL divergence of the predictions when v_i is added to theta_T, per input set."""
    sets = list(result["sets"])
    max_kl = np.asarray(result["max_kl"], dtype=float)
    cols = 2
    rows = -(-len(sets) // cols)
    fig, axes = subplots(10, 3.2 * rows, rows, cols, sharey=True)
    axes = axes.ravel()
    for ax, name, row in zip(axes, sets, max_kl, strict=False):
        ax.scatter(np.arange(row.size), _positive(row), s=2, alpha=0.3)
        ax.set_yscale("log")
        ax.set_title(f"{name} inputs", fontsize=10)
        ax.set_xlabel("singular vector index i")
        ax.set_ylabel(f"max KL (scale {result['scale']:g})")
    for ax in axes[len(sets) :]:
        ax.set_visible(False)
    return fig


def function_space_figure(result: Mapping[str, Any]) -> Figure:
    """Share of each right singular vector in the nullspace of the output Jacobian."""
    fraction = np.asarray(result["null_fraction"], dtype=float)
    fig, ((ax,),) = subplots(7, 3.6)
    ax.scatter(np.arange(fraction.size), fraction, s=2, alpha=0.3)
    ax.axhline(result["expected"], color="black", ls="--", lw=0.8, label="random direction")
    ax.set_xlabel("singular vector index i")
    ax.set_ylabel(r"$\|\Pi_{null(F)} v_i\|^2$")
    rows, cols = result["shape"]
    ax.set_title(
        f"nullspace of the test-output Jacobian F ({rows} x {cols}, rank {result['rank']})"
    )
    ax.legend(fontsize=8)
    return fig


def _summary_table(caption: str, rows: list[dict], extra: tuple[str, ...] = ()) -> Table:
    keys = (*extra, "tau", "region", "count", "mean", "median", "min", "max")
    return Table(caption, list(keys), [[row.get(k) for k in keys] for row in rows])


def key_value_table(caption: str, mapping: Mapping[str, Any]) -> Table:
    return Table(caption, ["quantity", "value"], [[k, v] for k, v in mapping.items()])


def _section(name: str, result: Mapping[str, Any], S: np.ndarray, tau: float) -> Section:
    if name == "alignment":
        return Section(
            "Alignment of singular vectors",
            "cos(u_i, v_i) for every singular triplet; along the bulk u_i ~ v_i.",
            [figure_png(alignment_figure(result["cosines"], S, tau))],
            [_summary_table("cos(u_i, v_i) per region", result["summary"])],
        )
    if name == "linearity":
        summary = Table(
            "perturbed directions",
            ["direction", "index i", "s_i", "linear up to eps", "unperturbed test loss"],
            [
                [label, i, s, lin, result["base_test_loss"]]
                for label, i, s, lin in zip(
                    result["labels"],
                    result["indices"],
                    result["singular_values"],
                    result["linear_range"],
                    strict=True,
                )
            ],
        )
        tables = [summary]
        for row, label in enumerate(result["labels"]):
            s = result["singular_values"][row]
            tables.append(
                Table(
                    f"{label} direction: response to eps v_i",
                    ["eps", "s_i eps", "projection on u_i", "remainder", "test loss"],
                    [
                        [float(e), float(s * e), float(p), float(r), float(t)]
                        for e, p, r, t in zip(
                            result["eps"],
                            result["projection"][row],
                            result["remainder"][row],
                            result["test_loss"][row],
                            strict=True,
                        )
                    ],
                )
            )
        return Section(
            "Linearity of the response",
            "theta_0 is moved by eps v_i and training rerun; the change in theta_T is "
            "projected on u_i and compared with the Jacobian's prediction s_i eps "
            "('linear up to': every smaller eps within 10%).",
            [figure_png(linearity_figure(result))],
            tables,
        )
    if name == "restricted":
        losses = np.asarray(result["test_loss"], dtype=float)
        table = Table(
            f"test loss after restricted training (full training: {result['full_test_loss']:.4g})",
            ["k", *result["subspaces"]],
            [[k, *map(float, losses[:, j])] for j, k in enumerate(result["ks"])],
        )
        return Section(
            "Restricted training",
            "Training only inside the span of k right singular vectors: the top-k, the "
            "k closest to s = 1 (bulk), the k smallest (stable) and the k farthest from "
            "one (complement of the bulk).",
            [figure_png(restricted_figure(result))],
            [table],
        )
    if name == "outputs":
        return Section(
            "Outputs",
            "For each right singular vector v_i, the largest KL divergence between the "
            "predictions of theta_T and theta_T + v_i, on training, test, inverted test "
            "(1 - x) and Gaussian-noise inputs.",
            [figure_png(outputs_figure(result))],
            [_summary_table("max KL per region", result["summary"], ("set",))],
        )
    if name == "function_space":
        facts = {
            "F shape": result["shape"],
            "rank of F": result["rank"],
            "nullity": result["shape"][1] - result["rank"],
            "rank threshold (relative)": result["rtol"],
            "expected share for a random direction": result["expected"],
        }
        return Section(
            "Bulk and function space",
            "F is the Jacobian of the network's test-set outputs with respect to theta_0; "
            "the share of each v_i in null(F) against that of a random direction.",
            [figure_png(function_space_figure(result))],
            [
                key_value_table("output Jacobian", facts),
                _summary_table("share in null(F) per region", result["summary"]),
            ],
        )
    if name == "data":
        rows = []
        for label, counts in zip(result["names"], result["counts"], strict=True):
            for j, t in enumerate(counts["taus"]):
                rows.append(
                    [label, t, counts["chaotic"][j], counts["bulk"][j], counts["stable"][j]]
                )
        return Section(
            "Data dependence",
            "Training Jacobians of the same initialisation on real data, shuffled labels "
            "and uniform-noise inputs.",
            [figure_png(data_figure(result))],
            [Table("region counts", ["data", "tau", "chaotic", "bulk", "stable"], rows)],
        )
    if name == "seeds":
        ks = np.asarray(result["ks"])
        picks = np.unique(np.linspace(1, ks.size, 11).round().astype(int))
        curve = Table(
            "mean cos^2 of principal angles, k most bulk-like directions of each seed",
            ["k", "two seeds", "random (k/n)"],
            [
                [int(k), float(result["mean_sq_cos"][k - 1]), float(result["expected"][k - 1])]
                for k in picks
            ],
        )
        bulk = Table(
            "bulks at each tolerance",
            ["tau", "dims", "mean cos^2", "random"],
            [[r["tau"], r["dims"], r["mean_sq_cos"], r["expected"]] for r in result["bulk"]],
        )
        return Section(
            "Seeds",
            "Overlap of the bulk subspaces of two initialisations (seed and seed + 1).",
            [figure_png(seeds_figure(result))],
            [bulk, curve],
        )
    raise ValueError(f"no report section for analysis {name!r}")


def run_sections(report: Mapping[str, Any], **settings: Any) -> list[Section]:
    """The Configuration and Training sections: the run, its size, `settings`, and
    loss and accuracy before and after training."""
    size = {
        "parameters P": report["num_params"],
        "steps T": report["num_steps"],
        "peak learning rate": report["learning_rate"],
        "dtype": report["dtype"],
        **settings,
    }
    return [
        Section(
            "Configuration",
            tables=[
                key_value_table("training run", report["config"]),
                key_value_table("size and settings", size),
            ],
        ),
        Section("Training", tables=[key_value_table("loss and accuracy", report["training"])]),
    ]


def training_report_sections(report: Mapping[str, Any], folder: str | os.PathLike) -> list[Section]:
    """The sections of report.html for the report of a `train-jacobian` folder."""
    folder = Path(folder)
    S = load_spectrum(folder)["S"].astype(float)
    regions = report["regions"]
    taus = regions["taus"]
    tau = taus[len(taus) // 2]
    sections = [
        *run_sections(report),
        Section(
            "Spectrum",
            "Singular values of J = d theta_T / d theta_0: chaotic s > 1 + tau, bulk "
            "|s - 1| <= tau, stable s < 1 - tau.",
            [figure_png(spectrum_figure(S, taus))],
            [
                Table(
                    f"region counts (P = {regions['num_directions']}, s_max = "
                    f"{regions['largest']:.4g}, s_min = {regions['smallest']:.4g})",
                    ["tau", "chaotic", "bulk", "stable"],
                    [
                        [t, c, b, s]
                        for t, c, b, s in zip(
                            taus,
                            regions["chaotic"],
                            regions["bulk"],
                            regions["stable"],
                            strict=True,
                        )
                    ],
                )
            ],
        ),
    ]
    for name in report["analyses"]:
        if name == "spectrum":
            continue
        sections.append(_section(name, load_result(folder / "analyses", name), S, tau))
    timings = dict(report["timings"])
    sections.append(
        Section(
            "Cost",
            tables=[
                key_value_table("seconds per stage", timings),
                key_value_table(
                    "resources",
                    {
                        "exact Jacobian": f"{report['jacobian']['file']} "
                        f"({report['jacobian']['dtype']})",
                        "achieved GFLOP/s": report["jacobian"]["gflop_per_s"],
                        "SVD": f"{report['svd']['routine']}, {report['svd']['dtype']}",
                        "peak memory (MiB)": report["peak_memory_mib"],
                        "taken from the folder": report["resumed"],
                    },
                ),
            ],
        )
    )
    return sections


def run_description(config: Mapping[str, Any]) -> str:
    """One line saying what a `TrainingConfig` (as a dict) trains."""
    model = (
        "LeNet-5-like CNN"
        if config.get("model", "mlp") == "cnn"
        else f"MLP hidden {config['hidden']} x {config['depth']}"
    )
    return (
        f"{config['dataset']} ({config['labels']} labels, {config['inputs']} inputs), "
        f"{model}, {config['optimizer']} for {config['epochs']} epochs"
    )


def write_training_report(folder: str | os.PathLike, report: TrainJacobianReport | Mapping) -> Path:
    """Write report.html, then report.json (last: its presence marks a complete folder).

    **Arguments:**

    - `folder`: the job folder (holding spectrum.npz and analyses/).
    - `report`: a `TrainJacobianReport` or its dict, as read back from report.json.

    **Returns:** the path of report.html.
    """
    folder = Path(folder)
    data = report._asdict() if isinstance(report, TrainJacobianReport) else dict(report)
    subtitle = (
        f"{run_description(data['config'])}; P = {data['num_params']}, "
        f"T = {data['num_steps']}. Belrose & Scherlis, Understanding Gradient Descent "
        "through the Training Jacobian (arXiv 2412.07003)."
    )
    page = html_page("Training Jacobian", training_report_sections(data, folder), subtitle)
    path = write_html(folder / "report.html", page)
    write_json_atomic(folder / "report.json", data)
    return path
