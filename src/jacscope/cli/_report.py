"""`jacscope report DIR`: re-render report.html of a finished train-jacobian folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from jacscope._io import read_json
from jacscope.cli._train_jacobian import report_tables
from jacscope.report import render_training_report


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `report` with the `jacscope` subcommand parsers."""
    parser = subparsers.add_parser(
        "report",
        help="re-render report.html of a train-jacobian folder from its saved results",
        description=(
            "Draw report.html again from DIR/report.json, DIR/spectrum.npz and "
            "DIR/analyses/ (nothing is recomputed) and print the result tables."
        ),
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="a finished train-jacobian folder")
    return parser


def run(args: argparse.Namespace) -> int:
    """Re-render the report of `args.dir` and print its tables."""
    path = render_training_report(args.dir)
    console = Console()
    for table in report_tables(read_json(args.dir / "report.json")):
        console.print(table)
    console.print(f"wrote {path}")
    return 0
