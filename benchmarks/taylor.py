"""Differential operators by Taylor mode: time and memory per point batch against the
obvious JAX code, baselines in the same run.

An MLP R^d -> R of 4 tanh layers of width 128 (random weights, variance-preserving
scale), float32, a batch of 16 points, everything jitted and vmapped over the batch.

1. The Laplacian at d = 10, 100, 1,000 and 10,000: `jacscope.taylor.laplacian` with
   `method="forward_laplacian"` (the default: collapsed 2-jets, the identity input
   left implicit, the d directions compressed to 128 after the first layer),
   `"taylor"` (the same 2-jets without the compression), and the baselines `"hvp"`
   (d vmapped Hessian-vector products, `jax.jvp` of `jax.jacrev`) and `"hessian"`
   (`jnp.trace(jax.hessian(f)(x))`).
2. The biharmonic at d = 10 and 100: `"taylor"` (d^2 collapsed 4-jets),
   `"forward_laplacian"` (the Laplacian of the forward Laplacian), and nested
   `"hvp"` and `"hessian"` Laplacians.
3. The stochastic Laplacian estimators at d = 1,000 and 10,000: milliseconds per
   sample per batch, and the relative RMS error over the batch against the exact
   Laplacian when given the time of the fastest exact method (N = that time divided by
   the time per sample, at least 2 samples).

Columns: milliseconds per batch (best of `--repeats` interleaved repeats after a
warm-up, compilation excluded: `best_times` of benchmarks/operators.py), peak memory
(XLA's buffer assignment of the compiled program, arguments + outputs + temporaries:
`compiled_stats` of benchmarks/operators.py), the ratio of the vmapped-HVP time to the
row's, and the largest relative difference from the first row. A program whose peak
memory exceeds `--budget-gib` is compiled but not run ("skipped").

    python benchmarks/taylor.py [--repeats 5] [--budget-gib 6]
"""

import argparse
import functools
import math

import jax
import jax.numpy as jnp

from jacscope._memory import format_bytes
from jacscope.taylor import Dense, Sparse, biharmonic, laplacian, stde_laplacian
from operators import best_times, compiled_stats  # benchmarks/operators.py

BATCH = 16
WIDTH, DEPTH = 128, 4


def init(d, key):
    keys = jax.random.split(key, DEPTH + 2)
    sizes = [d] + [WIDTH] * DEPTH
    weights = [
        jax.random.normal(k, (a, b)) / a**0.5
        for k, a, b in zip(keys[:DEPTH], sizes[:-1], sizes[1:], strict=True)
    ]
    head = jax.random.normal(keys[-2], (WIDTH,)) / WIDTH**0.5
    points = jax.random.normal(keys[-1], (BATCH, d))
    return (weights, head), points


def mlp(params, x):
    weights, head = params
    h = x
    for w in weights:
        h = jnp.tanh(h @ w)
    return h @ head


def batched(operator, **options):
    return jax.vmap(lambda p, x: operator(lambda y: mlp(p, y), x, **options), (None, 0))


def measure(programs, params, points, budget, repeats):
    """`{name: (seconds or None, peak bytes, output or None)}` for jitted programs."""
    compiled, peaks = {}, {}
    for name, program in programs.items():
        compiled[name], peaks[name] = compiled_stats(program, params, points)
    runnable = {n: c for n, c in compiled.items() if peaks[n] <= budget}
    times = best_times({n: (lambda c=c: c(params, points)) for n, c in runnable.items()}, repeats)
    return {
        name: (
            times.get(name),
            peaks[name],
            runnable[name](params, points) if name in runnable else None,
        )
        for name in programs
    }


