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

The second table trains a flow (`concat_field`, hidden 64 x 3, Adam 1e-3, batches of
256, exact divergence, float32) by maximum likelihood on a 2-D density from the same
initialisation, unregularised, with RNODE's penalties (kinetic + Jacobian Frobenius,
weight 0.05 each) and with the local-error regulariser (weight 0.05 on its step
estimate): the test NLL on 1024 held-out samples, the solver's steps per forward solve
of the trained flow (the backward pass of `RecursiveCheckpointAdjoint` retraces the
same steps), the training time, the time at which the test NLL (checked every 50
iterations) first came within 0.05 of the unregularised run's final NLL, and, on the
trained unregularised flow, the standard deviation of one log-density estimate over
64 keys for Hutchinson and Hutch++ at 4 probes each.

    python benchmarks/flows.py [--repeats 3] [--datasets eight_gaussians] [--iterations 600]
"""

import argparse
import time

import diffrax
import jax
import jax.numpy as jnp
import optax

from jacscope.data import DENSITIES, sample_density
from jacscope.flows import (
    cnf_log_density,
    concat_field,
    init_concat_field,
    maximum_likelihood_loss,
    standard_normal_log_density,
)


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
    parser.add_argument("--datasets", nargs="+", default=["eight_gaussians"], choices=DENSITIES)
    parser.add_argument("--iterations", type=int, default=600)
    args = parser.parse_args()
    divergence_table(args)
    for dataset in args.datasets:
        training_table(dataset, args.iterations)


def divergence_table(args):
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


REGULARISERS = ("none", "rnode", "local error")


def train(dataset, regulariser, iterations, test_x, evaluate):
    """Adam on the maximum-likelihood loss; the test NLL every 50 iterations with the
    seconds spent training until then."""
    optimizer = optax.adam(1e-3)
    params = init_concat_field(jax.random.key(0), 2)
    state = optimizer.init(params)

    @jax.jit
    def step(params, state, key):
        data_key, loss_key = jax.random.split(key)
        x = sample_density(dataset, data_key, 256)
        grads = jax.grad(maximum_likelihood_loss)(
            params, x, loss_key, regulariser=regulariser.replace(" ", "-")
        )
        updates, state = optimizer.update(grads, state)
        return optax.apply_updates(params, updates), state

    jax.block_until_ready(step(params, state, jax.random.key(9)))  # compile, untimed
    curve, seconds = [], 0.0
    for i, key in enumerate(jax.random.split(jax.random.key(1), iterations)):
        start = time.perf_counter()
        params, state = jax.block_until_ready(step(params, state, key))
        seconds += time.perf_counter() - start
        if (i + 1) % 50 == 0 or i + 1 == iterations:
            curve.append((seconds, float(-evaluate(params, test_x).log_density.mean())))
    return params, curve


def training_table(dataset, iterations):
    test_x = sample_density(dataset, jax.random.key(2), 1024)
    evaluate = jax.jit(jax.vmap(lambda p, x: cnf_log_density(concat_field, p, x), (None, 0)))
    print(f"\n{dataset}: {iterations} iterations, batch 256")
    print(f"{'regulariser':<12} {'test NLL':>9} {'steps':>6} {'train s':>8} {'s to target':>12}")
    trained, target = {}, None
    for regulariser in REGULARISERS:
        params, curve = train(dataset, regulariser, iterations, test_x, evaluate)
        trained[regulariser] = params
        target = curve[-1][1] + 0.05 if target is None else target
        reached = next((f"{s:.1f}" for s, nll in curve if nll <= target), "not reached")
        steps = float(jnp.mean(evaluate(params, test_x).num_steps))
        print(
            f"{regulariser:<12} {curve[-1][1]:>9.3f} {steps:>6.1f} {curve[-1][0]:>8.1f}"
            f" {reached:>12}"
        )
    keys = jax.random.split(jax.random.key(3), 64)
    points = test_x[:64]
    for divergence, extra in (("hutchinson", {}), ("hutchpp", {"sketch_size": 2})):
        estimate = jax.jit(
            jax.vmap(
                jax.vmap(
                    lambda x, k, divergence=divergence, extra=extra: cnf_log_density(
                        concat_field, trained["none"], x, divergence=divergence,
                        num_probes=4, key=k, **extra,
                    ).log_density,
                    (None, 0),
                ),
                (0, None),
            )
        )(points, keys)  # fmt: skip
        spread = float(jnp.mean(jnp.std(estimate, axis=1, ddof=1)))
        print(f"{divergence} x4: sd of one log-density estimate {spread:.2e} (mean over 64 points)")


if __name__ == "__main__":
    main()
