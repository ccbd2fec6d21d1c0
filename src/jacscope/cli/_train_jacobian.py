"""`jacscope train-jacobian`: the training Jacobian of a run, exact or matrix-free, and its
analyses."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
from rich.console import Console
from rich.table import Table

from jacscope.cli._flags import add_flags, add_folder_flags, given, given_flags, merged
from jacscope.cli._progress import progress_bars
from jacscope.jobs import (
    ANALYSES,
    ExactSettings,
    MatrixFreeSettings,
    run_matrix_free,
    run_train_jacobian,
)
from jacscope.jobs._config_file import build, read_toml
from jacscope.jobs.matrix_free import MODE as MATRIX_FREE
from jacscope.report import (
    REGION_HEADERS,
    region_rows,
    region_title,
    stage_seconds,
    top_rows,
    write_matrix_free_report,
    write_training_report,
)
from jacscope.training import TrainingConfig


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `train-jacobian` with the `jacscope` subcommand parsers."""
    parser = subparsers.add_parser(
        "train-jacobian",
        help="Jacobian d theta_T / d theta_0 of a training run, exact or matrix-free, analysed",
        description=(
            "Train a network (default: the setting of Belrose & Scherlis, arXiv 2412.07003: "
            "digits, 64-64-10 GELU, 25 epochs of SGD with momentum, P = 4810) and measure the "
            "Jacobian J of the final parameters with respect to the initial ones: exactly "
            "(J, its SVD and the selected analyses) or, with --matrix-free, from products "
            "with J only. Writes DIR/job.json, DIR/config.toml, DIR/stages/, "
            "DIR/report.html and, last, DIR/report.json. A killed run resumes where it "
            "stopped; --force starts over; --config DIR/config.toml reproduces a run."
        ),
    )
    add_folder_flags(parser)
    parser.add_argument(
        "--matrix-free",
        action="store_true",
        default=None,
        help="never form J: top-k of J and J - I, a density and estimated region counts",
    )
    add_flags(parser.add_argument_group("training run"), "training", TrainingConfig)
    exact = parser.add_argument_group(
        "exact Jacobian", f"analyses: {', '.join(ANALYSES)}, all, default"
    )
    add_flags(exact, "exact", ExactSettings)
    add_flags(
        parser.add_argument_group("matrix-free (--matrix-free)"), "matrix_free", MatrixFreeSettings
    )
    return parser


def _refuse_other_mode(args: argparse.Namespace, matrix_free: bool, method: str, model: str):
    """A flag that does not apply to the chosen mode, method or model is an error."""
    if matrix_free and given_flags(args, "exact"):
        flags = ", ".join(given_flags(args, "exact"))
        raise ValueError(f"{flags} apply to the exact Jacobian, not --matrix-free")
    if not matrix_free and given_flags(args, "matrix_free"):
        raise ValueError(
            f"{', '.join(given_flags(args, 'matrix_free'))} apply only with --matrix-free"
        )
    other = "randomized" if method == "lanczos" else "lanczos"
    if given_flags(args, "matrix_free", other):
        raise ValueError(
            f"{', '.join(given_flags(args, 'matrix_free', other))} apply to --method {other}, "
            f"not {method}"
        )
    shape = [f for f in given_flags(args, "training") if f in ("--hidden", "--hidden-layers")]
    if model == "cnn" and shape:
        raise ValueError(f"{', '.join(shape)} do not apply to --model cnn (LeNet-5's layers)")


def configuration(args: argparse.Namespace) -> tuple[TrainingConfig, Any, bool]:
    """The training setting, the method's settings and whether the run is matrix-free:
    from `--config` if given, the flags on top; checked before any work."""
    file = read_toml(args.config) if args.config is not None else {}
    matrix_free = (
        args.matrix_free if args.matrix_free is not None else file.get("mode") == MATRIX_FREE
    )
    training = build(
        TrainingConfig, merged(file.get("training", {}), given(args, "training")), "training"
    )
    if matrix_free:
        values = merged(file.get("matrix_free", {}), given(args, "matrix_free"))
        settings = build(MatrixFreeSettings, values, "matrix_free")
        _refuse_other_mode(args, True, settings.method, training.model)
    else:
        settings = build(
            ExactSettings, merged(file.get("exact", {}), given(args, "exact")), "exact"
        )
        _refuse_other_mode(args, False, "lanczos", training.model)
    return training, settings, matrix_free


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _run_table(title: str, report: Mapping[str, Any]) -> Table:
    """P, T and the loss and accuracy before and after training."""
    training = report["training"]
    run = Table(title=title, show_header=False)
    run.add_column("quantity", style="bold")
    run.add_column("value")
    run.add_row("parameters P, steps T", f"{report['num_params']:,}, {report['num_steps']}")
    for split in ("train", "test"):
        run.add_row(
            f"{split} loss / accuracy",
            f"{training[f'initial_{split}_loss']:.4f} -> {training[f'{split}_loss']:.4f} / "
            f"{training[f'initial_{split}_accuracy']:.3f} -> {training[f'{split}_accuracy']:.3f}",
        )
    return run


