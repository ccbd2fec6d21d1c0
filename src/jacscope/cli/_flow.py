"""`jacscope flow`: a continuous normalising flow trained on a 2-D density."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from rich.table import Table

from jacscope.cli._flags import add_flags, add_folder_flags, given, merged
from jacscope.cli._progress import run_job
from jacscope.data import DENSITIES
from jacscope.jobs import FlowConfig, run_flow
from jacscope.jobs._config_file import build, read_toml
from jacscope.report import SUMMARY_HEADERS, summary_rows, write_flow_report
from jacscope.report._html import human_seconds


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `flow` with the `jacscope` subcommand parsers."""
    parser = subparsers.add_parser(
        "flow",
        help="train a continuous normalising flow on a 2-D density (eight_gaussians, ...)",
        description=(
            "Train a continuous normalising flow (FFJORD's concat field, exact divergence, "
            "float32) by maximum likelihood with Adam, unregularised or with RNODE's "
            "penalties or the local-error regulariser (weight 0.05), on one of the 2-D "
            f"densities {', '.join(DENSITIES)}; then the test NLL, the solver's steps and "
            "the penalties on held-out samples, the learned density and samples of the "
            "flow. Training is kept in chunks of --checkpoint-every iterations. Writes "
            "DIR/job.json, DIR/config.toml, DIR/stages/, DIR/report.html and, last, "
            "DIR/report.json; the same command on a folder resumes from its last finished "
            "chunk; --config DIR/config.toml reproduces a run."
        ),
    )
    add_folder_flags(parser)
    add_flags(parser.add_argument_group("flow"), "flow", FlowConfig)
    return parser


def configuration(args: argparse.Namespace) -> FlowConfig:
    """The configuration: from `--config` if given, the flags on top; checked before any
    work."""
    file = read_toml(args.config) if args.config is not None else {}
    values = merged(file.get("flow", {}), given(args, "flow"))
    return build(FlowConfig, values, "flow")


def report_tables(report: Mapping[str, Any]) -> list[Table]:
    """The rich table of a flow report: its numbers and the time taken."""
    config = report["config"]
    summary = Table(
        title=f"continuous normalising flow on {config['dataset']} "
        f"(regulariser {config['regulariser']})"
    )
    for name in SUMMARY_HEADERS:
        summary.add_column(name)
    for row in summary_rows(report):
        summary.add_row(*(str(cell) for cell in row))
    timings = report["timings"]
    summary.add_row(
        "time",
        f"training {human_seconds(timings['train'])}, evaluation "
        f"{human_seconds(timings['evaluate'])}, total (this call) "
        f"{human_seconds(timings['total'])}",
    )
    return [summary]


def run(args: argparse.Namespace) -> int:
    """Train (or resume) the flow, write report.html, print the table."""
    config = configuration(args)
    return run_job(args, config, run_flow, write_flow_report, report_tables)
