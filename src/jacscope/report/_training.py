"""Figures and the report.html of a `jacscope train-jacobian` folder.

Everything here draws what `jacscope.jobs.train_jacobian` saved (report numbers, the
spectrum and the analyses in the folder's stages); nothing is computed beyond picking
and formatting numbers. The page opens with the findings in words
(`jacscope.report._findings`); figures follow Belrose & Scherlis, arXiv 2412.07003,
and are also written as PNG and SVG to `figures/` beside the page.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from jacscope._memory import format_bytes
from jacscope.jobs import TrainJacobianReport, load
from jacscope.report._findings import findings
from jacscope.report._html import (
    Plot,
    Section,
    Table,
    html_page,
    human_seconds,
    save_figure,
    write_html,
)
from jacscope.report._regions import REGION_HEADERS, region_rows, region_title
from jacscope.training import region_masks

_COLORS = {"chaotic": "C3", "bulk": "C0", "stable": "C2"}
_TINY = 1e-12  # floor for log axes

_LABELS = {
    "dataset": "dataset",
    "model": "model",
    "labels": "training labels",
    "inputs": "training inputs",
    "hidden": "hidden width",
    "hidden_layers": "hidden layers",
    "epochs": "epochs",
    "batch_size": "batch size",
    "optimizer": "optimizer",
    "lr": "peak learning rate (set)",
    "momentum": "SGD momentum",
    "seed": "initialisation seed",
    "data_seed": "data seed",
    "train_size": "training examples",
    "dtype": "floating-point type",
    "first_step_loss": "loss of the first step",
    "last_step_loss": "loss of the last step",
    "peak_memory_mib": "peak memory",
    "num_steps": "steps T",
    "checkpoint_every": "steps per checkpoint segment",
    "num_checkpoints": "checkpoints kept by rmv",
    "mv_sweeps": "passes through training per mv",
    "rmv_sweeps": "passes through training per rmv",
    "stored_bytes": "stored trajectory",
    "train_bytes": "working memory of training",
    "mv_bytes": "working memory of one mv",
    "rmv_bytes": "working memory of one rmv",
    "k": "singular triplets k",
    "method": "top-k method",
    "probe_seed": "seed of the probes",
    "train": "training",
    "jacobian": "exact Jacobian",
    "svd": "SVD",
    "operator": "building the operator",
    "top_j": "top-k of J",
    "top_j_minus_i": "top-k of J - I",
    "density": "density of singular values",
    "analysis": "analysis",
    "total": "total (this call)",
}
"""Readable labels of the keys of report.json."""


def label(key: str) -> str:
    """The readable label of a report.json key: `"train_loss"` -> `"train loss"`,
    `"analysis:outputs"` -> `"analysis: outputs"`, `"peak_memory_mib"` -> `"peak memory"`."""
    if key in _LABELS:
        return _LABELS[key]
    if key.startswith("analysis:"):
        return f"analysis: {key.split(':', 1)[1].replace('_', ' ')}"
    return key.replace("_", " ")


def readable(key: str, value: Any) -> Any:
    """A report.json value as a reader wants it: byte counts (`*_bytes`) and MiB
    (`*_mib`) in binary units, `None` sizes of the training set as "all"."""
    if key.endswith("_bytes") and isinstance(value, int | float):
        return format_bytes(value)
    if key.endswith("_mib") and isinstance(value, int | float):
        return format_bytes(value * 2**20)
    if key == "train_size" and value is None:
        return "all"
    if key == "lr" and value is None:
        return "the optimizer's default"
    if key == "checkpoint_every" and value is None:
        return "trajectory stored"
    return value


def _positive(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return np.where(values > _TINY, values, np.nan)


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


def noise_floor(S, dtype: str = "float32") -> float:
    """eps(dtype) * s_max: the size of the rounding errors of singular values computed
    in `dtype`; values of |s_i - 1| below it are not resolved."""
    S = np.asarray(S, dtype=float)
    return float(np.finfo(dtype).eps * S.max()) if S.size else 0.0


def coarsest_dtype(*dtypes: str | None) -> str:
    """Of the floating-point types named, the one of the largest machine epsilon."""
    named = [d for d in dtypes if d]
    return max(named, key=lambda d: float(np.finfo(d).eps)) if named else "float32"


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The `[start, stop)` index ranges where `mask` holds."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _shade_regions(ax, S: np.ndarray, tau: float) -> list[Patch]:
    """Shade the index ranges of the chaotic, bulk and stable directions at `tau`;
    **returns** their legend entries (with counts)."""
    handles = []
    for name, mask in region_masks(S, tau).items():
        for start, stop in _runs(mask):
            ax.axvspan(start - 0.5, stop - 0.5, color=_COLORS[name], alpha=0.14, lw=0)
        handles.append(Patch(color=_COLORS[name], alpha=0.3, label=f"{name}: {int(mask.sum()):,}"))
    return handles


def spectrum_figure(S, taus, dtype: str = "float32") -> Figure:
    """Singular values of J by index (log scale), and their distance from one, |s_i - 1|.

    Both panels shade the chaotic, bulk and stable index ranges at the smallest tau.
    The right one draws the noise floor of `dtype` (`noise_floor`) and marks the
    values exactly equal to one (|s_i - 1| = 0, off a log axis) at the floor; the left
    one draws the floor where the smallest s_i come within a factor 100 of it.
    """
    S = np.asarray(S, dtype=float)
    index = np.arange(S.size)
    tau = min(taus)
    floor = noise_floor(S, dtype)
    exact = np.flatnonzero(S == 1.0)
    distance = _positive(np.abs(S - 1))
    fig, ((left, right),) = subplots(10, 3.8, 1, 2)
    regions = _shade_regions(left, S, tau)
    _shade_regions(right, S, tau)
    floor_label = rf"{dtype} noise floor $\varepsilon s_{{max}}$ = {floor:.1e}"
    left.plot(index, _positive(S), lw=1.2, color="black")
    left.axhline(1.0, color="black", ls="--", lw=0.8)
    handles = list(regions)
    if _TINY < floor and S.min() < 100 * floor:
        handles.append(left.axhline(floor, color="C1", ls="-.", lw=0.9, label=floor_label))
    left.set_yscale("log")
    left.set_xlabel("index i (singular values in descending order)")
    left.set_ylabel(r"singular value $s_i$")
    left.set_title(rf"spectrum of the training Jacobian (regions at $\tau$ = {tau:g})")
    left.legend(handles=handles, fontsize=7, loc="lower left")
    right.plot(index, distance, lw=1.2, color="black")
    for t in taus:
        right.axhline(t, color="gray", ls=":", lw=0.8)
        right.annotate(rf"$\tau$={t:g}", (S.size, t), fontsize=7, ha="right", va="bottom")
    finite = distance[np.isfinite(distance)]
    lowest = float(finite.min()) if finite.size else 1.0
    marker_at = floor if floor > _TINY else lowest / 2
    right.axhline(marker_at, color="C1", ls="-.", lw=0.9, label=floor_label)
    right.plot(
        exact,
        np.full(exact.size, marker_at),
        "v",
        ms=4,
        color="C4",
        label=f"exactly 1: {exact.size:,}",
    )
    right.set_yscale("log")
    right.set_ylim(bottom=min(lowest, marker_at) / 3)
    right.set_xlabel("index i")
    right.set_ylabel(r"$|s_i - 1|$")
    right.set_title(r"distance from one (bulk: $|s_i - 1| \leq \tau$)")
    right.legend(fontsize=7, loc="upper center")
    return fig


def _region_scatter(ax, values, S, tau, **kwargs) -> None:
    """Scatter `values` by index, coloured by region at `tau` (counts in the legend)."""
    index = np.arange(np.asarray(values).size)
    values = np.asarray(values, dtype=float)
    for name, mask in region_masks(S, tau).items():
        ax.scatter(
            index[mask],
            values[mask],
            color=_COLORS[name],
            label=f"{name}: {int(mask.sum()):,}",
            **kwargs,
        )


def alignment_figure(cosines, S, tau: float) -> Figure:
    """cos(u_i, v_i) by index, coloured by region at tolerance `tau`."""
    fig, ((ax,),) = subplots(7, 3.6)
    _region_scatter(ax, cosines, np.asarray(S, dtype=float), tau, s=3, alpha=0.4)
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
    for row, (ax, name) in enumerate(zip(axes, labels, strict=True)):
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
        ax.set_title(f"{name} direction i={result['indices'][row]} ($s_i$={s:.4g})", fontsize=10)
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


def outputs_figure(result: Mapping[str, Any], S=None, tau: float | None = None) -> Figure:
    """Largest KL divergence of the predictions when v_i is added to theta_T, per input
    set, against the index i; coloured by region at `tau` when `S` is given."""
    sets = list(result["sets"])
    max_kl = np.asarray(result["max_kl"], dtype=float)
    cols = 2
    rows = -(-len(sets) // cols)
    fig, axes = subplots(10, 3.2 * rows, rows, cols, sharey=True)
    axes = axes.ravel()
    scale = result["scale"]
    for ax, name, row in zip(axes, sets, max_kl, strict=False):
        if S is None:
            ax.scatter(np.arange(row.size), _positive(row), s=2, alpha=0.3)
        else:
            _region_scatter(ax, _positive(row), np.asarray(S, dtype=float), tau, s=2, alpha=0.3)
        ax.set_yscale("log")
        ax.set_title(f"{name} inputs", fontsize=10)
        ax.set_xlabel(r"index i of $v_i$ ($s_i$ descending)")
        ax.set_ylabel("largest KL over the set (nats)")
    for ax in axes[len(sets) :]:
        ax.set_visible(False)
    if S is not None:
        axes[0].legend(markerscale=4, fontsize=7, title=rf"$\tau$ = {tau:g}", title_fontsize=7)
    fig.subplots_adjust(top=1 - 0.8 / fig.get_figheight())
    fig.suptitle(
        rf"KL$(p(\cdot|x, \theta_T) \,\|\, p(\cdot|x, \theta_T + {scale:g}\, v_i))$, "
        "largest over the inputs x of each set",
        fontsize=10,
    )
    return fig


def function_space_figure(result: Mapping[str, Any], S=None, tau: float | None = None) -> Figure:
    """Share of each right singular vector in the nullspace of the output Jacobian,
    coloured by region at `tau` when `S` is given."""
    fraction = np.asarray(result["null_fraction"], dtype=float)
    fig, ((ax,),) = subplots(7, 3.6)
    if S is None:
        ax.scatter(np.arange(fraction.size), fraction, s=2, alpha=0.3)
    else:
        _region_scatter(ax, fraction, np.asarray(S, dtype=float), tau, s=2, alpha=0.3)
    ax.axhline(result["expected"], color="black", ls="--", lw=0.8, label="random direction")
    ax.set_xlabel("singular vector index i")
    ax.set_ylabel(r"$\|\Pi_{null(F)} v_i\|^2$")
    rows, cols = result["shape"]
    ax.set_title(
        f"nullspace of the test-output Jacobian F ({rows} x {cols}, rank {result['rank']})"
    )
    ax.legend(fontsize=8, markerscale=4)
    return fig


def lyapunov_figure(result: Mapping[str, Any]) -> Figure:
    """The training map's exponents beside log s_i / T, and each phase's rates."""
    fig, ((left, right),) = subplots(10, 3.6, 1, 2)
    exponents = np.asarray(result["exponents"])
    index = np.arange(1, exponents.size + 1)
    left.plot(index, exponents, "o", ms=4, label=r"Lyapunov exponent $\lambda_i$")
    if result.get("singular_rates") is not None:
        left.plot(index, result["singular_rates"], "x", ms=5, label=r"$\log s_i / T$")
    left.axhline(0, color="grey", lw=0.8)
    left.set_xlabel("index i")
    left.set_ylabel("rate per step")
    left.set_title("training map against the training Jacobian")
    left.legend(fontsize=8)
    phases = np.asarray(result["phase_rates"])
    steps = result["num_steps"] / phases.shape[0] * (np.arange(phases.shape[0]) + 0.5)
    for i in range(min(3, phases.shape[1])):
        right.plot(steps, phases[:, i], "o-", ms=3, label=rf"$\lambda_{i + 1}$")
    right.axhline(0, color="grey", lw=0.8)
    right.set_xlabel("training step (phase centre)")
    right.set_ylabel("rate per step in the phase")
    right.set_title("the leading exponents as training goes")
    right.legend(fontsize=8)
    return fig


def _summary_table(caption: str, rows: list[dict], extra: tuple[str, ...] = ()) -> Table:
    keys = (*extra, "tau", "region", "count", "mean", "median", "min", "max")
    return Table(caption, list(keys), [[row.get(k) for k in keys] for row in rows])


def key_value_table(
    caption: str, mapping: Mapping[str, Any], labels: Mapping[str, str] | None = None
) -> Table:
    """A two-column table of `mapping`, keys as readable labels (`labels`, else
    `label`) and values as a reader wants them (`readable`)."""
    labels = labels or {}
    return Table(
        caption,
        ["quantity", "value"],
        [[labels.get(k) or label(k), readable(k, v)] for k, v in mapping.items()],
    )


class Drawn(NamedTuple):
    """What a report section draws besides its analysis's result.

    **Fields:**

    - `report`: the report dict.
    - `S`: the singular values of J, descending.
    - `tau`: the tolerance the figures colour regions at (the middle one).
    - `folder`: the folder its figures are written to.
    """

    report: Mapping[str, Any]
    S: np.ndarray
    tau: float
    folder: Path


def _plot(drawn: Drawn, name: str, fig: Figure, caption: str) -> list[Plot]:
    return [save_figure(fig, drawn.folder, name, caption)]


def spectrum_section(result: Mapping[str, Any], drawn: Drawn) -> Section:
    """The section of the `spectrum` analysis (`RegionCounts` as a dict)."""
    taus = result["taus"]
    jacobian, svd = drawn.report["jacobian"], drawn.report["svd"]
    dtype = coarsest_dtype(svd.get("dtype"), jacobian.get("dtype"), drawn.report.get("dtype"))
    return Section(
        "Spectrum",
        "Singular values of J = d theta_T / d theta_0: chaotic s > 1 + tau, bulk "
        "|s - 1| <= tau, stable s < 1 - tau.",
        _plot(
            drawn,
            "spectrum",
            spectrum_figure(drawn.S, taus, dtype),
            f"Shading: the chaotic, bulk and stable index ranges at tau = {min(taus):g} "
            f"(counts in the legend). The dash-dotted line is the {dtype} noise floor "
            "eps s_max: distances from one below it are rounding, not measurement. "
            "Triangles mark the singular values exactly equal to one, drawn at the floor "
            "since |s_i - 1| = 0 has no place on a log axis.",
        ),
        [Table(region_title(result), REGION_HEADERS, region_rows(result))],
        anchor="spectrum",
    )


def alignment_section(result: Mapping[str, Any], drawn: Drawn) -> Section:
    """The section of the `alignment` analysis."""
    return Section(
        "Alignment of singular vectors",
        "cos(u_i, v_i) for every singular triplet; along the bulk u_i ~ v_i.",
        _plot(
            drawn,
            "alignment",
            alignment_figure(result["cosines"], drawn.S, drawn.tau),
            f"Each dot is one singular triplet, by index i (s_i descending), coloured by "
            f"its region at tau = {drawn.tau:g}; cos(u_i, v_i) = 1 means the perturbation "
            "theta_0 + eps v_i comes out of training as theta_T + s_i eps v_i.",
        ),
        [_summary_table("cos(u_i, v_i) per region", result["summary"])],
        anchor="alignment",
    )


def linearity_section(result: Mapping[str, Any], drawn: Drawn) -> Section:
    """The section of the `linearity` analysis."""
    summary = Table(
        "perturbed directions",
        ["direction", "index i", "s_i", "linear up to eps", "unperturbed test loss"],
        [
            [direction, i, s, lin, result["base_test_loss"]]
            for direction, i, s, lin in zip(
                result["labels"],
                result["indices"],
                result["singular_values"],
                result["linear_range"],
                strict=True,
            )
        ],
    )
    tables = [summary]
    for row, direction in enumerate(result["labels"]):
        s = result["singular_values"][row]
        tables.append(
            Table(
                f"{direction} direction: response to eps v_i",
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
        _plot(
            drawn,
            "linearity",
            linearity_figure(result),
            "One panel per direction: the dashed line is the linear prediction s_i eps, "
            "the projection on u_i follows it while training responds linearly; the "
            "remainder is the part of the change orthogonal to u_i.",
        ),
        tables,
        anchor="linearity",
    )


def restricted_section(result: Mapping[str, Any], drawn: Drawn) -> Section:
    """The section of the `restricted` analysis."""
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
        _plot(
            drawn,
            "restricted",
            restricted_figure(result),
            "Test loss after training only within a k-dimensional subspace, against k; "
            "the dashed line is the loss of unrestricted training.",
        ),
        [table],
        anchor="restricted",
    )


def outputs_section(result: Mapping[str, Any], drawn: Drawn) -> Section:
    """The section of the `outputs` analysis."""
    return Section(
        "Outputs",
        "For each right singular vector v_i, the largest KL divergence between the "
        "predictions of theta_T and theta_T + v_i, on training, test, inverted test "
        "(1 - x) and Gaussian-noise inputs.",
        _plot(
            drawn,
            "outputs",
            outputs_figure(result, drawn.S, drawn.tau),
            f"One panel per input set. x: the index i of the right singular vector v_i "
            f"(s_i descending); y: the KL divergence of the predicted class "
            f"probabilities at theta_T + {result['scale']:g} v_i from those at theta_T, "
            f"the largest over the set's inputs (log scale). Colours: the region of "
            f"s_i at tau = {drawn.tau:g}.",
        ),
        [_summary_table("max KL per region", result["summary"], ("set",))],
        anchor="outputs",
    )


def function_space_section(result: Mapping[str, Any], drawn: Drawn) -> Section:
    """The section of the `function_space` analysis."""
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
        _plot(
            drawn,
            "function-space",
            function_space_figure(result, drawn.S, drawn.tau),
            f"Each dot is the squared norm of v_i's projection on null(F), by index i, "
            f"coloured by region at tau = {drawn.tau:g}; the dashed line is the mean for a "
            "uniformly random direction.",
        ),
        [
            key_value_table("output Jacobian", facts),
            _summary_table("share in null(F) per region", result["summary"]),
        ],
        anchor="function-space",
    )


def data_section(result: Mapping[str, Any], drawn: Drawn) -> Section:
    """The section of the `data` analysis."""
    rows = []
    for run, counts in zip(result["names"], result["counts"], strict=True):
        for j, t in enumerate(counts["taus"]):
            rows.append([run, t, counts["chaotic"][j], counts["bulk"][j], counts["stable"][j]])
    return Section(
        "Data dependence",
        "Training Jacobians of the same initialisation on real data, shuffled labels "
        "and uniform-noise inputs.",
        _plot(
            drawn,
            "data",
            data_figure(result),
            "|s_i - 1| by index for each training distribution (log scale).",
        ),
        [Table("region counts", ["data", "tau", "chaotic", "bulk", "stable"], rows)],
        anchor="data",
    )


def seeds_section(result: Mapping[str, Any], drawn: Drawn) -> Section:
    """The section of the `seeds` analysis."""
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
        _plot(
            drawn,
            "seeds",
            seeds_figure(result),
            "Left: the mean squared cosine of the principal angles between the k most "
            "bulk-like directions of each seed, against k/n for random subspaces. "
            "Right: the principal cosines between the two bulks.",
        ),
        [bulk, curve],
        anchor="seeds",
    )


def lyapunov_section(result: Mapping[str, Any], drawn: Drawn) -> Section:
    """The section of the `lyapunov` analysis (`TrainingLyapunovSpectrum` as a dict)."""
    exponents = np.asarray(result["exponents"])
    rates = result.get("singular_rates")
    resolved = result.get("resolved")
    partial = np.cumsum(exponents)
    rows = []
    for i in range(exponents.size):
        told_apart = resolved is None or bool(resolved[i])
        rows.append(
            [
                i + 1,
                exponents[i]
                if told_apart
                else f"unresolved ({exponents[i]:.3g} mixes its "
                "neighbours; a longer run would separate them)",
                None if rates is None else rates[i],
                partial[i],
                None if rates is None else float(np.sum(rates[: i + 1])),
            ]
        )
    return Section(
        "Lyapunov spectrum of the training map",
        "Training as a dynamical system on (theta, the optimizer's state): its k leading "
        "finite-time Lyapunov exponents over the run, by the QR method with k JVPs of "
        "each step from a random frame, beside log s_i / T of the training Jacobian (a "
        "block of the same product of step Jacobians). The run is deterministic, so "
        "no standard error applies; an exponent whose neighbouring rates differ by less "
        "than 5 / T is unresolved, since a finite run cannot turn the random frame "
        "towards it. The partial sums are volume growth rates whatever the alignment.",
        _plot(
            drawn,
            "lyapunov",
            lyapunov_figure(result),
            "Left: the exponents (dots) and log s_i / T (crosses) by index; positive "
            "rates are the chaotic region, rates near 0 the bulk. Right: the three "
            f"leading exponents over each of {len(result['phase_rates'])} consecutive "
            "phases of the run.",
        ),
        [
            Table(
                f"the {exponents.size} leading rates per step (state of "
                f"{result['state_size']:,} scalars, {result['num_steps']} steps)",
                ["i", "lambda_i", "log s_i / T", "lambda_1 + ... + lambda_i", "sum of log s / T"],
                rows,
            )
        ],
        anchor="lyapunov",
    )


SECTIONS: dict[str, Callable[[Mapping[str, Any], Drawn], Section]] = {
    "spectrum": spectrum_section,
    "alignment": alignment_section,
    "linearity": linearity_section,
    "restricted": restricted_section,
    "outputs": outputs_section,
    "function_space": function_space_section,
    "data": data_section,
    "seeds": seeds_section,
    "lyapunov": lyapunov_section,
}
"""The report section of each analysis of `jacscope.jobs.ANALYSES`, by name: a function
of the analysis's saved result (numbers and arrays) and a `Drawn`."""


