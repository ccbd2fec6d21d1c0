"""The Jacobian and the Gramian of m per-example losses: jacscope's routes against the
obvious JAX code.

For an MLP (64 -> 256 -> 256 -> 10), a LeNet-5-like CNN on 8 x 8 digits and a GRU
(hidden 64, over 16 steps of 8 features), with m = 64, 256, 1024 per-example
cross-entropies (float32, fixed seeds), it times and sizes:

- `jax.jacrev`: `jax.jit` of `jax.jacrev` of the losses, flattened, then J J^T (the
  baseline, which holds J);
- `jacobian`: `jacscope.descent.objective_gramian(method="jacobian")` (J in chunks of
  rows, then J J^T);
- `products`: `objective_gramian(method="products", chunk_size=m // 16)`, which never
  holds J: J (J^T E) for chunks E of m / 16 columns of the identity.

The CNN runs to m = 256 only: its `jacobian` route, slower than `jax.jacrev` there,
would take minutes at m = 1024.

Each route is jitted; the time is the median of `--repeats` runs after one warm-up,
the memory XLA's compiled estimate (arguments, outputs and temporaries), and the
ratio the baseline's time over the route's. The routes agree with the baseline to
float32 rounding (the largest relative difference is printed).

    python benchmarks/objectives.py [--small] [--repeats 3]
"""

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jacscope import descent
from jacscope._memory import format_bytes
from jacscope.models import cnn_apply, cross_entropy, init_cnn, init_mlp, mlp_apply


def _mlp(m):
    params = init_mlp(jax.random.key(0), (64, 256, 256, 10), dtype=jnp.float32)
    x = jax.random.normal(jax.random.key(1), (m, 64), jnp.float32)
    y = jax.random.randint(jax.random.key(2), (m,), 0, 10)
    return lambda p: jax.vmap(cross_entropy)(mlp_apply(p, x), y), params


def _cnn(m):
    params = init_cnn(jax.random.key(0), (8, 8), 10, dtype=jnp.float32)
    x = jax.random.normal(jax.random.key(1), (m, 64), jnp.float32)  # flattened 8 x 8
    y = jax.random.randint(jax.random.key(2), (m,), 0, 10)
    return lambda p: jax.vmap(cross_entropy)(cnn_apply(p, x), y), params


def _gru(m):
    cell = eqx.nn.GRUCell(8, 64, key=jax.random.key(0))
    head = jax.random.normal(jax.random.key(3), (64, 10), jnp.float32) / 8
    params = {"cell": cell, "head": head}
    x = jax.random.normal(jax.random.key(1), (m, 16, 8), jnp.float32)
    y = jax.random.randint(jax.random.key(2), (m,), 0, 10)

    def losses(p):
        def run(seq):
            h, _ = jax.lax.scan(lambda h, xt: (p["cell"](xt, h), None), jnp.zeros(64), seq)
            return h @ p["head"]

        return jax.vmap(cross_entropy)(jax.vmap(run)(x), y)

    return losses, params


MODELS = {"MLP": _mlp, "CNN": _cnn, "GRU": _gru}


def _baseline(losses):
    def gramian(params):
        jacobian = jax.jacrev(losses)(params)
        arrays = eqx.filter(jacobian, eqx.is_inexact_array)
        J = jax.vmap(lambda row: ravel_pytree(row)[0])(arrays)
        return J @ J.T

    return gramian


def _route(losses, method, chunk_size):
    return lambda params: descent.objective_gramian(
        losses, params, method=method, chunk_size=chunk_size
    )


def _measure(fn, params, repeats):
    dynamic, static = eqx.partition(params, eqx.is_array)
    jitted = jax.jit(lambda d: fn(eqx.combine(d, static)))
    compiled = jitted.lower(dynamic).compile()
    stats = compiled.memory_analysis()
    memory = stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
    out = jax.block_until_ready(compiled(dynamic))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(dynamic))
        times.append(time.perf_counter() - start)
    return float(np.median(times)), memory, np.asarray(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="m = 16 and 64 only")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = [16, 64] if args.small else [64, 256, 1024]
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, float32")
    print(
        f"{'model':<5} {'P':>7} {'m':>5} {'route':<9} {'time':>9} {'memory':>10} "
        f"{'x jacrev':>8} {'rel diff':>9}"
    )
    for model, build in MODELS.items():
        for m in sizes if model != "CNN" else sizes[:2]:
            losses, params = build(m)
            P = ravel_pytree(eqx.filter(params, eqx.is_inexact_array))[0].size
            base_time, base_memory, reference = _measure(_baseline(losses), params, args.repeats)
            rows = [("jax.jacrev", base_time, base_memory, 0.0)]
            for method, chunk_size in (("jacobian", None), ("products", max(m // 16, 1))):
                route = _route(losses, method, chunk_size)
                seconds, memory, G = _measure(route, params, args.repeats)
                diff = float(np.max(np.abs(G - reference)) / np.max(np.abs(reference)))
                rows.append((method, seconds, memory, diff))
            for route, seconds, memory, diff in rows:
                print(
                    f"{model:<5} {P:>7,} {m:>5} {route:<9} {seconds * 1e3:>7.1f}ms "
                    f"{format_bytes(memory):>10} {base_time / seconds:>8.2f} {diff:>9.1e}"
                )


if __name__ == "__main__":
    main()
