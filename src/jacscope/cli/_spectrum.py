"""`jacscope spectrum`: top singular values, trace and Frobenius norm of a network Jacobian."""

from __future__ import annotations

import argparse

import jax
from rich.console import Console
from rich.table import Table

from jacscope.cli._flags import add_flags, add_folder_flags, given
from jacscope.cli._progress import progress_bars
from jacscope.jobs import SpectrumConfig, SpectrumResult, run_spectrum
from jacscope.jobs._config_file import build, read_toml
from jacscope.jobs.spectrum import STAGES
from jacscope.report import save_spectrum_figure

FIGURE_NAME = "spectrum.png"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `spectrum` with the `jacscope` subcommand parsers."""
    parser = subparsers.add_parser(
        "spectrum",
        help="spectrum of a briefly trained MLP's Jacobian (parameters or inputs)",
        description=(
            "Train the default MLP for a few epochs of SGD, take the Jacobian J of its "
            "logits on a batch of test examples with respect to its parameters or its "
            "inputs (never formed), and write DIR/report.json (top-k singular values "
            "with residuals, tr(J J^T) and ||J||_F^2 estimates with standard errors, "
            "timings, configuration) and DIR/spectrum.png. J is not square, so the trace "
            "reported is that of J J^T, which equals ||J||_F^2. Each measurement is kept "
            "in DIR/stages/ as it finishes: a killed run resumes."
        ),
    )
    add_folder_flags(parser)
    add_flags(parser.add_argument_group("spectrum"), "spectrum", SpectrumConfig)
    return parser


def _summary(result: SpectrumResult) -> Table:
    table = Table(title="Jacobian spectrum", show_header=False)
    table.add_column("quantity", style="bold")
    table.add_column("value")
    config, training = result.config, result.training
    m, n = result.shape
    table.add_row("Jacobian", f"d logits / d {config['wrt']}: {m} x {n} ({result.dtype})")
    table.add_row(
        "training",
        f"{training['num_steps']} SGD steps, loss {training['loss_first']:.3f} -> "
        f"{training['loss_last']:.3f}, test accuracy {training['test_accuracy_init']:.3f} -> "
        f"{training['test_accuracy']:.3f}",
    )
    for label, key in (
        ("tr(J J^T)", "gram_trace"),
        ("||J||_F^2", "frobenius_sq"),
        ("||J||_F", "frobenius"),
    ):
        est = getattr(result, key)
        table.add_row(
            label, f"{est['value']:.6g} +- {est['stderr']:.2g}  ({est['num_matvecs']} products)"
        )
    table.add_row(
        f"top-{len(result.singular_values)} share", f"{100 * result.top_k_energy:.2f}% of ||J||_F^2"
    )
    table.add_row(
        "time",
        ", ".join(f"{name} {result.timings[name]:.2f}s" for name in (*STAGES, "total")),
    )
    return table


def _singular_values(result: SpectrumResult, head: int = 10, tail: int = 3) -> Table:
    table = Table(title=f"Top {len(result.singular_values)} singular values")
    table.add_column("i", justify="right")
    table.add_column("sigma_i", justify="right")
    table.add_column("residual", justify="right")
    rows = list(enumerate(zip(result.singular_values, result.residuals, strict=True), 1))
    shown = rows if len(rows) <= head + tail + 1 else [*rows[:head], None, *rows[-tail:]]
    for row in shown:
        if row is None:
            table.add_row("...", "...", "...")
            continue
        index, (value, residual) = row
        table.add_row(str(index), f"{value:.6g}", f"{residual:.2e}")
    return table


def run(args: argparse.Namespace) -> int:
    """Compute (or resume) the spectrum, write DIR/report.json and spectrum.png, print tables."""
    file = read_toml(args.config) if args.config is not None else {}
    config = build(
        SpectrumConfig, {**file.get("spectrum", {}), **given(args, "spectrum")}, "spectrum"
    )
    if config.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    console = Console(log_path=False)
    with progress_bars(console) as bars:
        result = run_spectrum(config, args.out, force=args.force, progress=bars)
    save_spectrum_figure(result, args.out / FIGURE_NAME)
    console.print(_summary(result))
    console.print(_singular_values(result))
    if result.resumed:
        console.print(f"reused from {args.out}: {', '.join(result.resumed)}")
    console.print(f"wrote {args.out / 'report.json'} and {args.out / FIGURE_NAME}")
    return 0
