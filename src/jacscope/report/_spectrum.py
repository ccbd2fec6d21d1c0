"""The figure of a Jacobian's top singular values with their residual bounds."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from jacscope._io import atomic_path
from jacscope.jobs.spectrum import SpectrumResult


def spectrum_figure(result: SpectrumResult) -> Figure:
    """Singular values against their index, log scale, with residual error bars.

    Top panel: each `s_i` with a bar spanning `s_i +- residuals[i] / sqrt(2)`, the
    interval in which `jacscope.linalg.svd_topk` guarantees a true singular value
    (clipped at the bottom of the axis where it reaches zero). Bottom panel: the
    relative residuals `residuals[i] / s_i`, log scale, since converged bars are
    usually too short to see. The title states the dataset, the Jacobian's shape,
    ||J||_F and the share of ||J||_F^2 in the top k.

    **Arguments:**

    - `result`: a `jacscope.jobs.SpectrumResult`, or one rebuilt from its JSON as
      `SpectrumResult(**json.load(f))`.

    **Returns:** a `matplotlib.figure.Figure` (no pyplot state involved).
    """
    s = np.asarray(result.singular_values, dtype=float)
    residuals = np.asarray(result.residuals, dtype=float)
    half_width = residuals / math.sqrt(2)
    index = np.arange(1, s.size + 1)
    positive = s[s > 0]
    floor = positive.min() / 10 if positive.size else 1e-12
    lower = np.minimum(half_width, s - floor).clip(min=0)

    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1.3))
    top.errorbar(
        index,
        s,
        yerr=np.vstack([lower, half_width]),
        fmt="o",
        markersize=3.5,
        capsize=2.5,
        elinewidth=1.0,
        label=r"$\sigma_i \pm r_i/\sqrt{2}$",
    )
    top.set_yscale("log")
    top.set_ylabel(r"singular value $\sigma_i$")
    top.grid(True, which="both", alpha=0.3)
    top.legend(fontsize=8)
    config = result.config
    m, n = result.shape
    frob = result.frobenius
    top.set_title(
        f"Jacobian of the logits w.r.t. {config['wrt']} on {config['dataset']}: "
        f"{m} x {n}\n"
        rf"$\|J\|_F$ = {frob['value']:.4g} $\pm$ {frob['stderr']:.2g}; "
        f"top {s.size} hold {100 * result.top_k_energy:.1f}% of "
        r"$\|J\|_F^2$",
        fontsize=9,
    )
    relative = np.where(s > 0, residuals / np.where(s > 0, s, 1.0), np.nan)
    shown = relative > 0
    bottom.semilogy(index[shown], relative[shown], "s", markersize=3, color="C1")
    bottom.set_ylabel(r"$r_i / \sigma_i$")
    bottom.set_xlabel("index i")
    bottom.grid(True, which="both", alpha=0.3)
    return fig


def save_spectrum_figure(result: SpectrumResult, path: str | os.PathLike) -> Path:
    """Draw `spectrum_figure(result)` and write it to `path` as PNG, atomically."""
    fig = spectrum_figure(result)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    return Path(path)
