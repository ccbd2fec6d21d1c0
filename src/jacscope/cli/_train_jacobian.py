"""`jacscope train-jacobian`: the exact training Jacobian of a run and its analyses."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from jacscope.jobs.train_jacobian import ANALYSES, DEFAULT_ANALYSES, run_train_jacobian
from jacscope.report import write_training_report
from jacscope.training import TrainingConfig


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `train-jacobian` with the `jacscope` subcommand parsers."""
    defaults = TrainingConfig()
    parser = subparsers.add_parser(
        "train-jacobian",
        help="exact Jacobian d theta_T / d theta_0 of a training run, its SVD and analyses",
        description=(
            "Train an MLP (default: the setting of Belrose & Scherlis, arXiv 2412.07003: "
            "digits, 64-64-10 GELU, 25 epochs of SGD with momentum, P = 4810), compute the "
            "exact Jacobian J of the final parameters with respect to the initial ones, its "
            "SVD, and the selected analyses. Writes DIR/jacobian.npy, DIR/spectrum.npz, "
            "DIR/analyses/, DIR/report.html and, last, DIR/report.json. A killed run resumes "
            "where it stopped; --force starts over."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--dataset", choices=("digits", "mnist1d"), default=defaults.dataset)
    parser.add_argument("--labels", choices=("real", "shuffled"), default=defaults.labels)
    parser.add_argument("--inputs", choices=("real", "noise"), default=defaults.inputs)
    parser.add_argument("--hidden", type=int, default=defaults.hidden, help="hidden width")
    parser.add_argument("--depth", type=int, default=defaults.depth, help="hidden layers")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default=defaults.optimizer)
    parser.add_argument(
        "--lr", type=float, default=None, help="peak learning rate (default: 0.1 SGD, 3e-3 Adam)"
    )
    parser.add_argument("--momentum", type=float, default=defaults.momentum, help="SGD momentum")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="initialisation seed")
    parser.add_argument(
        "--data-seed", type=int, default=defaults.data_seed, help="seed of the data controls"
    )
    parser.add_argument(
        "--train-size", type=int, default=None, help="use the first N training examples"
    )
    parser.add_argument("--dtype", choices=("float32", "float64"), default=defaults.dtype)
    parser.add_argument(
        "--analyses",
        default=",".join(DEFAULT_ANALYSES),
        help=f"comma-separated, from: {', '.join(ANALYSES)}; or 'all' (data and seeds "
        "each need further exact Jacobians)",
    )
    parser.add_argument(
        "--restricted-ks",
        type=lambda text: [int(k) for k in text.split(",")],
        default=None,
        metavar="K1,K2,...",
        help="subspace dimensions of the restricted analysis (default: 2, 5, 10, 20, 40%% of P)",
    )
    parser.add_argument(
        "--save-vectors", action="store_true", help="also save U and Vt in spectrum.npz"
    )
    parser.add_argument(
        "--svd-dtype", choices=("float32", "float64"), default="float32", help="SVD precision"
    )
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="columns of J per chunk (default: by memory)"
    )
    parser.add_argument("--max-bytes", type=int, default=None, help="memory budget for J's chunks")
    parser.add_argument("--force", action="store_true", help="discard DIR's results, start over")
    return parser


def _config(args: argparse.Namespace) -> TrainingConfig:
    return TrainingConfig(
        dataset=args.dataset,
        labels=args.labels,
        inputs=args.inputs,
        hidden=args.hidden,
        depth=args.depth,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        seed=args.seed,
        data_seed=args.data_seed,
        train_size=args.train_size,
        dtype=args.dtype,
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def result_tables(report: Mapping[str, Any]) -> list[Table]:
    """Rich tables of a train-jacobian report: run, region counts, alignment, timings."""
    training = report["training"]
    run = Table(title="Training run", show_header=False)
    run.add_column("quantity", style="bold")
    run.add_column("value")
    run.add_row("parameters P, steps T", f"{report['num_params']}, {report['num_steps']}")
    for split in ("train", "test"):
        run.add_row(
            f"{split} loss / accuracy",
            f"{training[f'initial_{split}_loss']:.4f} -> {training[f'{split}_loss']:.4f} / "
            f"{training[f'initial_{split}_accuracy']:.3f} -> {training[f'{split}_accuracy']:.3f}",
        )
    regions = report["regions"]
    counts = Table(
        title=f"Regions of the spectrum (s_max {regions['largest']:.4g}, "
        f"s_min {regions['smallest']:.4g})"
    )
    for name in ("tau", "chaotic s > 1 + tau", "bulk |s - 1| <= tau", "stable s < 1 - tau"):
        counts.add_column(name, justify="right")
    for row in zip(
        regions["taus"], regions["chaotic"], regions["bulk"], regions["stable"], strict=True
    ):
        counts.add_row(*(_fmt(v) for v in row))
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
    timing.add_row("peak memory (MiB)", _fmt(report["peak_memory_mib"]))
    tables.append(timing)
    return tables


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the job, write report.html and report.json, print the tables."""
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    config = _config(args)
    console = Console(log_path=False)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("columns, {task.fields[chunks]} chunks"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[rate]}"),
        console=console,
    ) as progress:
        tasks: dict[str, Any] = {}

        def on_chunk(label: str, done: int, total: int, elapsed: float, flops: float) -> None:
            # The first call of each Jacobian comes before its first chunk.
            if label not in tasks:
                tasks[label] = progress.add_task(
                    f"J ({label})", total=total, completed=done, chunks=0, rate=""
                )
                return
            task = tasks[label]
            chunks = progress.tasks[task].fields["chunks"] + 1
            rate = f"{flops / elapsed / 1e9:.1f} GFLOP/s" if elapsed > 0 and flops else ""
            progress.update(task, completed=done, chunks=chunks, rate=rate)

        report = run_train_jacobian(
            config,
            args.out,
            analyses=args.analyses,
            save_vectors=args.save_vectors,
            svd_dtype=args.svd_dtype,
            restricted_ks=args.restricted_ks,
            chunk_size=args.chunk_size,
            max_bytes=args.max_bytes,
            force=args.force,
            progress=on_chunk,
            log=progress.console.log,
        )
        progress.console.log("writing report.html and report.json")
        html_path = write_training_report(args.out, report)
    for table in result_tables(report._asdict()):
        console.print(table)
    if report.resumed:
        console.print(f"taken from {args.out}: {', '.join(report.resumed)}")
    console.print(f"wrote {html_path} and {Path(args.out) / 'report.json'}")
    return 0