def _region_table(regions: Mapping[str, Any]) -> Table:
    """The region counts, exact or estimated, in the report's one layout."""
    counts = Table(title=region_title(regions))
    for name in REGION_HEADERS:
        counts.add_column(name, justify="right")
    for row in region_rows(regions):
        counts.add_row(*(_fmt(v) for v in row))
    return counts


def _exact_tables(report: Mapping[str, Any]) -> list[Table]:
    """Rich tables of an exact report: run, region counts, alignment, timings."""
    run = _run_table("Training run", report)
    counts = _region_table(report["regions"])
    tables = [run, counts]
    if report.get("alignment"):
        align = Table(title="cos(u_i, v_i) per region")
        for name in ("tau", "region", "count", "mean", "median", "min"):
            align.add_column(name, justify="right")
        for row in report["alignment"]:
            align.add_row(
                *(_fmt(row[k]) for k in ("tau", "region", "count", "mean", "median", "min"))
            )
        tables.append(align)
    timing = Table(title="Time (s)", show_header=False)
    timing.add_column("stage", style="bold")
    timing.add_column("seconds", justify="right")
    for stage, seconds in report["timings"].items():
        timing.add_row(stage, _fmt(seconds))
    timing.add_row("peak memory", f"{report['peak_memory_mib']:,.0f} MiB")
    tables.append(timing)
    return tables


def _matrix_free_tables(report: Mapping[str, Any]) -> list[Table]:
    """Rich tables of a matrix-free report: run, top singular values, estimated regions,
    cost."""
    analysis = report["analysis"]
    run = _run_table("Training run (matrix-free)", report)
    top_j, top_j_minus_i = analysis["top_j"], analysis["top_j_minus_i"]
    tops = Table(title=f"Top {len(top_j['values'])} singular values (computed)")
    for name in ("i", "s_i(J)", "residual / s_i", "s_i(J - I)", "residual / s_i"):
        tops.add_column(name, justify="right")
    for row in top_rows(top_j, top_j_minus_i):
        tops.add_row(*(_fmt(v) for v in row))
    counts = _region_table(analysis["regions"])
    sweeps = analysis["sweeps"]
    cost = Table(title="Cost", show_header=False)
    cost.add_column("stage", style="bold")
    cost.add_column("value", justify="right")
    for stage, seconds in stage_seconds(report).items():
        cost.add_row(f"{stage} (s)", _fmt(seconds))
    cost.add_row(
        "passes through training", f"{sweeps['total']} ({sweeps['mv']} mv, {sweeps['rmv']} rmv)"
    )
    cost.add_row("peak memory", f"{report['peak_memory_mib']:,.0f} MiB")
    return [run, tops, counts, cost]


def report_tables(report: Mapping[str, Any]) -> list[Table]:
    """The rich tables of a train-jacobian report, exact or matrix-free."""
    if report.get("mode") == MATRIX_FREE:
        return _matrix_free_tables(report)
    return _exact_tables(report)


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the job, write report.html, print the tables."""
    config, settings, matrix_free = configuration(args)
    if config.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    console = Console(log_path=False)
    with progress_bars(console) as bars:
        if matrix_free:
            report = run_matrix_free(config, args.out, settings, force=args.force, progress=bars)
            bars.log("writing report.html")
            html_path = write_matrix_free_report(args.out, report)
        else:
            report = run_train_jacobian(config, args.out, settings, force=args.force, progress=bars)
            bars.log("writing report.html")
            html_path = write_training_report(args.out, report)
    for table in report_tables(report._asdict()):
        console.print(table)
    if report.resumed:
        console.print(f"reused from {args.out}: {', '.join(report.resumed)}")
    console.print(f"wrote {html_path} and {Path(args.out) / 'report.json'}")
    return 0