def print_rows(d, results, baseline="hvp"):
    reference = next(out for _, _, out in results.values() if out is not None)
    base_time = results[baseline][0]
    for name, (seconds, peak, out) in results.items():
        if seconds is None:
            print(f"{d:>6} {name:<20} {'skipped':>10} {format_bytes(peak):>10} {'-':>7} {'-':>9}")
            continue
        ratio = f"{base_time / seconds:>7.2f}" if base_time else f"{'-':>7}"
        scale = float(jnp.max(jnp.abs(reference))) or 1.0
        diff = float(jnp.max(jnp.abs(out - reference))) / scale
        print(
            f"{d:>6} {name:<20} {seconds * 1e3:>10.2f} {format_bytes(peak):>10} {ratio}"
            f" {diff:>9.1e}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget-gib", type=float, default=6.0)
    args = parser.parse_args()
    budget = int(args.budget_gib * 2**30)
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}; best of {args.repeats}; "
        f"batch {BATCH}; MLP {DEPTH} x {WIDTH} tanh; float32"
    )
    header = f"{'d':>6} {'method':<20} {'ms/batch':>10} {'peak':>10} {'vs hvp':>7} {'rel diff':>9}"
    methods = ("forward_laplacian", "taylor", "hvp", "hessian")

    print("\n1. Laplacian")
    print(header)
    exact = {}
    for d in (10, 100, 1_000, 10_000):
        params, points = init(d, jax.random.key(d))
        programs = {m: batched(laplacian, method=m) for m in methods}
        results = measure(programs, params, points, budget, args.repeats)
        print_rows(d, results)
        exact[d] = results
        fastest = min((m for m in methods[:2] if results[m][0]), key=lambda m: results[m][0])
        if results["hvp"][0]:
            print(
                f"{'':>6} fastest jacscope ({fastest}) vs hvp: "
                f"{results['hvp'][0] / results[fastest][0]:.1f}x the speed, "
                f"{results[fastest][1] / results['hvp'][1]:.2f}x the memory"
            )

    print("\n2. Biharmonic")
    print(header)
    for d in (10, 100):
        params, points = init(d, jax.random.key(d))
        programs = {m: batched(biharmonic, method=m) for m in methods}
        print_rows(d, measure(programs, params, points, budget, args.repeats))

    print("\n3. Stochastic Laplacian at the time of the fastest exact method")
    print(
        f"{'d':>6} {'estimator':<20} {'ms/sample':>10} {'samples':>8} {'ms/batch':>10} "
        f"{'rel RMS error':>14}"
    )
    keys = jax.random.split(jax.random.key(7), BATCH)
    estimators = {
        "dense rademacher": Dense("rademacher"),
        "dense gaussian": Dense("gaussian"),
        "sparse B=1": Sparse(1),
        "sparse B=16": Sparse(16),
    }
    for d in (1_000, 10_000):
        params, points = init(d, jax.random.key(d))
        timed = {m: exact[d][m] for m in methods[:2] if exact[d][m][0]}
        fastest = min(timed, key=lambda m: timed[m][0])
        exact_time, _, truth = timed[fastest]
        rms_truth = float(jnp.sqrt(jnp.mean(truth**2)))

        def program(estimator, num):
            def one(p, x, k):
                return stde_laplacian(
                    lambda y: mlp(p, y), x, key=k, num_samples=num, estimator=estimator
                ).value

            return jax.jit(jax.vmap(one, (None, 0, 0)))

        for name, estimator in estimators.items():
            probe = 64
            per = program(estimator, probe)
            call = functools.partial(per, params, points, keys)
            (t_probe,) = best_times({"probe": call}, 3).values()
            per_sample = t_probe / probe
            num = max(2, math.floor(exact_time / per_sample))
            run = program(estimator, num)
            call = functools.partial(run, params, points, keys)
            (seconds,) = best_times({"run": call}, 3).values()
            error = float(jnp.sqrt(jnp.mean((call() - truth) ** 2))) / rms_truth
            print(
                f"{d:>6} {name:<20} {per_sample * 1e3:>10.3f} {num:>8} {seconds * 1e3:>10.2f} "
                f"{error:>14.2e}"
            )
        print(f"{'':>6} exact ({fastest}): {exact_time * 1e3:.2f} ms/batch")


if __name__ == "__main__":
    main()