def findings_section(report: Mapping[str, Any]) -> Section:
    """The first section of the page: the report's findings in words."""
    return Section("Findings", points=findings(report), anchor="findings")


_RUN_TABLES = (
    ("optimisation", ("optimizer", "lr", "momentum", "epochs", "batch_size", "dtype")),
    (
        "model and data",
        ("dataset", "train_size", "labels", "inputs", "model", "hidden", "hidden_layers"),
    ),
)
"""The tables of a run's configuration, by caption and keys; the other keys (the
seeds) go to a third table."""


def _config_tables(config: Mapping[str, Any]) -> list[Table]:
    grouped = {key for _, keys in _RUN_TABLES for key in keys}
    tables = [
        key_value_table(caption, {k: config[k] for k in keys if k in config})
        for caption, keys in _RUN_TABLES
    ]
    rest = {k: v for k, v in config.items() if k not in grouped}
    return [*tables, key_value_table("seeds", rest)] if rest else tables


def run_sections(report: Mapping[str, Any], **settings: Any) -> list[Section]:
    """The Configuration and Training sections: the run, its size, `settings` (those
    of the analysis, if any), and loss and accuracy before and after training."""
    size = {
        "parameters P": report["num_params"],
        "steps T": report["num_steps"],
        "peak learning rate (used)": report["learning_rate"],
    }
    training = report["training"]
    before_after = Table(
        "loss (nats) and accuracy",
        ["", "at initialisation theta_0", "after training theta_T"],
        [
            [
                f"{split} {measure}",
                training.get(f"initial_{split}_{measure}"),
                training.get(f"{split}_{measure}"),
            ]
            for split in ("train", "test")
            for measure in ("loss", "accuracy")
        ],
    )
    steps = {k: training[k] for k in ("first_step_loss", "last_step_loss") if k in training}
    return [
        Section(
            "Configuration",
            tables=[
                *_config_tables(report["config"]),
                key_value_table("size", size),
                *([key_value_table("settings of the analysis", settings)] if settings else []),
            ],
        ),
        Section(
            "Training",
            tables=[before_after, key_value_table("loss of the training steps", steps)],
        ),
    ]


