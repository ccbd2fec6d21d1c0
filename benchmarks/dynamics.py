"""Lyapunov spectra: known values, and the time per QR step against plain JAX.

First table: `jacscope.dynamics.lyapunov_spectrum` on maps whose exponents are known
(a symmetric linear map: the log-moduli of its eigenvalues; the logistic map at r = 4:
ln 2; the Henon map at a = 1.4, b = 0.3: lambda_1 = 0.41922 from the literature and
lambda_1 + lambda_2 = ln 0.3 exactly) and `lyapunov_spectrum_ode` on flows (Lorenz-63
at sigma = 10, rho = 28, beta = 8/3: 0.9056, 0, -14.5723 from the literature, the sum
-(sigma + 1 + beta) exactly; Henon-Heiles at energy 1/8: lambda_1 + lambda_4 = 0),
float64, with the reported standard error.

Second table: the full spectrum (k = N) of a discretised random rate network
(Sompolinsky-Crisanti-Sommers), x <- x + 0.1 (-x + W tanh(x)) with W_ij ~ N(0, g^2 / N),
g = 3, float32, for N = 100, 300, 1000 and 10,000: time per step of `lyapunov_spectrum` (k JVPs
of one linearisation, then QR) against the plain-JAX loop (`jax.jacfwd` of the step,
J Q, then QR), both jitted `lax.scan`s over the same steps, and their ratio; both give
the same exponents (the largest difference is printed). The memory column is the dominant
arrays' size (jacscope: the tangent frame Q and its image, 2 N k; jacfwd: J as well,
N^2 more), float32.

Third table: k = 100 exponents of a sparse rate network of N = 100,000 (each unit driven
by 50 others, weights N(0, g^2 / 50)), where jacfwd's J (N^2 floats, 40 GB) does not fit
in memory: jacscope's time per step alone.

    python benchmarks/dynamics.py [--small] [--steps 50]
"""

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from jacscope._memory import format_bytes  # noqa: E402
from jacscope.dynamics import lyapunov_spectrum, lyapunov_spectrum_ode  # noqa: E402


def known_values():
    key = jax.random.key(0)
    rng = np.random.default_rng(0)
    V, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    eigenvalues = np.array([2.0, -1.2, 0.5, 0.1])
    A = jnp.asarray(V @ np.diag(eigenvalues) @ V.T)
    linear = lyapunov_spectrum(lambda x: A @ x, jnp.ones(4), num_steps=400, transient=100, key=key)
    logistic = lyapunov_spectrum(
        lambda x: 4.0 * x * (1 - x), jnp.array([0.3]), num_steps=100_000, transient=100, key=key
    )

    def henon(s):
        return jnp.array([1 - 1.4 * s[0] ** 2 + s[1], 0.3 * s[0]])

    henon_result = lyapunov_spectrum(
        henon, jnp.array([0.1, 0.1]), num_steps=100_000, transient=200, key=key
    )
    rows = [
        ("linear map, lambda_1", linear, 0, np.log(2.0)),
        ("linear map, lambda_4", linear, 3, np.log(0.1)),
        ("logistic r = 4", logistic, 0, np.log(2.0)),
        ("Henon, lambda_1", henon_result, 0, 0.41922),
        ("Henon, lambda_1 + lambda_2", henon_result, None, np.log(0.3)),
    ]

    def lorenz(t, s):
        x, y, z = s
        return jnp.array([10 * (y - x), x * (28 - z) - y, x * y - 8 / 3 * z])

    def henon_heiles(t, s):
        x, y, px, py = s
        return jnp.array([px, py, -x - 2 * x * y, -y - x**2 + y**2])

    lorenz_result = lyapunov_spectrum_ode(
        lorenz, jnp.array([1.0, 1.0, 20.0]), duration=1000.0, interval=0.1, transient=20.0,
        key=key,
    )  # fmt: skip
    px = (2 * 0.125 - 0.1**2 - 0.1**2 - 2 * 0.1**3 / 3) ** 0.5
    hh = lyapunov_spectrum_ode(
        henon_heiles, jnp.array([0.0, -0.1, px, 0.1]), duration=1000.0, interval=0.5,
        transient=10.0, key=key,
    )  # fmt: skip
    rows += [
        ("Lorenz, lambda_1", lorenz_result, 0, 0.9056),
        ("Lorenz, lambda_2", lorenz_result, 1, 0.0),
        ("Lorenz, lambda_3", lorenz_result, 2, -14.5723),
        ("Lorenz, sum", lorenz_result, None, -(10 + 1 + 8 / 3)),
        ("Henon-Heiles, l_1 + l_4", hh, [0, 3], 0.0),
        ("Henon-Heiles, sum", hh, None, 0.0),
    ]
    print(f"{'system':<28} {'jacscope':>10} {'stderr':>9} {'reference':>10} {'difference':>11}")
    for name, result, index, reference in rows:
        # A sum's stderr from the spread of its batch estimates.
        batches = result.batch_estimates
        chosen = range(batches.shape[1]) if index is None else np.atleast_1d(index)
        combined = jnp.sum(batches[:, np.asarray(list(chosen))], axis=1)
        value = float(jnp.mean(combined))
        stderr = float(jnp.std(combined, ddof=1) / len(combined) ** 0.5)
        difference = value - reference
        print(f"{name:<28} {value:>10.5f} {stderr:>9.1e} {reference:>10.5f} {difference:>11.1e}")


