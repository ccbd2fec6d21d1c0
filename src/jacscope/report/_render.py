"""Re-rendering a finished folder's report.html from its report.json, by its `mode`."""

from __future__ import annotations

import os
from pathlib import Path

from jacscope._io import read_json
from jacscope.jobs.flow import MODE as FLOW
from jacscope.jobs.lyapunov import MODE as LYAPUNOV
from jacscope.jobs.matrix_free import MODE as MATRIX_FREE
from jacscope.report._flow import write_flow_report
from jacscope.report._lyapunov import write_lyapunov_report
from jacscope.report._matrix_free import write_matrix_free_report
from jacscope.report._training import write_training_report


def render_report(folder: str | os.PathLike) -> Path:
    """Re-render report.html of a finished folder from report.json and the saved results.

    The report's `mode` picks the layout: Lyapunov and matrix-free reports carry every
    number in report.json; exact train-jacobian ones (no `mode`) also read the
    spectrum and the analyses from stages/; flow reports read the density and the
    samples from stages/evaluate.npz.

    **Raises:** `ValueError` if the folder has no report.json (not complete).
    """
    folder = Path(folder)
    path = folder / "report.json"
    if not path.exists():
        raise ValueError(f"{path} does not exist: {folder} is not a finished jacscope folder")
    report = read_json(path)
    if report.get("mode") == LYAPUNOV:
        return write_lyapunov_report(folder, report)
    if report.get("mode") == FLOW:
        return write_flow_report(folder, report)
    if report.get("mode") == MATRIX_FREE:
        return write_matrix_free_report(folder, report)
    return write_training_report(folder, report)
