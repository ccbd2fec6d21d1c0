"""Do Jacobian penalties make a network robust, and what do they cost?

Trains the default MLP (64 or 40 -> 64 -> 10, GELU, jacscope.models) on digits and on
MNIST-1D with Adam, once per method and seed:

- `none`: cross-entropy only;
- `weight decay`: AdamW's decoupled weight decay;
- `frobenius`: + lambda * jacobian_frobenius_penalty, one random projection per example
  of every batch, every step (Hoffman et al. 2019);
- `frobenius 1/4 batch`: the same penalty estimated on the first quarter of each batch
  (an unbiased estimate of the same regulariser, noisier and cheaper);
- `frobenius lazy 4`, `frobenius lazy 8`: the same penalty every fourth (eighth) step
  at four (eight) times the strength (`lazy_penalty`, "lazy regularisation", Karras et
  al. 2020): the same regulariser on average;
- `spectral`: + lambda * jacobian_spectral_penalty (one power iteration per step, the
  vector carried from step to step);
- `nuclear`: + lambda * nuclear_norm_penalty with f = g o h split after the hidden layer
  (Scarvelis & Solomon 2024, one random projection per example and factor);
- `nuclear denoising`: its Jacobian-free denoising form (noise level 0.1, one draw);

and reports, as mean +- standard deviation over seeds: clean test accuracy; accuracy
under Gaussian input noise (10 draws per test input); accuracy under PGD (10 steps of
size 2.5 eps / 10 from the clean input, on the cross-entropy; l_inf and l_2 balls, no
clipping to the data range); the mean exact ||J(x)||_F of the logits over the test set;
the local Lipschitz interval [lower, upper] of the logits for the l_inf ball of radius
0.05 around the first test inputs (`lipschitz_lower`, projected gradient ascent;
`lipschitz_upper`, method "crown"), its mean bounds and mean width; and the training
time per step relative to `none` (compiled runs of `--timing-steps` steps, every method
timed once per round for `--repeats` rounds; the median over rounds of the ratio to
`none` in the same round). A last table compares the two paths of `lipschitz_upper`
("crown", l_inf, the same radius and inputs) on an initial MLP of the first dataset:
the layer-list path and the jaxpr path given `mlp_apply` (the same bound), and the
jaxpr path on a small CNN (`init_cnn`), with the compiled time per input.

Finished runs are written to `--out` (one JSON file each) and skipped when the script
runs again. Defaults take about two minutes on two CPU cores:

    python benchmarks/robustness.py --out results/robustness
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from jacscope.data import load_dataset, make_batches
from jacscope.lipschitz import lipschitz_lower, lipschitz_upper
from jacscope.models import accuracy, cnn_apply, cross_entropy, init_cnn, init_mlp, mlp_apply
from jacscope.penalties import (
    jacobian_frobenius_penalty,
    jacobian_spectral_penalty,
    lazy_penalty,
    nuclear_norm_penalty,
)
from jacscope.training import TrainingRun

console = Console(width=140)


class Method(NamedTuple):
    """A training recipe: a penalty, its strength, and how it is amortised."""

    penalty: str | None
    strength: float = 0.0
    every: int = 1  # lazy regularisation: the penalty every k-th step, k times stronger
    fraction: int = 1  # the penalty estimated on the first batch_size / fraction examples
    sigma: float | None = None  # the noise level of the denoising nuclear-norm form


METHODS = {
    "none": Method(None),
    "weight decay": Method("weight_decay", 0.5),  # AdamW's decoupled decay
    "frobenius": Method("frobenius", 0.02),
    "frobenius 1/4 batch": Method("frobenius", 0.02, fraction=4),
    "frobenius lazy 4": Method("frobenius", 0.02, every=4),
    "frobenius lazy 8": Method("frobenius", 0.02, every=8),
    "spectral": Method("spectral", 0.02),
    "nuclear": Method("nuclear", 0.01),
    "nuclear denoising": Method("nuclear", 0.01, sigma=0.1),
}
NOISE_SIGMAS = (0.1, 0.3, 0.5)
PGD_LINF = (0.02, 0.05, 0.1)
PGD_L2 = (0.25, 0.5, 1.0)
LIPSCHITZ_EPS = 0.05


def hidden(params, x):
    """h: the first layer and its GELU (f = g o h for the nuclear-norm penalty)."""
    return jax.nn.gelu(x @ params[0]["w"] + params[0]["b"], approximate=True)


def head(params, z):
    """g: the remaining layers."""
    return mlp_apply(params[1:], z)


def make_run(method: str, params0, batches, lr: float) -> TrainingRun:
    """The training run of `method`: state = (optimizer state, carried power vector)."""
    recipe = METHODS[method]
    decay = recipe.penalty == "weight_decay"
    optimizer = optax.adamw(lr, weight_decay=recipe.strength) if decay else optax.adam(lr)
    dim = params0[0]["w"].shape[0]
    frobenius = lazy_penalty(jacobian_frobenius_penalty, recipe.every)

    def penalty(params, batch, vector):
        x = batch["x"][: max(1, batch["x"].shape[0] // recipe.fraction)]
        if recipe.penalty == "frobenius":
            return frobenius(batch["step"], mlp_apply, params, x, batch["key"]), vector
        if recipe.penalty == "spectral":
            return jacobian_spectral_penalty(mlp_apply, params, x, vector)
        if recipe.sigma is None:
            return nuclear_norm_penalty(head, hidden, params, x, batch["key"]), vector
        value = nuclear_norm_penalty(
            head, hidden, params, x, batch["key"], method="denoising", sigma=recipe.sigma
        )
        return value, vector

    def loss_fn(params, batch, vector):
        ce = cross_entropy(mlp_apply(params, batch["x"]), batch["y"])
        if recipe.penalty in (None, "weight_decay"):
            return ce, (ce, vector)
        value, vector = penalty(params, batch, vector)
        return ce + recipe.strength * value, (ce, vector)

    def step(params, state, batch):
        opt_state, vector = state
        grads, (ce, vector) = jax.grad(loss_fn, has_aux=True)(params, batch, vector)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), (opt_state, vector), ce

    def init_state(params):
        start = jax.random.normal(jax.random.key(0), (dim,), params[0]["w"].dtype)
        return optimizer.init(params), start / jnp.linalg.norm(start)

    return TrainingRun.from_step(params0, step, init_state, batches)


@partial(jax.jit, static_argnames=("norm", "steps"))
def pgd_accuracy(params, x, y, eps, norm: str, steps: int = 10):
    """Accuracy under a PGD attack on the cross-entropy (Madry et al. 2018)."""
    alpha = 2.5 * eps / steps

    def loss(delta):
        return cross_entropy(mlp_apply(params, x + delta), y)

    def body(_, delta):
        grad = jax.grad(loss)(delta)
        if norm == "inf":
            return jnp.clip(delta + alpha * jnp.sign(grad), -eps, eps)
        unit = grad / jnp.maximum(jnp.linalg.norm(grad, axis=1, keepdims=True), 1e-12)
        delta = delta + alpha * unit
        length = jnp.linalg.norm(delta, axis=1, keepdims=True)
        return delta * jnp.minimum(1.0, eps / jnp.maximum(length, 1e-12))

    delta = jax.lax.fori_loop(0, steps, body, jnp.zeros_like(x))
    return accuracy(mlp_apply(params, x + delta), y)


@jax.jit
def noise_accuracy(params, x, y, sigma, key):
    """Accuracy under Gaussian input noise N(0, sigma^2 I), averaged over 10 draws."""
    noise = jax.random.normal(key, (10, *x.shape), x.dtype)
    return jnp.mean(jax.vmap(lambda n: accuracy(mlp_apply(params, x + sigma * n), y))(noise))


@jax.jit
def frobenius_norms(params, x):
    """Exact ||J(x_b)||_F for every test input (all output directions)."""
    half_sq = jax.vmap(
        lambda xb: jacobian_frobenius_penalty(mlp_apply, params, xb[None], exact=True)
    )(x)
    return jnp.sqrt(2.0 * half_sq)


@jax.jit
def lipschitz_interval(params, x, key):
    """Lower and upper bounds of the local l_inf Lipschitz constant at each x."""

    def one(x0, k):
        lower = lipschitz_lower(partial(mlp_apply, params), x0, LIPSCHITZ_EPS, "inf", key=k)
        upper = lipschitz_upper(params, x0, LIPSCHITZ_EPS, "inf", "crown", activation="gelu")
        return lower.value, upper

    return jax.vmap(one)(x, jax.random.split(key, x.shape[0]))


def evaluate(params, data, key, num_lipschitz: int) -> dict:
    x, y = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    keys = jax.random.split(key, len(NOISE_SIGMAS) + 1)
    lower, upper = lipschitz_interval(params, x[:num_lipschitz], keys[-1])
    result = {
        "clean": float(accuracy(mlp_apply(params, x), y)),
        "jacobian_frobenius": float(jnp.mean(frobenius_norms(params, x))),
        "lipschitz_lower": float(jnp.mean(lower)),
        "lipschitz_upper": float(jnp.mean(upper)),
        "lipschitz_width": float(jnp.mean(upper - lower)),
    }
    for sigma, k in zip(NOISE_SIGMAS, keys, strict=False):
        result[f"noise {sigma}"] = float(noise_accuracy(params, x, y, sigma, k))
    for eps in PGD_LINF:
        result[f"pgd_inf {eps}"] = float(pgd_accuracy(params, x, y, eps, "inf"))
    for eps in PGD_L2:
        result[f"pgd_2 {eps}"] = float(pgd_accuracy(params, x, y, eps, "2"))
    return result


def train_all(args, out: Path) -> dict:
    """Train and evaluate every (dataset, method, seed); finished ones are read from `out`."""
    results: dict = {}
    total = len(args.datasets) * len(args.methods) * len(args.seeds)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("training", total=total)
        for name in args.datasets:
            data = load_dataset(name)
            batches = make_batches(data.x_train, data.y_train, args.batch_size, args.epochs)
            steps = batches["x"].shape[0]
            batches["key"] = jax.random.split(jax.random.key(1), steps)
            batches["step"] = jnp.arange(steps)
            sizes = (data.x_train.shape[1], 64, data.num_classes)
            runs, params0 = {}, {}
            for method in args.methods:
                for seed in args.seeds:
                    path = out / f"{name}-{method.replace(' ', '_').replace('/', '')}-{seed}.json"
                    progress.update(task, description=f"{name} / {method} / seed {seed}")
                    if path.exists():
                        results[(name, method, seed)] = json.loads(path.read_text())
                        progress.advance(task)
                        continue
                    params0[seed] = init_mlp(jax.random.key(seed), sizes)
                    if method not in runs:
                        runs[method] = make_run(method, params0[seed], batches, args.lr)
                    trained = runs[method].final_params(params0[seed])
                    record = evaluate(trained, data, jax.random.key(100 + seed), args.lipschitz)
                    record["steps"] = steps
                    results[(name, method, seed)] = record
                    path.write_text(json.dumps(record, indent=1))
                    progress.advance(task)
            timings = time_steps(args, name, sizes, batches, progress)
            (out / f"{name}-timing.json").write_text(json.dumps(timings, indent=1))
            for method, ratio in timings.items():
                results[(name, method, "time")] = ratio
    return results


def time_steps(args, name, sizes, batches, progress) -> dict:
    """Training time per step of each method relative to `none`.

    Every round times each compiled run once, `none` included, back to back; the
    reported ratio is the median over rounds of (method / none in the same round),
    which cancels slow changes in the machine's load, and the time per step is the
    fastest round's.
    """
    params0 = init_mlp(jax.random.key(0), sizes)
    timed = {k: v[: args.timing_steps] for k, v in batches.items()}
    methods = ["none", *(m for m in args.methods if m != "none")]
    runs = {m: make_run(m, params0, timed, args.lr) for m in methods}
    seconds = {m: [] for m in methods}
    task = progress.add_task(f"timing {name}", total=args.repeats * len(runs))
    for run in runs.values():  # compile
        jax.block_until_ready(run.final_params(params0))
    for _ in range(args.repeats):
        for method, run in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(run.final_params(params0))
            seconds[method].append(time.perf_counter() - start)
            progress.advance(task)
    progress.remove_task(task)
    base = np.asarray(seconds["none"])
    return {
        m: {
            "ratio": float(np.median(np.asarray(t) / base)),
            "us_per_step": 1e6 * min(t) / args.timing_steps,
        }
        for m, t in seconds.items()
        if m in args.methods
    }


def lipschitz_paths(args) -> tuple[str, list[str], list[list[str]]]:
    """(title, header, rows): the MLP (layer-list) path of `lipschitz_upper` against its
    jaxpr path on the same initial MLP, and the jaxpr path on a small CNN; the mean
    "crown" l_inf bound over the first `--lipschitz` test inputs, and the compiled time
    per input (the fastest of 3 runs, all paths timed in this run)."""
    data = load_dataset(args.datasets[0])
    x = jnp.asarray(data.x_test[: args.lipschitz])
    dim = x.shape[1]
    side = round(dim**0.5)
    shape = (side, side) if side * side == dim else (dim,)
    mlp = init_mlp(jax.random.key(0), (dim, 64, data.num_classes))
    cnn = init_cnn(
        jax.random.key(0),
        shape,
        data.num_classes,
        channels=(4, 8),
        kernel_size=3,
        hidden=(32,),
        canvas=14 if len(shape) == 2 else None,  # 4 m + 6 for 3-tap kernels
    )
    paths = {
        ("MLP", "layer list"): lambda x0: lipschitz_upper(
            mlp, x0, LIPSCHITZ_EPS, "inf", "crown", activation="gelu"
        ),
        ("MLP", "jaxpr of mlp_apply"): lambda x0: lipschitz_upper(
            partial(mlp_apply, mlp), x0, LIPSCHITZ_EPS, "inf", "crown"
        ),
        ("CNN", "jaxpr of cnn_apply"): lambda x0: lipschitz_upper(
            partial(cnn_apply, cnn), x0, LIPSCHITZ_EPS, "inf", "crown"
        ),
    }
    rows = []
    for (model, path), bound in paths.items():
        batched = jax.jit(jax.vmap(bound))
        upper = jax.block_until_ready(batched(x))  # compile
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            jax.block_until_ready(batched(x))
            seconds.append(time.perf_counter() - start)
        ms = 1e3 * min(seconds) / x.shape[0]
        rows.append([model, path, f"{float(jnp.mean(upper)):.4f}", f"{ms:.3f}"])
    title = (
        f"{args.datasets[0]}: lipschitz_upper (crown, l_inf, eps = {LIPSCHITZ_EPS}) over "
        f"{x.shape[0]} test inputs, initial models: MLP path vs jaxpr path"
    )
    return title, ["model", "path", "mean upper", "ms / input"], rows


def summary(results, name, method, key) -> str:
    values = np.asarray(
        [r[key] for (n, m, s), r in results.items() if n == name and m == method and s != "time"]
    )
    if values.size == 0:
        return "-"
    scale, digits = (100.0, 1) if key in ACCURACY_KEYS else (1.0, 2)
    return f"{scale * values.mean():.{digits}f} ± {scale * values.std():.{digits}f}"


ACCURACY_KEYS = (
    ["clean"]
    + [f"noise {s}" for s in NOISE_SIGMAS]
    + [f"pgd_inf {e}" for e in PGD_LINF]
    + [f"pgd_2 {e}" for e in PGD_L2]
)


def table_rows(results, args) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of the two tables of every dataset."""
    out = []
    for name in args.datasets:
        acc_header = ["method"] + [
            key.replace("pgd_inf", "PGD∞").replace("pgd_2", "PGD₂").replace("noise", "σ")
            for key in ACCURACY_KEYS
        ]
        jac_header = ["method", "mean ‖J‖_F", "Lip lower", "Lip upper", "width", "time/step"]
        acc_rows, jac_rows = [], []
        for method in args.methods:
            acc_rows.append([method, *(summary(results, name, method, k) for k in ACCURACY_KEYS)])
            timing = results.get((name, method, "time"))
            jac_rows.append(
                [
                    method,
                    *(
                        summary(results, name, method, key)
                        for key in (
                            "jacobian_frobenius",
                            "lipschitz_lower",
                            "lipschitz_upper",
                            "lipschitz_width",
                        )
                    ),
                    "-"
                    if timing is None
                    else f"{timing['ratio']:.2f}x ({timing['us_per_step']:.0f} µs)",
                ]
            )
        out.append(
            (
                f"{name}: test accuracy (%), mean ± std over {len(args.seeds)} seeds",
                acc_header,
                acc_rows,
            )
        )
        out.append(
            (
                f"{name}: input Jacobian of the logits; Lipschitz l_inf bounds at eps = "
                f"{LIPSCHITZ_EPS} over {args.lipschitz} test inputs; training time per step",
                jac_header,
                jac_rows,
            )
        )
    return out


def rich_table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def markdown_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist1d"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--lipschitz", type=int, default=32, help="test inputs bounded")
    parser.add_argument("--timing-steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("results/robustness"))
    parser.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = train_all(args, args.out)
    tables = [*table_rows(results, args), lipschitz_paths(args)]
    for table in tables:
        console.print(rich_table(*table))
    strengths = {m: r.strength for m, r in METHODS.items() if r.penalty}
    console.print(
        f"strengths: {strengths}; Adam lr {args.lr}, batch {args.batch_size}, "
        f"{args.epochs} epochs; total {time.perf_counter() - start:.0f} s"
    )
    if args.markdown:
        for table in tables:
            print(markdown_table(*table))


if __name__ == "__main__":
    main()