def rate_network(n, key):
    W = jax.random.normal(key, (n, n), jnp.float32) * (3.0 / n**0.5)
    return lambda x: x + 0.1 * (-x + W @ jnp.tanh(x))


def plain_spectrum(step, x0, Q0, steps):
    def one(carry, _):
        x, Q, logs = carry
        Q = jax.jacfwd(step)(x) @ Q
        Q, R = jnp.linalg.qr(Q)
        return (step(x), Q, logs + jnp.log(jnp.abs(jnp.diagonal(R)))), None

    (_, _, logs), _ = jax.lax.scan(one, (x0, Q0, jnp.zeros(Q0.shape[1], x0.dtype)), None, steps)
    return logs / steps


def _ours(step, x0, steps, key):
    return lyapunov_spectrum(step, x0, num_steps=steps, num_batches=2, key=key).exponents


def _time(fn, *args):
    jax.block_until_ready(fn(*args))  # compile
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - start, out


def timing(sizes, steps):
    print(f"\nrate network, g = 3, full spectrum k = N, float32, {steps} steps (N = 10,000: 2)")
    header = f"{'N':>6} {'jacscope ms/step':>17} {'jacfwd+QR ms/step':>18}"
    print(f"{header} {'ratio':>6} {'max diff':>9} {'memory':>9} {'jacfwd memory':>14}")
    for n in sizes:
        steps = 2 if n >= 10_000 else steps
        step = rate_network(n, jax.random.key(1))
        x0 = jax.random.normal(jax.random.key(2), (n,), jnp.float32)
        key = jax.random.key(3)
        Q0, _ = jnp.linalg.qr(jax.random.normal(key, (n, n), jnp.float32))
        ours = jax.jit(functools.partial(_ours, step, steps=steps, key=key))
        plain = jax.jit(functools.partial(plain_spectrum, step, Q0=Q0, steps=steps))
        t_ours, e_ours = _time(ours, x0)
        t_plain, e_plain = _time(plain, x0)
        diff = float(jnp.max(jnp.abs(e_ours - e_plain)))
        print(
            f"{n:>6} {t_ours / steps * 1e3:>17.2f} {t_plain / steps * 1e3:>18.2f}"
            f" {t_plain / t_ours:>6.2f} {diff:>9.1e} {format_bytes(8 * n * n):>9}"
            f" {format_bytes(12 * n * n):>14}"
        )


def sparse_rate_network(n, fan_in, key):
    sources = jax.random.randint(key, (n, fan_in), 0, n)
    weights = jax.random.normal(jax.random.fold_in(key, 1), (n, fan_in), jnp.float32)
    weights = weights * (3.0 / fan_in**0.5)
    return lambda x: x + 0.1 * (-x + jnp.sum(weights * jnp.tanh(x)[sources], axis=1))


def structured(n, k, steps):
    print(f"\nsparse rate network, N = {n:,}, 50 inputs per unit, k = {k}, {steps} steps")
    step = sparse_rate_network(n, 50, jax.random.key(1))
    x0 = jax.random.normal(jax.random.key(2), (n,), jnp.float32)
    key = jax.random.key(3)
    run = jax.jit(
        lambda x: lyapunov_spectrum(step, x, num_steps=steps, k=k, num_batches=2, key=key)
    )
    elapsed, result = _time(run, x0)
    print(f"{'jacscope ms/step':>17} {'memory':>9} {'jacfwd memory':>14} {'lambda_1':>9}")
    print(
        f"{elapsed / steps * 1e3:>17.2f} {format_bytes(8 * n * k):>9}"
        f" {format_bytes(4 * n * n):>14} {float(result.exponents[0]):>9.4f}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="N = 50 and 100 only")
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}")
    known_values()
    timing([50, 100] if args.small else [100, 300, 1000, 10_000], args.steps)
    structured(10_000 if args.small else 100_000, 10 if args.small else 100, args.steps)


if __name__ == "__main__":
    main()
