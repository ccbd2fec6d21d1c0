"""`jacscope train-jacobian`: the training Jacobian of a run, exact or matrix-free, and its
analyses."""

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

from jacscope.cli._types import fraction, positive_float, positive_int
from jacscope.jobs.matrix_free import MODE as MATRIX_FREE
from jacscope.jobs.matrix_free import run_matrix_free
from jacscope.jobs.train_jacobian import ANALYSES, DEFAULT_ANALYSES, run_train_jacobian
from jacscope.report import write_matrix_free_report, write_training_report
from jacscope.report._matrix_free import REGION_HEADERS, region_rows, stage_seconds, top_rows
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
    parser.add_argument(
        "--model",
        choices=("mlp", "cnn"),
        default=defaults.model,
        help="MLP (--hidden, --depth) or LeNet-5-like CNN",
    )
    parser.add_argument("--labels", choices=("real", "shuffled"), default=defaults.labels)
    parser.add_argument("--inputs", choices=("real", "noise"), default=defaults.inputs)
    parser.add_argument("--hidden", type=positive_int, default=defaults.hidden, help="hidden width")
    parser.add_argument("--depth", type=positive_int, default=defaults.depth, help="hidden layers")
    parser.add_argument("--epochs", type=positive_int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default=defaults.optimizer)
    parser.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help="peak learning rate (default: 0.1 SGD, 3e-3 Adam)",
    )
    parser.add_argument("--momentum", type=fraction, default=defaults.momentum, help="SGD momentum")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="initialisation seed")
    parser.add_argument(
        "--data-seed", type=int, default=defaults.data_seed, help="seed of the data controls"
    )
    parser.add_argument(
        "--train-size", type=positive_int, default=None, help="use the first N training examples"
    )
    parser.add_argument("--dtype", choices=("float32", "float64"), default=defaults.dtype)
    parser.add_argument(
        "--analyses",
        default=None,
        help=f"comma-separated, from: {', '.join(ANALYSES)}; or 'all' (data and seeds "
        f"each need further exact Jacobians); default: {','.join(DEFAULT_ANALYSES)}",
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
        "--chunk-size",
        type=positive_int,
        default=None,
        help="columns of J per chunk (default: by memory)",
    )
    parser.add_argument(
        "--max-bytes", type=positive_int, default=None, help="memory budget for J's chunks"
    )
    parser.add_argument("--force", action="store_true", help="discard DIR's results, start over")
    free = parser.add_argument_group(
        "matrix-free (models too large for the exact J: top-k triplets of J and J - I, "
        "a density of J's singular values and estimated region counts)"
    )
    free.add_argument("--matrix-free", action="store_true", help="never form J")
    free.add_argument(
        "--k", type=positive_int, default=64, help="singular triplets of J and of J - I"
    )
    free.add_argument("--method", choices=("lanczos", "randomized"), default="lanczos")
    free.add_argument(
        "--lanczos-depth", type=positive_int, default=None, help="Lanczos steps (default 3k + 20)"
    )
    free.add_argument(
        "--tol",
        type=positive_float,
        default=None,
        help="stop Lanczos early once every residual is below TOL times its singular value "
        "(--lanczos-depth is then the most steps)",
    )
    free.add_argument("--probes", type=positive_int, default=8, help="probes of the density")
    free.add_argument(
        "--density-depth", type=positive_int, default=40, help="Lanczos steps per probe"
    )
    free.add_argument(
        "--checkpoint-every",
        type=_checkpoint_every,
        default="sqrt",
        metavar="sqrt|stored|N",
        help="reverse-mode products: recompute from checkpoints every ~sqrt(T) or N "
        "steps, or store the trajectory",
    )
    free.add_argument("--probe-seed", type=int, default=0, help="seed of the random vectors")
    return parser


_EXACT_ONLY = ("analyses", "restricted_ks", "chunk_size", "max_bytes")


def _checkpoint_every(text: str) -> int | str | None:
    if text in ("sqrt", "stored"):
        return None if text == "stored" else text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected sqrt, stored or a number of steps, received {text!r}"
        ) from None


def _config(args: argparse.Namespace) -> TrainingConfig:
    return TrainingConfig(
        dataset=args.dataset,
        model=args.model,
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


def result_tables(report: Mapping[str, Any]) -> list[Table]:
    """Rich tables of a train-jacobian report: run, region counts, alignment, timings."""
    run = _run_table("Training run", report)
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


def matrix_free_tables(report: Mapping[str, Any]) -> list[Table]:
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
    regions = analysis["regions"]
    counts = Table(
        title=f"Regions of the spectrum (estimated, {regions['num_probes']} probes): "
        "value ± standard error in [range]"
    )
    for name in REGION_HEADERS:
        counts.add_column(name, justify="right")
    for row in region_rows(regions):
        counts.add_row(*(_fmt(v) for v in row))
    sweeps = analysis["sweeps"]
    cost = Table(title="Cost", show_header=False)
    cost.add_column("stage", style="bold")
    cost.add_column("value", justify="right")
    for stage, seconds in stage_seconds(report).items():
        cost.add_row(f"{stage} (s)", _fmt(seconds))
    cost.add_row(
        "passes through training", f"{sweeps['total']} ({sweeps['mv']} mv, {sweeps['rmv']} rmv)"
    )
    cost.add_row("peak memory (MiB)", _fmt(report["peak_memory_mib"]))
    return [run, tops, counts, cost]


def report_tables(report: Mapping[str, Any]) -> list[Table]:
    """The rich tables of a train-jacobian report, exact or matrix-free."""
    if report.get("mode") == MATRIX_FREE:
        return matrix_free_tables(report)
    return result_tables(report)


def _run_matrix_free(args: argparse.Namespace, config: TrainingConfig, console: Console):
    given = [f"--{name.replace('_', '-')}" for name in _EXACT_ONLY if getattr(args, name)]
    given += ["--save-vectors"] if args.save_vectors else []
    if given:
        raise ValueError(f"{', '.join(given)} apply to the exact Jacobian, not --matrix-free")
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("passes through training"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        tasks: dict[str, Any] = {}

        def on_sweep(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        report = run_matrix_free(
            config,
            args.out,
            k=args.k,
            method=args.method,
            depth=args.lanczos_depth,
            tol=args.tol,
            num_probes=args.probes,
            density_depth=args.density_depth,
            checkpoint_every=args.checkpoint_every,
            seed=args.probe_seed,
            force=args.force,
            progress=on_sweep,
            log=progress.console.log,
        )
        progress.console.log("writing report.html and report.json")
        return report, write_matrix_free_report(args.out, report)


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the job, write report.html and report.json, print the tables."""
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    config = _config(args)
    console = Console(log_path=False)
    if args.matrix_free:
        report, html_path = _run_matrix_free(args, config, console)
        for table in matrix_free_tables(report._asdict()):
            console.print(table)
        if report.resumed:
            console.print(f"taken from {args.out}: {', '.join(report.resumed)}")
        console.print(f"wrote {html_path} and {Path(args.out) / 'report.json'}")
        return 0
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
            analyses=args.analyses or DEFAULT_ANALYSES,
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
