"""The training Jacobian of million-parameter models, matrix-free, on a small CPU machine.

Measures, for an MLP on digits (default 64 -> 1024 -> 1024 -> 10, 1.1M parameters,
625 steps of SGD with momentum and a cosine schedule, the setting of Belrose &
Scherlis, arXiv 2412.07003, widened) and for a LeNet-5-like CNN (61,706 parameters):

1. the cost of products through training: one `mv` (JVP) and one `rmv` (VJP) against
   one training run, in both memory modes (stored trajectory / sqrt(T)
   checkpoints), and batched `mm` against `mv` one vector at a time;
2. `jacscope.training.matrix_free_analysis`: top-k singular values of J - I and of J
   with residuals, a density of J's singular values and the region counts, with wall
   time, peak memory and passes through training; beside it, what the dense path
   would need.

Each model runs in its own process, so that peak memory is its own. Everything is
configurable; run with `--help`. Reduced scale (minutes):

    python benchmarks/training_jacobian_scale.py --hidden 256 --epochs 5 --k 16

Full scale (the issue's target: under 60 minutes on 2 cores):

    python benchmarks/training_jacobian_scale.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from jacscope.jobs import JobFolder
from jacscope.linalg import SLQ, Lanczos, Randomized
from jacscope.report import region_rows
from jacscope.training import (
    TrainingConfig,
    TrainingRun,
    build_run,
    matrix_free_analysis,
    training_jacobian_operator,
)

LENET_REPORTED_CPU_DAYS = "hundreds of CPU-days (reported, exact LeNet-5 Jacobian)"
console = Console(width=110)


def _seconds(fn, repeats: int = 2) -> float:
    """Best wall time of `fn()` after one warm-up call (which compiles)."""
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fmt_bytes(num: float | None) -> str:
    if num is None:
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if num < 1024 or unit == "PiB":
            return f"{num:.1f} {unit}"
        num /= 1024
    raise AssertionError


def _fmt_time(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.2f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def build(args) -> tuple[TrainingRun, dict]:
    """The run of `args.model`, and a JSON description of it."""
    mlp = args.model == "mlp"
    config = TrainingConfig(
        dataset=args.dataset,
        model=args.model,
        hidden=args.hidden,
        hidden_layers=args.layers,
        epochs=args.epochs if mlp else args.cnn_epochs,
        batch_size=args.batch_size,
    )
    description = dataclasses.asdict(config)
    if not mlp:  # the CNN's layers are LeNet-5's; hidden and hidden_layers do not apply
        del description["hidden"], description["hidden_layers"]
    return build_run(config).run, description


def product_costs(run: TrainingRun, args) -> dict:
    """Seconds of training, mv, rmv and batched mm, in both memory modes."""
    train = eqx.filter_jit(lambda r: r.train()[0])
    t_train = _seconds(lambda: train(run))
    rows = {"train": t_train}
    key = jax.random.key(1)
    for mode in args.cost_modes:
        checkpoint = None if mode == "stored" else "sqrt"
        start = time.perf_counter()
        op = training_jacobian_operator(run, checkpoint_every=checkpoint)
        build_s = time.perf_counter() - start
        v = jax.random.normal(key, (op.shape[0],), op.dtype)
        V = jax.random.normal(key, (op.shape[0], max(args.batched, 1)), op.dtype)
        rows[mode] = {
            "build": build_s,
            "mv": _seconds(lambda op=op, v=v: op.mv(v), 1),
            "rmv": _seconds(lambda op=op, v=v: op.rmv(v), 1),
            "cost": op.cost()._asdict(),
        }
        if args.batched > 1:
            rows[mode]["mm"] = _seconds(lambda op=op, V=V: op.mm(V), 1)
        del op
    return rows


def one_model(args) -> dict:
    """Everything measured for one model (run in its own process)."""
    run, description = build(args)
    num_params = run_size(run)
    console.print(
        f"[bold]{description['model']}[/] on {args.dataset}: P = {num_params:,} parameters, "
        f"T = {run.num_steps} steps, {jnp.dtype(jax.tree.leaves(run.params0)[0].dtype).name}"
    )
    costs = product_costs(run, args)
    console.print(f"costs measured ({_fmt_time(costs['train'])} per training run)")

    out = Path(args.out) / description["model"] if args.out else None
    start = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        tasks = {}

        def progress(update):
            if update.task not in tasks:
                label = f"{update.task} ({update.unit})"
                tasks[update.task] = bar.add_task(label, total=update.total)
            done = min(update.done, update.total)
            bar.update(tasks[update.task], completed=done, total=update.total)

        result = _analysis(run, args, out, description, progress)
    seconds = time.perf_counter() - start
    return {
        "description": description,
        "num_params": num_params,
        "num_steps": run.num_steps,
        "costs": costs,
        "analysis": result._asdict(),
        "analysis_seconds": seconds,
        "peak_mib": _peak_mib(),
    }


def run_size(run: TrainingRun) -> int:
    return int(sum(x.size for x in jax.tree.leaves(run.params0)))


def _analysis(run, args, out, description, progress):
    if args.checkpoint in ("none", "sqrt"):
        checkpoint = None if args.checkpoint == "none" else "sqrt"
    else:
        checkpoint = int(args.checkpoint)
    if args.method == "lanczos":
        svd = Lanczos(depth=args.depth, residuals=args.residuals, tol=args.tol or None)
    else:
        svd = Randomized()
    density = SLQ(num_probes=args.probes, depth=args.density_depth, probes_per_batch=args.probes)
    # the stages (top-k of J and of J - I, the density) are kept in `out` and resumed
    folder = JobFolder(out, "benchmark training_jacobian_scale", {"description": description})
    with folder.claimed():
        return matrix_free_analysis(
            run,
            k=args.k,
            key=jax.random.key(0),
            svd=svd,
            density=density,
            checkpoint_every=checkpoint,
            stages=folder,
            progress=progress,
        )


def _cost_table(report: dict) -> Table:
    costs = report["costs"]
    table = Table(title=f"cost of one product through training ({report['description']['model']})")
    for column in (
        "memory mode",
        "product",
        "time",
        "x training",
        "sweeps",
        "working memory",
        "stored trajectory",
    ):
        table.add_column(column, justify="right")
    table.add_row("-", "training", _fmt_time(costs["train"]), "1.00", "1", "", "")
    for mode in ("stored", "sqrt"):
        if mode not in costs:
            continue
        row = costs[mode]
        cost = row["cost"]
        label = "stored" if mode == "stored" else f"checkpoints every {cost['checkpoint_every']}"
        table.add_row(
            label,
            "build",
            _fmt_time(row["build"]),
            f"{row['build'] / costs['train']:.2f}",
            "1" if mode == "sqrt" else "2",
            "",
            _fmt_bytes(cost["stored_bytes"]),
        )
        for name, sweeps, nbytes in (
            ("mv", cost["mv_sweeps"], cost["mv_bytes"]),
            ("rmv", cost["rmv_sweeps"], cost["rmv_bytes"]),
        ):
            table.add_row(
                label,
                name,
                _fmt_time(row[name]),
                f"{row[name] / costs['train']:.2f}",
                str(sweeps),
                _fmt_bytes(nbytes),
                "",
            )
        if "mm" in row:
            k = report["batched"]
            per = row["mm"] / k
            table.add_row(
                label,
                f"mm, {k} vectors",
                _fmt_time(row["mm"]),
                f"{row['mm'] / costs['train']:.2f}",
                "1",
                "",
                f"throughput x{row['mv'] / per:.2f} of mv",
            )
    return table


def _analysis_table(report: dict, limit_minutes: float | None) -> Table:
    result = report["analysis"]
    num_params = report["num_params"]
    model = report["description"]["model"]
    table = Table(title=f"matrix-free analysis ({model}, P = {num_params:,})")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for name, label in (("top_j_minus_i", "J - I"), ("top_j", "J")):
        top = result[name]
        values = np.asarray(top["values"])
        rel = np.asarray(top["relative_residuals"])
        table.add_row(
            f"top {values.size} of {label}",
            f"s_1 = {values[0]:.4g}, s_{values.size} = {values[-1]:.4g}; max residual / s = "
            f"{rel.max():.1e} ({'ok' if rel.max() < 1e-2 else 'ABOVE'} 1e-2); "
            f"{top['sweeps']} sweeps, {_fmt_time(top['seconds'])}; "
            f"{report['residuals']} residuals",
        )
    regions = result["regions"]
    for row in region_rows(regions):
        tau, *cells, fraction = row
        table.add_row(
            f"regions, tau = {tau:g} (estimated, 95%)",
            "; ".join(
                f"{name} {cell}"
                for name, cell in zip(("chaotic", "bulk", "stable"), cells, strict=True)
            ),
        )
        table.add_row(f"bulk fraction, tau = {tau:g}", fraction)
    for tau, products in zip(regions["taus"], regions["chebyshev_products"], strict=True):
        table.add_row(
            f"products to resolve tau = {tau:g}",
            f"{products:,} (Chebyshev count, values within tau/4 of 1 +- tau left over)",
        )
    density = result["density"]
    table.add_row(
        "density of singular values",
        f"{len(density['counts'])} bins, {density['num_probes']} probes x {density['depth']} "
        f"Lanczos steps, {_fmt_time(result['timings']['density'])}",
    )
    sweeps = result["sweeps"]
    total = report["analysis_seconds"]
    verdict = (
        ""
        if limit_minutes is None
        else (f" ({'under' if total < 60 * limit_minutes else 'OVER'} {limit_minutes:g} min)")
    )
    table.add_row("wall time", _fmt_time(total) + verdict)
    table.add_row(
        "passes through training",
        f"{sweeps['total']} ({sweeps['mv']} forward, {sweeps['rmv']} reverse)",
    )
    table.add_row("peak memory (process)", _fmt_bytes(report["peak_mib"] * 2**20))
    itemsize = 8 if result["dtype"] == "float64" else 4
    dense = num_params**2 * itemsize
    mv = report["costs"].get("sqrt", report["costs"].get("stored"))["mv"]
    exact = num_params * mv
    table.add_row(
        "dense path",
        f"J alone needs {_fmt_bytes(dense)}"
        + (" (impossible here)" if dense > 16 * 2**30 else "")
        + f"; P = {num_params:,} forward sweeps at the measured mv rate: {_fmt_time(exact)}"
        f" = {2 * exact / 86400:.1f} CPU-days on 2 cores",
    )
    if model == "cnn":
        steps = report["num_steps"]
        table.add_row(
            "exact LeNet-5 Jacobian",
            f"{LENET_REPORTED_CPU_DAYS}; at 625 steps the sweeps above would take "
            f"{2 * exact * 625 / steps / 86400:.1f} CPU-days",
        )
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("both", "mlp", "cnn"), default="both")
    parser.add_argument("--dataset", choices=("digits", "mnist1d"), default="digits")
    parser.add_argument("--hidden", type=int, default=1024, help="MLP hidden width")
    parser.add_argument("--layers", type=int, default=2, help="MLP hidden layers")
    parser.add_argument("--epochs", type=int, default=25, help="MLP epochs (25: 625 steps)")
    parser.add_argument("--cnn-epochs", type=int, default=1, help="CNN epochs (1: 25 steps)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--k", type=int, default=32, help="singular triplets of J and J - I")
    parser.add_argument("--method", choices=("lanczos", "randomized"), default="lanczos")
    parser.add_argument(
        "--depth", type=int, default=180, help="most Lanczos steps of svd_topk per operator"
    )
    parser.add_argument(
        "--tol",
        type=float,
        default=1e-2,
        help="stop Lanczos once every residual is below TOL * s (0: always --depth steps)",
    )
    parser.add_argument(
        "--residuals",
        choices=("explicit", "recurrence"),
        default="recurrence",
        help="residuals of the top-k: k more products, or the Lanczos relation (free)",
    )
    parser.add_argument("--probes", type=int, default=2, help="density probes")
    parser.add_argument("--density-depth", type=int, default=16)
    parser.add_argument(
        "--checkpoint", default="none", help="'none' (stored trajectory), 'sqrt' or an integer"
    )
    parser.add_argument("--batched", type=int, default=4, help="vectors in the mm timing")
    parser.add_argument("--cost-modes", default="stored,sqrt")
    parser.add_argument("--limit-minutes", type=float, default=60.0)
    parser.add_argument("--out", default=None, help="folder to save (and resume) work in")
    parser.add_argument("--json", default=None, help="(internal) write the report here")
    args = parser.parse_args(argv)
    args.cost_modes = [m for m in args.cost_modes.split(",") if m]

    if args.model == "both":
        reports = []
        for model in ("mlp", "cnn"):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "report.json"
                forwarded = [a for a in (argv if argv is not None else sys.argv[1:])]
                subprocess.run(
                    [sys.executable, __file__, *forwarded, "--model", model, "--json", str(path)],
                    check=True,
                )
                reports.append(json.loads(path.read_text()))
        console.rule("summary")
        for report in reports:
            console.print(_cost_table(report))
            console.print(_analysis_table(report, args.limit_minutes))
        console.print(
            "defaults: MLP 64-1024-1024-10 on digits, 625 steps (--epochs 25); LeNet-5-like "
            "CNN on digits, 25 steps (--cnn-epochs 1)"
        )
        return 0

    report = one_model(args)
    report["batched"] = args.batched
    report["residuals"] = args.residuals
    console.print(_cost_table(report))
    console.print(_analysis_table(report, args.limit_minutes if args.model == "mlp" else None))
    if args.json:
        Path(args.json).write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
