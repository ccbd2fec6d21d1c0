"""How often do the reported 95% intervals of a region count hold the truth?

On an operator whose singular values are known, every region count (chaotic, bulk and
stable at tau = 0.1 and 0.01, `jacscope.training.region_intervals`) is estimated once
per fixed key, 200 keys by default, by

- SLQ (`linalg.spectral_density` then `linalg.count_in`: the Gauss and Gauss-Radau
  bounds of every probe combined with the probe spread), at several depths;
- the Jackson-damped Chebyshev filter (`linalg.chebyshev_count`, Di Napoli, Polizzi &
  Saad 2016) on the bulk window, at several degrees, and at the degree that
  `linalg.chebyshev_degree` asks for a 0.02 margin with 32 probes;

and the table prints, per estimator and budget (probes x depth or degree, products
with the operator per estimate): the share of keys whose interval holds the exact
count (coverage; the target is 0.95, the tests require 0.9), and the median interval
width in counts and as a share of the size (resolving to +-2% needs at most 4%).

The default operator is a 120 x 120 matrix with a prescribed spectrum (40 exact ones,
12 values within 0.01 of one, 28 chaotic values in [1.15, 4], 40 stable in [0, 0.85]);
about a minute on two CPU cores. `--training` adds the exact training Jacobian of the
paper's setting at P = 1,060 (digits, 64-14-10 MLP, 5 epochs, float64; about five more
minutes):

    python benchmarks/coverage.py [--training] [--keys 200]
"""

import argparse
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from jacscope import linalg  # noqa: E402
from jacscope.operators import matrix_operator  # noqa: E402
from jacscope.training import region_counts, region_intervals  # noqa: E402

TAUS = (0.1, 0.01)
MAX_DEGREE = 4096
"""The largest Chebyshev degree the table runs (200 keys of it on a dense operator)."""


def prescribed_problem():
    rng = np.random.default_rng(3)
    values = np.sort(
        np.concatenate(
            [
                np.ones(40),
                1 + 0.004 * rng.standard_normal(12),
                rng.uniform(1.15, 4.0, 28),
                rng.uniform(0.0, 0.85, 40),
            ]
        )
    )[::-1]
    n = values.size
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return "prescribed, n = 120", (u * values) @ v.T, values


def training_problem():
    from jacscope.training import TrainingConfig, build_run, training_jacobian

    run = build_run(TrainingConfig(hidden=14, epochs=5, dtype="float64")).run
    jac = np.asarray(training_jacobian(run))
    return "training J, P = 1,060", jac, np.linalg.svd(jac, compute_uv=False)


def _row(rows, problem, estimator, budget, products, tau, region, counts, truth, size):
    holds = [c.low <= truth <= c.high for c in counts]
    widths = [c.high - c.low for c in counts]
    rows.append(
        (
            problem,
            estimator,
            budget,
            products,
            tau,
            region,
            truth,
            np.mean(holds),
            np.median(widths),
            np.median(widths) / size,
        )
    )


def measure(name, matrix, values, num_keys, rows):
    op = matrix_operator(matrix)
    size = values.size
    top = float(values.max())
    bounds = (0.0, 1.05 * top**2)
    keys = [jax.random.key(seed) for seed in range(num_keys)]
    exact = {tau: region_counts(values, [tau]) for tau in TAUS}
    for depth in (8, 30, min(120, size)):
        densities = [linalg.spectral_density(op, key=k, num_probes=6, depth=depth) for k in keys]
        for tau in TAUS:
            for region, (lo, hi) in region_intervals(tau).items():
                counts = [linalg.count_in(d, lo, hi) for d in densities]
                truth = getattr(exact[tau], region)[0]
                budget = f"6 x depth {depth}"
                _row(rows, name, "SLQ", budget, 6 * depth, tau, region, counts, truth, size)
    margin_degree = linalg.chebyshev_degree(0.9**2, 1.1**2, bounds, 2 * 0.02 * 0.9, size)
    budgets = [(6, 64), (6, 512)]
    if margin_degree <= MAX_DEGREE:
        budgets.append((32, margin_degree))
    else:
        print(
            f"{name}: a 0.02 margin needs degree {margin_degree:,} "
            f"({2 * 32 * margin_degree:,} products per key at 32 probes); not run"
        )
    for probes, degree in budgets:
        for tau in TAUS:
            lo, hi = region_intervals(tau)["bulk"]
            counts = [
                linalg.chebyshev_count(
                    op, lo, hi, key=k, bounds=bounds, degree=degree, num_probes=probes
                )
                for k in keys
            ]
            truth = exact[tau].bulk[0]
            budget = f"{probes} x degree {degree}"
            products = 2 * probes * degree  # each Gram product is an mv and an rmv
            _row(rows, name, "Chebyshev", budget, products, tau, "bulk", counts, truth, size)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200, help="keys per estimate")
    parser.add_argument("--training", action="store_true", help="add the training J")
    args = parser.parse_args()
    problems = [prescribed_problem()] + ([training_problem()] if args.training else [])
    rows = []
    for name, matrix, values in problems:
        start = time.perf_counter()
        measure(name, matrix, values, args.keys, rows)
        print(f"{name}: {time.perf_counter() - start:.0f} s for {args.keys} keys per row")
    header = (
        "problem",
        "estimator",
        "budget",
        "products",
        "tau",
        "region",
        "exact",
        "coverage",
        "median width",
        "width / size",
    )
    table = [header] + [
        (p, e, b, str(n), f"{t:g}", r, f"{x:g}", f"{c:.3f}", f"{w:.1f}", f"{s:.1%}")
        for p, e, b, n, t, r, x, c, w, s in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    worst = min(row[7] for row in rows)
    print(f"lowest coverage: {worst:.3f} (target 0.95; the tests require 0.90)")


if __name__ == "__main__":
    main()
