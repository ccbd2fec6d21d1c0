"""Stochastic trace, diagonal and squared-Frobenius-norm estimators."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from matfree import stochtrace

from jacscope._validation import check_count
from jacscope.linalg._checks import check_operator, check_square
from jacscope.linalg._estimate import Estimate, mean_estimate
from jacscope.operators import AbstractLinearOperator

_METHODS = ("hutchinson", "hutchpp", "xtrace")


def _probe_values(integrand, op, key, num, sampler=stochtrace.sampler_signs):
    """One estimate per probe: `integrand(A, v)` for `num` probes `v` of length n."""
    like = jnp.zeros((op.shape[1],), jnp.result_type(op.dtype))
    probes = sampler(like, num=num)(key)
    return jax.vmap(lambda v: integrand(op._mv, v))(probes)


@eqx.filter_jit
def _hutchinson(op, num_matvecs, key):
    samples = _probe_values(stochtrace.monte_carlo_trace(), op, key, num_matvecs)
    return mean_estimate(samples, num_matvecs)


def hutchpp_parts(mm, basis: jax.Array, probes: jax.Array) -> tuple[jax.Array, ...]:
    """Hutch++ from a given orthonormal `basis` Q (Hutch++ takes that of A S, S a sketch)
    and given probes: `(tr(Q^T A Q), g_i^T P A P g_i for each column g_i of probes,
    (A Q, A P g))`, P = I - Q Q^T, from one product with the block [Q, P g]. For any
    fixed Q, the low-rank part plus any one sample is an unbiased estimate of tr A.
    `mm` maps an `(n, k)` block to A times it."""
    probes = probes - basis @ (basis.T @ probes)
    products = mm(jnp.concatenate([basis, probes], axis=1))
    on_basis, on_probes = products[:, : basis.shape[1]], products[:, basis.shape[1] :]
    low_rank_trace = jnp.sum(basis * on_basis)
    return low_rank_trace, jnp.sum(probes * on_probes, axis=0), (on_basis, on_probes)


@eqx.filter_jit
def _hutchpp(op, num_matvecs, key):
    n = op.shape[0]
    dtype = jnp.result_type(op.dtype)
    sketch_size = min(num_matvecs // 3, n)
    num_probes = num_matvecs - 2 * sketch_size
    key_sketch, key_probe = jax.random.split(key)
    sketch = jax.random.rademacher(key_sketch, (n, sketch_size), dtype)
    probes = jax.random.rademacher(key_probe, (n, num_probes), dtype)
    basis, _ = jnp.linalg.qr(op.mm(sketch))
    low_rank_trace, samples, _ = hutchpp_parts(op.mm, basis, probes)
    return mean_estimate(samples, num_matvecs, offset=low_rank_trace)


@eqx.filter_jit
def _exact_trace(op):
    n = op.shape[0]
    dtype = jnp.result_type(op.dtype)
    diag = jax.lax.map(lambda i: op._mv(jax.nn.one_hot(i, n, dtype=dtype))[i], jnp.arange(n))
    total = jnp.sum(diag)
    return Estimate(total, jnp.zeros_like(total), n)


@eqx.filter_jit
def _xtrace(op, num_samples, key):
    like = jnp.zeros((op.shape[0],), jnp.result_type(op.dtype))
    samples = stochtrace.sampler_sphere(like, num=num_samples)(key)
    leave_one_out = stochtrace.leave_one_out_xtrace()(op._mv, samples)
    return mean_estimate(leave_one_out, 2 * num_samples)


def trace(
    op: AbstractLinearOperator,
    *,
    key: jax.Array,
    method: str = "xtrace",
    num_matvecs: int = 100,
) -> Estimate:
    r"""Randomized estimate of `tr(A)` for a square operator, with its standard error.

    **Methods** (all unbiased; all use only `A v` products):

    - `"hutchinson"` (Hutchinson 1989): `mean_i v_i^T A v_i` over `num_matvecs`
      Rademacher probes. `stderr = std(v_i^T A v_i, ddof=1) / sqrt(num_matvecs)`,
      the usual standard error of an i.i.d. mean. Needs `num_matvecs >= 2`.
    - `"hutchpp"` (Meyer, Musco, Musco & Woodruff 2021, Hutch++): with
      `s = num_matvecs // 3`, `Q = orth(A S)` for an `n x s` Rademacher sketch `S`;
      `tr(A) = tr(Q^T A Q) + tr((I - QQ^T) A (I - QQ^T))`, the first exactly (`s`
      products), the second by Hutchinson on the remaining `num_matvecs - 2 s`
      projected Rademacher probes. `stderr` is the Hutchinson standard error of that
      second, stochastic part given `Q` (the first part is exact given `Q`). Needs
      `num_matvecs >= 4`.
    - `"xtrace"` (Epperly, Tropp & Webber 2024, XTrace, via `matfree.stochtrace`):
      `num_matvecs // 2` sphere-distributed probes, each used both in the low-rank
      part and as a Hutchinson probe of the leave-it-out remainder; the estimate is
      the mean of the `s` leave-one-out estimates `t_i` and
      `stderr = std(t_i, ddof=1) / sqrt(s)`, the error estimate proposed by the
      authors. Needs `num_matvecs >= 4`.

    With any method, a budget `num_matvecs >= n` is spent on the `n` products
    `A e_i` instead, which give the trace exactly (`stderr = 0`, `num_matvecs = n`):
    no randomized estimate at that budget is as accurate.

    Hutch++ and XTrace are far more accurate than Hutchinson when the spectrum
    decays (error ~ 1/num_matvecs instead of 1/sqrt(num_matvecs)).

    **Arguments:** `op` (square), `key` (a `jax.random` key), `method`,
    `num_matvecs` (budget of products; `Estimate.num_matvecs` reports what was spent).

    Citation: Hutchinson, "A stochastic estimator of the trace of the influence matrix for
    Laplacian smoothing splines", Communications in Statistics - Simulation and
    Computation, 1989.

    Citation: Meyer, Musco, Musco & Woodruff, "Hutch++: Optimal Stochastic Trace
    Estimation", arXiv 2010.09649.

    Citation: Epperly, Tropp & Webber, "XTrace: Making the most of every sample in
    stochastic trace estimation", arXiv 2301.07825.
    """
    check_square(op, "trace")
    if method not in _METHODS:
        raise ValueError(f"trace: method must be one of {_METHODS}, received {method!r}")
    minimum = 2 if method == "hutchinson" else 4
    check_count(num_matvecs, "num_matvecs", f"trace ({method})", minimum=minimum)
    if num_matvecs >= op.shape[0]:
        return _exact_trace(op)
    if method == "hutchinson":
        return _hutchinson(op, num_matvecs, key)
    if method == "hutchpp":
        return _hutchpp(op, num_matvecs, key)
    return _xtrace(op, num_matvecs // 2, key)


@eqx.filter_jit
def _diagonal(op, num_matvecs, key):
    samples = _probe_values(stochtrace.monte_carlo_diagonal(), op, key, num_matvecs)
    return mean_estimate(samples, num_matvecs)


def diagonal(op: AbstractLinearOperator, *, key: jax.Array, num_matvecs: int = 100) -> Estimate:
    r"""Randomized estimate of `diag(A)` for a square operator (Bekas, Kokiopoulou & Saad 2007).

    `mean_i v_i * (A v_i)` (element-wise) over `num_matvecs` Rademacher probes; exact
    for a diagonal `A`, unbiased in general with variance `sum_{j != i} A_ij^2` per
    entry. `stderr` (per entry) is `std(v_i * A v_i, ddof=1) / sqrt(num_matvecs)`.

    Citation: Hutchinson, "A stochastic estimator of the trace of the influence matrix for
    Laplacian smoothing splines", Communications in Statistics - Simulation and
    Computation, 1989.
    """
    check_square(op, "diagonal")
    check_count(num_matvecs, "num_matvecs", "diagonal", minimum=2)
    return _diagonal(op, num_matvecs, key)


@eqx.filter_jit
def _frobenius_sq(op, num_matvecs, key):
    integrand = stochtrace.monte_carlo_frobeniusnorm_squared()
    samples = _probe_values(integrand, op, key, num_matvecs)
    return mean_estimate(samples, num_matvecs)


def frobenius_sq(op: AbstractLinearOperator, *, key: jax.Array, num_matvecs: int = 100) -> Estimate:
    r"""Randomized estimate of `||A||_F^2 = tr(A^T A)` for any operator `A` (m x n).

    `mean_i ||A v_i||^2` over `num_matvecs` Rademacher probes `v_i` in R^n (Hutchinson
    on `A^T A`, one product each); `stderr = std(||A v_i||^2, ddof=1) / sqrt(num_matvecs)`.

    Citation: Hutchinson, "A stochastic estimator of the trace of the influence matrix for
    Laplacian smoothing splines", Communications in Statistics - Simulation and
    Computation, 1989.
    """
    check_operator(op, "frobenius_sq")
    check_count(num_matvecs, "num_matvecs", "frobenius_sq", minimum=2)
    return _frobenius_sq(op, num_matvecs, key)
