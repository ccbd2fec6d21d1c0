"""Benchmarks of jacscope's operators and randomized linear algebra, baselines in the same run.

1. Dense materialisation of the 640 x 4810 Jacobian of the 64-64-10 GELU MLP's logits
   on 64 digits w.r.t. its 4810 parameters: `jacobian_operator(f, p).materialize()`
   against `jax.jacfwd` and `jax.jacrev`. All three are jitted end to end (parameters
   in, matrix out, the forward pass included); times are the best of interleaved
   repeats after a warm-up call (compilation excluded). Peak memory is XLA's buffer
   assignment for the compiled program: arguments + outputs + temporaries, the
   memory the program holds at once on the device (host memory is not counted).
   A second jacscope row times `op.materialize()` of an already built operator, the
   eager call a script makes (no forward pass, but Python dispatch).
2. `svd_topk(k=32)` of the 4096 x 4096 Jacobian of the residual MLP
   x -> x + W2 tanh(W1 x + b1) (hidden width 512, column scales of W2 decaying as
   j^-1/2) against `jnp.linalg.svd` (values only, the cheaper call) of the
   materialised matrix. Reference values: that dense float32 SVD.
3. Relative trace error against the number of matvecs for Hutchinson, Hutch++ and
   XTrace on the Hessian of a briefly trained MLP's loss (256 digits), the Hessian
   an operator through `jax.jvp` of `jax.grad`; the exact trace from the dense
   `jax.hessian`. Root-mean-square over 10 keys, and the mean reported standard error.

Float32 throughout (JAX's default). Run: `python benchmarks/operators.py` (about 5 to 10
minutes on 2 CPU cores, most of it the dense 4096 x 4096 SVD).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from rich.console import Console
from rich.table import Table

import jacscope
from jacscope import linalg
from jacscope.data import load_digits, make_batches
from jacscope.models import classification_loss, init_mlp, mlp_apply

REPEATS = 15
MIB = 2**20


def compiled_stats(fn: Callable, *args):
    """`(compiled, peak_bytes)`: peak = arguments + outputs + temporaries - aliased."""
    compiled = jax.jit(fn).lower(*args).compile()
    stats = compiled.memory_analysis()
    peak = (
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )
    return compiled, int(peak)


def best_times(calls: dict[str, Callable], repeats: int = REPEATS) -> dict[str, float]:
    """Best wall-clock time of each zero-argument call, repeats interleaved.

    Each call runs once first (warm-up, compilation excluded from the clock);
    interleaving spreads the load of a shared machine evenly over the contenders.
    """
    for call in calls.values():
        jax.block_until_ready(call())
    best = dict.fromkeys(calls, np.inf)
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(call())
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bench_materialize(console: Console) -> None:
    data = load_digits()
    x = jnp.asarray(data.x_train[:64])
    params = init_mlp(jax.random.key(0), (64, 64, 10))
    _, unravel = ravel_pytree(params)

    def logits(p):
        return mlp_apply(p, x)

    def flat_logits(flat):
        return logits(unravel(flat)).reshape(-1)

    programs = {
        "jacscope: jacobian_operator(f, p).materialize()": lambda p: jacscope.jacobian_operator(
            logits, p
        ).materialize(),
        "jax.jacfwd": lambda p: jax.jacfwd(flat_logits)(ravel_pytree(p)[0]),
        "jax.jacrev": lambda p: jax.jacrev(flat_logits)(ravel_pytree(p)[0]),
    }
    compiled, peak = {}, {}
    for name, program in programs.items():
        compiled[name], peak[name] = compiled_stats(program, params)
    reference = np.asarray(compiled["jax.jacrev"](params))
    ours = np.asarray(compiled["jacscope: jacobian_operator(f, p).materialize()"](params))
    assert ours.shape == (640, 4810) and np.allclose(ours, reference, atol=1e-5)

    op = jacscope.jacobian_operator(logits, params)
    calls = {name: (lambda c=c: c(params)) for name, c in compiled.items()}
    calls["jacscope: op.materialize(), operator built before (eager)"] = op.materialize
    times = best_times(calls)
    baseline = min(times["jax.jacfwd"], times["jax.jacrev"])
    baseline_peak = min(peak["jax.jacfwd"], peak["jax.jacrev"])

    table = Table(title="1. Dense 640 x 4810 MLP Jacobian (float32)")
    for column in ("method", "time (ms)", "time / best jax", "peak memory (MiB)", "memory / best"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for name, seconds in times.items():
        has_peak = name in peak
        table.add_row(
            name,
            f"{1e3 * seconds:.1f}",
            f"{seconds / baseline:.2f}",
            f"{peak[name] / MIB:.1f}" if has_peak else "-",
            f"{peak[name] / baseline_peak:.2f}" if has_peak else "-",
        )
    console.print(table)


def _residual_mlp(n: int = 4096, hidden: int = 512):
    k1, k2, k3, k4 = jax.random.split(jax.random.key(1), 4)
    w1 = jax.random.normal(k1, (hidden, n)) / n**0.5
    w2 = jax.random.normal(k2, (n, hidden)) / hidden**0.5 * 3.0 * (1.0 + jnp.arange(hidden)) ** -0.5
    b1 = 0.1 * jax.random.normal(k3, (hidden,))
    x = jax.random.normal(k4, (n,))
    return (lambda z: z + w2 @ jnp.tanh(w1 @ z + b1)), x


def bench_svd(console: Console, k: int = 32) -> None:
    g, x = _residual_mlp()
    op = jacscope.jacobian_operator(g, x)
    materialize, _ = compiled_stats(lambda z: jacscope.jacobian_operator(g, z).materialize(), x)
    start = time.perf_counter()
    dense = jax.block_until_ready(materialize(x))
    materialize_s = time.perf_counter() - start
    svd, _ = compiled_stats(lambda m: jnp.linalg.svd(m, compute_uv=False), dense)
    start = time.perf_counter()
    exact = np.asarray(jax.block_until_ready(svd(dense)))[:k]
    dense_s = time.perf_counter() - start

    table = Table(title=f"2. Top-{k} SVD of a 4096 x 4096 residual-MLP Jacobian (float32)")
    for column in (
        "method",
        "matvecs",
        "time (s)",
        "speed-up vs dense SVD",
        "max |s - s*| / s*",
        "max residual / s",
    ):
        table.add_column(column, justify="left" if column == "method" else "right")
    table.add_row(
        f"dense: materialize ({materialize_s:.1f} s), then jnp.linalg.svd",
        "4096",
        f"{dense_s:.1f}",
        "1",
        "(reference)",
        "-",
    )
    configs = {
        "randomized, defaults (oversampling 10, 2 power its)": {"method": "randomized"},
        "randomized, oversampling 32, 10 power its": {
            "method": "randomized",
            "oversampling": 32,
            "power_iterations": 10,
        },
        f"lanczos, default depth 3k + 20 = {3 * k + 20}": {"method": "lanczos"},
        f"lanczos, depth 2k + 20 = {2 * k + 20}": {"method": "lanczos", "depth": 2 * k + 20},
    }
    key = jax.random.key(2)
    for name, options in configs.items():
        run = jax.jit(lambda key, o=options: linalg.svd_topk(op, k, key=key, **o))
        seconds = best_times({name: lambda r=run: r(key)}, repeats=3)[name]
        _, s, _, info = run(key)
        s, residuals = np.asarray(s), np.asarray(info.residuals)
        table.add_row(
            name,
            str(info.num_matvecs),
            f"{seconds:.2f}",
            f"{dense_s / seconds:.0f}x",
            f"{np.max(np.abs(s - exact) / exact):.1e}",
            f"{np.max(residuals / s):.1e}",
        )
    console.print(table)


def _trained_loss_hessian():
    """The loss Hessian of the 64-64-10 MLP after 100 Adam steps, as operator and dense."""
    data = load_digits()
    batches = make_batches(data.x_train, data.y_train, batch_size=64, epochs=4)
    loss = classification_loss(mlp_apply)
    optimizer = optax.adam(1e-2)
    params = init_mlp(jax.random.key(3), (64, 64, 10))

    @jax.jit
    def train(params):
        def step(carry, batch):
            p, state = carry
            grads = jax.grad(loss)(p, batch)
            updates, state = optimizer.update(grads, state, p)
            return (optax.apply_updates(p, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), batches)
        return params

    params = train(params)
    flat, unravel = ravel_pytree(params)
    batch = {"x": jnp.asarray(data.x_train[:256]), "y": jnp.asarray(data.y_train[:256])}

    def flat_loss(f):
        return loss(unravel(f), batch)

    def hvp(v):
        return jax.jvp(jax.grad(flat_loss), (flat,), (v,))[1]

    op = jacscope.LinearOperator(hvp, hvp, (flat.size, flat.size), flat.dtype)
    return op, jax.jit(jax.hessian(flat_loss))(flat)


def bench_trace(console: Console, num_keys: int = 10) -> None:
    op, dense = _trained_loss_hessian()
    exact = float(jnp.trace(dense))
    keys = jax.random.split(jax.random.key(4), num_keys)
    methods = ("hutchinson", "hutchpp", "xtrace")
    budgets = (10, 40, 160, 640)
    table = Table(
        title=f"3. Trace of a {op.shape[0]} x {op.shape[1]} MLP loss Hessian "
        f"(exact {exact:.4g}): RMS relative error over {num_keys} keys "
        "[mean reported stderr / trace]"
    )
    table.add_column("matvecs", justify="right")
    for method in methods:  # each cell: RMS relative error [mean reported stderr / trace]
        table.add_column(method, justify="right")
    for budget in budgets:
        row = [str(budget)]
        for method in methods:
            estimates = jax.jit(
                lambda ks, m=method, b=budget: jax.lax.map(
                    lambda k: linalg.trace(op, key=k, method=m, num_matvecs=b), ks
                )
            )(keys)
            error = np.sqrt(np.mean((np.asarray(estimates.value) - exact) ** 2)) / abs(exact)
            stderr = np.mean(np.asarray(estimates.stderr)) / abs(exact)
            row.append(f"{error:.1e} [{stderr:.1e}]")
        table.add_row(*row)
    console.print(table)


def main() -> None:
    console = Console(width=132)
    console.print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, float32")
    for section in (bench_materialize, bench_svd, bench_trace):
        start = time.perf_counter()
        section(console)
        console.print(f"[dim]({section.__name__}: {time.perf_counter() - start:.0f} s)[/dim]\n")


if __name__ == "__main__":
    main()
