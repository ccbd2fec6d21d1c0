"""`jacscope spectrum`: top singular values, trace and Frobenius norm of a network Jacobian."""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from jacscope._io import read_json, write_json_atomic
from jacscope.cli._types import positive_float, positive_int
from jacscope.jobs.spectrum import (
    STAGES,
    SpectrumConfig,
    SpectrumResult,
    jacobian_shape,
    run_spectrum,
)
from jacscope.report import save_spectrum_figure

JSON_NAME = "spectrum.json"
FIGURE_NAME = "spectrum.png"

_STAGE_TEXT = {
    "data": "loading data",
    "train": "training the MLP",
    "operator": "linearising",
    "svd": "top-k SVD",
    "trace": "trace of J J^T",
    "frobenius": "Frobenius norm",
    "done": "done",
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `spectrum` with the `jacscope` subcommand parsers."""
    defaults = SpectrumConfig()
    parser = subparsers.add_parser(
        "spectrum",
        help="spectrum of a briefly trained MLP's Jacobian (parameters or inputs)",
        description=(
            "Train the default MLP for a few epochs of SGD, take the Jacobian J of its "
            "logits on a batch of test examples with respect to its parameters or its "
            "inputs (never formed), and write DIR/spectrum.json (top-k singular values "
            "with residuals, tr(J J^T) and ||J||_F^2 estimates with standard errors, "
            "timings, configuration) and DIR/spectrum.png. J is not square, so the trace "
            "reported is that of J J^T, which equals ||J||_F^2."
        ),
    )
    add = parser.add_argument
    add(
        "--dataset",
        choices=("digits", "mnist1d"),
        default=defaults.dataset,
        help="training data and test batch (%(default)s)",
    )
    add(
        "--wrt",
        choices=("params", "inputs"),
        default=defaults.wrt,
        help="differentiate with respect to the parameters or the input batch (%(default)s)",
    )
    add(
        "--k", type=positive_int, default=defaults.k, help="number of singular values (%(default)s)"
    )
    add("--out", type=Path, required=True, metavar="DIR", help="output folder")
    add("--epochs", type=positive_int, default=defaults.epochs, help="SGD epochs (%(default)s)")
    add(
        "--batch-size",
        type=positive_int,
        default=defaults.batch_size,
        help="SGD batch (%(default)s)",
    )
    add("--lr", type=positive_float, default=defaults.learning_rate, help="SGD step (%(default)s)")
    add(
        "--hidden",
        type=positive_int,
        nargs="+",
        default=list(defaults.hidden),
        help="hidden widths of the MLP (%(default)s)",
    )
    add(
        "--examples",
        type=positive_int,
        default=defaults.num_examples,
        help="first test examples in the batch J is taken on (%(default)s)",
    )
    add(
        "--method",
        choices=("lanczos", "randomized"),
        default=defaults.method,
        help="top-k SVD method (%(default)s)",
    )
    add("--depth", type=positive_int, default=None, help="Lanczos depth (min(6 k + 20, min(m, n)))")
    add(
        "--trace-method",
        choices=("hutchinson", "hutchpp", "xtrace"),
        default=defaults.trace_method,
        help="estimator of tr(J J^T) (%(default)s)",
    )
    add(
        "--matvecs",
        type=positive_int,
        default=defaults.num_matvecs,
        help="products for tr(J J^T), probes for ||J||_F^2 (%(default)s)",
    )
    add(
        "--labels",
        choices=("real", "shuffled"),
        default=defaults.labels,
        help="shuffled: random labels control (%(default)s)",
    )
    add(
        "--inputs",
        choices=("real", "noise"),
        default=defaults.inputs,
        help="noise: uniform random inputs control (%(default)s)",
    )
    add(
        "--seed",
        type=int,
        default=defaults.seed,
        help="seed of initialisation, controls and estimators (%(default)s)",
    )
    add("--x64", action="store_true", help="compute in float64 (default: float32)")
    add("--force", action="store_true", help="replace DIR's result for another configuration")
    return parser


def _config(args: argparse.Namespace) -> SpectrumConfig:
    return SpectrumConfig(
        dataset=args.dataset,
        wrt=args.wrt,
        k=args.k,
        hidden=tuple(args.hidden),
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        num_examples=args.examples,
        method=args.method,
        depth=args.depth,
        trace_method=args.trace_method,
        num_matvecs=args.matvecs,
        labels=args.labels,
        inputs=args.inputs,
        seed=args.seed,
    )


def _existing(out: Path, config: SpectrumConfig, dtype: str, force: bool) -> dict | None:
    """A finished result for the same configuration in `out`, if there is one.

    Refuses (`FileExistsError`) to replace a result for another configuration
    unless `force`; with `force`, removes it first, so that `out` never holds a
    figure and a JSON file of different runs under their final names.
    """
    path = out / JSON_NAME
    if not path.exists():
        return None
    stored = read_json(path)
    wanted = {"config": config.to_dict(), "dtype": dtype}
    same = {"config": stored.get("config"), "dtype": stored.get("dtype")} == wanted
    if same and (out / FIGURE_NAME).exists() and not force:
        return stored
    if not force:
        differing = sorted(
            name
            for name in set(wanted["config"]) | set(stored.get("config") or {})
            if wanted["config"].get(name) != (stored.get("config") or {}).get(name)
        )
        if stored.get("dtype") != dtype:
            differing.append("dtype")
        raise FileExistsError(
            f"{path} holds a spectrum for another configuration (differing: "
            f"{', '.join(differing) or 'figure missing'}); pass --force to overwrite it"
        )
    path.unlink()
    return None


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
    """Compute (or reuse) the spectrum, write DIR/spectrum.json and .png, print tables."""
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    console = Console()
    config = _config(args)
    dtype = "float64" if jax.config.jax_enable_x64 else "float32"
    out: Path = args.out
    jacobian_shape(config)  # refuse a bad request before touching `out`
    stored = _existing(out, config, dtype, args.force)
    if stored is not None:
        console.print(f"[green]{out / JSON_NAME} already holds this configuration's spectrum.")
        result = SpectrumResult(**stored)
    else:
        with Progress(
            TextColumn("[bold]spectrum[/]"),
            BarColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("", total=len(STAGES))

            def update(stage: str, index: int, total: int) -> None:
                progress.update(task, completed=index, description=_STAGE_TEXT[stage])

            result = run_spectrum(config, progress=update)
        # The JSON is written last: its presence marks a finished, consistent folder.
        save_spectrum_figure(result, out / FIGURE_NAME)
        write_json_atomic(out / JSON_NAME, result._asdict())
    console.print(_summary(result))
    console.print(_singular_values(result))
    if stored is None:
        console.print(f"wrote {out / JSON_NAME} and {out / FIGURE_NAME}")
    return 0
