"""Continuous-normalising-flow log-densities: time per batch against the obvious JAX code.

A time-dependent MLP field dz/dt = tanh([z, t] W1 + b1) W2 (hidden 64, random weights)
in d = 2, 16 and 64 dimensions; the log-densities of a batch of 64 points, float32,
Tsit5 with rtol = atol = 1e-5, jitted and vmapped. Rows: `jacscope.flows.
cnf_log_density` with the exact divergence (d JVPs of one linearisation per
evaluation), the baseline (the obvious JAX code: `jnp.trace(jax.jacfwd(f))` inside the
same diffrax solve), and the stochastic divergences at 4 probes (Hutchinson; Hutch++
with a 2-vector sketch) with the spread of their estimates around the exact value over
the batch. Columns: milliseconds per batch, solver steps per point, the ratio of the
baseline's time to the row's, and the mean absolute error against the exact
divergence's log-density.

    python benchmarks/flows.py [--repeats 3]
"""

import argparse
import time

import diffrax
import jax
import jax.numpy as jnp

from jacscope.flows import cnf_log_density, standard_normal_log_density


def field(t, z, params):
    w1, b1, w2 = params
    return jnp.tanh(jnp.concatenate([z, jnp.array([t], z.dtype)]) @ w1 + b1) @ w2


def init(d, key, hidden=64):
    k1, k2, k3 = jax.random.split(key, 3)
    return (
        jax.random.normal(k1, (d + 1, hidden)) / (d + 1) ** 0.5,
        jnp.zeros(hidden),
        jax.random.normal(k2, (hidden, d)) / hidden**0.5,
    ), jax.random.normal(k3, (64, d))


def baseline(params, x):
    """The obvious JAX code: the augmented field with the dense Jacobian's trace."""

    def augmented(t, y, params):
        z, _ = y
        return field(t, z, params), -jnp.trace(jax.jacfwd(lambda u: field(t, u, params))(z))

    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(augmented), diffrax.Tsit5(), 1.0, 0.0, None, (x, jnp.zeros(())),
        args=params, stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-5),
        saveat=diffrax.SaveAt(t1=True),
    )  # fmt: skip
    z0, integral = jax.tree.map(lambda a: a[-1], solution.ys)
    return standard_normal_log_density(z0) - integral, solution.stats["num_steps"]


def timed(fn, args, repeats):
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; best of {args.repeats}")
    header = f"{'d':>3} {'route':<24} {'ms/batch':>9} {'steps':>6} {'ratio':>6} {'|error|':>9}"
    print(header)
    keys = jax.random.split(jax.random.key(1), 64)
    for d in (2, 16, 64):
        params, x = init(d, jax.random.key(0))
        t_base, (lp_base, steps_base) = timed(
            jax.jit(jax.vmap(baseline, (None, 0))), (params, x), args.repeats
        )
        routes = {
            "jacscope exact": {"divergence": "exact"},
            "jacscope hutchinson x4": {"divergence": "hutchinson", "num_probes": 4},
            "jacscope hutch++ x4 + 2": {"divergence": "hutchpp", "num_probes": 4, "sketch_size": 2},
        }
        results = {}
        for name, options in routes.items():
            run = jax.jit(
                jax.vmap(
                    lambda p, xi, k, o=options: cnf_log_density(field, p, xi, key=k, **o),
                    (None, 0, 0),
                )
            )
            results[name] = timed(run, (params, x, keys), args.repeats)
        exact = results["jacscope exact"][1].log_density
        print(
            f"{d:>3} {'jacfwd + trace (baseline)':<24} {t_base * 1e3:>9.1f}"
            f" {float(jnp.mean(steps_base)):>6.1f} {1.0:>6.2f}"
            f" {float(jnp.mean(jnp.abs(lp_base - exact))):>9.1e}"
        )
        for name, (seconds, out) in results.items():
            error = float(jnp.mean(jnp.abs(out.log_density - exact)))
            print(
                f"{d:>3} {name:<24} {seconds * 1e3:>9.1f} {float(jnp.mean(out.num_steps)):>6.1f}"
                f" {t_base / seconds:>6.2f} {error:>9.1e}"
            )


if __name__ == "__main__":
    main()
