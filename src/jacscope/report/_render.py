"""Re-rendering a finished train-jacobian folder, exact or matrix-free, from report.json."""

from __future__ import annotations

import os
from pathlib import Path

from jacscope._io import read_json
from jacscope.jobs.matrix_free import MODE as MATRIX_FREE
from jacscope.report._matrix_free import write_matrix_free_report
from jacscope.report._training import write_training_report


def render_training_report(folder: str | os.PathLike) -> Path:
    """Re-render report.html of a finished folder from report.json and the saved results.

    The report's `mode` picks the layout: matrix-free reports carry every number in
    report.json; exact ones also read the spectrum and the analyses from stages/.

    **Raises:** `ValueError` if the folder has no report.json (not complete).
    """
    folder = Path(folder)
    path = folder / "report.json"
    if not path.exists():
        raise ValueError(
            f"{path} does not exist: {folder} is not a finished `jacscope train-jacobian` folder"
        )
    report = read_json(path)
    if report.get("mode") == MATRIX_FREE:
        return write_matrix_free_report(folder, report)
    return write_training_report(folder, report)
