"""`jacscope report DIR`: re-render report.html of a finished folder from its saved results."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from jacscope._io import read_json
from jacscope.cli import _lyapunov, _train_jacobian
from jacscope.jobs.lyapunov import MODE as LYAPUNOV
from jacscope.report import render_report


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `report` with the `jacscope` subcommand parsers."""
    parser = subparsers.add_parser(
        "report",
        help="re-render report.html of a train-jacobian or lyapunov folder from its saved results",
        description=(
            "Draw report.html again from DIR/report.json and, for an exact train-jacobian "
            "folder, DIR/stages/ (nothing is recomputed) and print the result tables."
        ),
    )
    parser.add_argument(
        "dir", type=Path, metavar="DIR", help="a finished train-jacobian or lyapunov folder"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Re-render the report of `args.dir` and print its tables."""
    path = render_report(args.dir)
    report = read_json(args.dir / "report.json")
    command = _lyapunov if report.get("mode") == LYAPUNOV else _train_jacobian
    console = Console()
    for table in command.report_tables(report):
        console.print(table)
    console.print(f"wrote {path}")
    return 0