def time_table(timings: Mapping[str, float | None]) -> Table:
    """The table of the time each stage took (`None`: taken from the folder)."""
    return Table(
        "time per stage",
        ["stage", "time"],
        [[label(k), human_seconds(v)] for k, v in timings.items()],
    )


def training_report_sections(report: Mapping[str, Any], folder: str | os.PathLike) -> list[Section]:
    """The sections of report.html for the report of a `train-jacobian` folder; their
    figures are also written to `folder/figures/` as PNG and SVG."""
    folder = Path(folder)
    results = load(folder)
    S = results.stage("singular-values")["S"].astype(float)
    taus = report["regions"]["taus"]
    drawn = Drawn(report, S, taus[len(taus) // 2], folder)
    sections = [findings_section(report), *run_sections(report)]
    for name in report["analyses"]:
        sections.append(SECTIONS[name](results.stage(f"analysis-{name}"), drawn))
    jacobian, svd = report["jacobian"], report["svd"]
    itemsize = np.dtype(jacobian["dtype"]).itemsize
    rows, cols = jacobian["shape"]
    sections.append(
        Section(
            "Cost",
            tables=[
                time_table(report["timings"]),
                key_value_table(
                    "resources",
                    {
                        "exact Jacobian": f"{jacobian['file']} ({rows:,} x {cols:,} "
                        f"{jacobian['dtype']}, {format_bytes(rows * cols * itemsize)})",
                        "achieved GFLOP/s": jacobian["gflop_per_s"],
                        "SVD": f"{svd['routine']}, {svd['dtype']}",
                        "peak_memory_mib": report["peak_memory_mib"],
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
        else f"MLP hidden {config['hidden']} x {config['hidden_layers']}"
    )
    return (
        f"{config['dataset']} ({config['labels']} labels, {config['inputs']} inputs), "
        f"{model}, {config['optimizer']} for {config['epochs']} epochs"
    )


def write_training_report(folder: str | os.PathLike, report: TrainJacobianReport | Mapping) -> Path:
    """Write report.html of a finished folder (the job has written report.json), and
    its figures as `figures/<section>.png` and `.svg`.

    **Arguments:**

    - `folder`: the job folder (holding the spectrum and the analyses in its stages).
    - `report`: a `TrainJacobianReport` or its dict, as read back from report.json.

    **Returns:** the path of report.html.
    """
    folder = Path(folder)
    data = report._asdict() if isinstance(report, TrainJacobianReport) else dict(report)
    subtitle = (
        f"{run_description(data['config'])}; P = {data['num_params']:,}, "
        f"T = {data['num_steps']:,}. Belrose & Scherlis, Understanding Gradient Descent "
        "through the Training Jacobian (arXiv 2412.07003)."
    )
    page = html_page("Training Jacobian", training_report_sections(data, folder), subtitle)
    return write_html(folder / "report.html", page)
