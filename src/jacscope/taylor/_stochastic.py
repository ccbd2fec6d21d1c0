r"""Stochastic Taylor derivative estimators (STDE): unbiased estimates of differential
operators from a few random univariate jets, with the standard error of their spread.

Two estimators, chosen by a small validated object:

- `Sparse(subset_size=B)`: the exact operator is a sum of n terms a_r = w_r y_k(v_r)
  over its directions (its plan: the coordinates for the Laplacian, d^2 directions for
  the biharmonic, ...); one sample is (n / B) times the sum over B terms drawn
  uniformly without replacement. Unbiased, and for a population variance
  sigma^2 = (1/n) sum_r (a_r - L/n)^2 its variance is

      Var = (n^2 / B) * (n - B) / (n - 1) * sigma^2     (0 at B = n).

  Cost: B k-jets per sample.
- `Dense(tangent=...)`: one sample is a function of the jets along random tangents
  v (Rademacher or Gaussian) whose expectation is the operator: for the Laplacian
  D^2 f[v, v] (Hutchinson's trace of the Hessian by 2-jets); for other operators see
  each function, which states the variance of its sample.

Every estimate is the mean of `num_samples` independent samples, with
`stderr = std(samples, ddof=1) / sqrt(num_samples)`. For f: R^d -> R^m each output
gets its own estimate and standard error (the samples share tangents).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jacscope._validation import check_count
from jacscope.taylor._jets import EYE, validate_output, validate_point
from jacscope.taylor._operators import (
    Plan,
    biharmonic_plan,
    laplacian_plan,
    operator_plans,
    parse_terms,
    per_direction,
    trace_weighted_plan,
)

TANGENTS = ("rademacher", "gaussian")


class TaylorEstimate(NamedTuple):
    """A stochastic Taylor-mode estimate.

    **Fields:**

    - `value`: the mean of the samples (the operator's shape: `()`, `(m,)`, `(d,)` ...).
    - `stderr`: `std(samples, ddof=1) / sqrt(num_samples)`, of `value`'s shape.
    - `num_samples`: how many independent samples were averaged.
    """

    value: jax.Array
    stderr: jax.Array
    num_samples: int


@dataclasses.dataclass(frozen=True)
class Sparse:
    """STDE's sparse estimator: per sample, `subset_size` of the exact operator's terms
    drawn uniformly without replacement, rescaled by n / `subset_size`."""

    subset_size: int = 1

    def __post_init__(self):
        check_count(self.subset_size, "subset_size", "Sparse")


@dataclasses.dataclass(frozen=True)
class Dense:
    """STDE's dense estimator: random tangents, `"rademacher"` (entries +-1) or
    `"gaussian"` (standard normal)."""

    tangent: str = "rademacher"

    def __post_init__(self):
        if self.tangent not in TANGENTS:
            raise ValueError(f"Dense: tangent must be one of {TANGENTS}, got {self.tangent!r}")


def _check(estimator, num_samples, caller, gaussian_only=False):
    if not isinstance(estimator, Sparse | Dense):
        raise ValueError(
            f"{caller}: estimator must be Sparse(...) or Dense(...), got {estimator!r}"
        )
    check_count(num_samples, "num_samples", caller, minimum=2)
    if gaussian_only and isinstance(estimator, Dense) and estimator.tangent != "gaussian":
        raise ValueError(
            f"{caller}: the dense estimator needs Dense('gaussian') tangents (Rademacher "
            "tangents have the wrong fourth moments for this operator)"
        )


def _summary(samples, num):
    """Mean and standard error over the leading (sample) axis."""
    n = jnp.asarray(num, samples.dtype)
    return TaylorEstimate(jnp.mean(samples, 0), jnp.std(samples, 0, ddof=1) / jnp.sqrt(n), num)


def _tangents(key, shape, kind, dtype):
    if kind == "rademacher":
        return jax.random.rademacher(key, shape, dtype)
    return jax.random.normal(key, shape, dtype)


def _subsets(key, n, size, num):
    """`(num, size)` indices, each row a uniform subset of range(n) without replacement."""
    keys = jax.random.split(key, num)
    return jax.vmap(lambda k: jax.random.choice(k, n, (size,), replace=False))(keys)


def _plan_rows(plan: Plan, index, dtype):
    if plan.directions is EYE:
        return jax.nn.one_hot(index, plan.size, dtype=dtype)
    return jnp.asarray(plan.directions, dtype)[index]


def _sparse_samples(f, x, plan: Plan, size, num, key, caller):
    """`(num, *out)` samples (n / B) sum_{r in S} w_r y_k(v_r)."""
    n = plan.size
    if size > n:
        raise ValueError(f"{caller}: subset_size={size} exceeds the operator's {n} terms")
    index = _subsets(key, n, size, num).reshape(-1)
    rows = _plan_rows(plan, index, x.dtype)
    _, series = per_direction(f, x, rows, plan.order, caller)
    top = series[-1]  # (num * size, *out)
    w = jnp.asarray(plan.weights, x.dtype)[index].reshape((-1,) + (1,) * (top.ndim - 1))
    terms = (w * top).reshape(num, size, *top.shape[1:])
    return (n / size) * jnp.sum(terms, axis=1)


def _dense_jets(f, x, rows, order, caller):
    _, series = per_direction(f, x, rows, order, caller)
    return series


def _prepare(f, x, caller):
    x = validate_point(x, caller)
    validate_output(f, x, caller)
    return x


def stde_laplacian(
    f: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    *,
    key: jax.Array,
    num_samples: int = 64,
    estimator: Sparse | Dense = Dense(),
) -> TaylorEstimate:
    r"""An unbiased estimate of the Laplacian Delta f(x) = tr(H), H = D^2 f(x).

    - `Sparse(B)`: (d / B) sum_{i in S} d^2 f / dx_i^2 over a random subset S of B
      coordinates; variance (d^2 / B) (d - B) / (d - 1) sigma^2 with sigma^2 the
      population variance of the diagonal H_11, ..., H_dd. B 2-jets per sample.
    - `Dense`: D^2 f[v, v] = 2 y_2(v), Hutchinson's estimator by one 2-jet per sample;
      variance 2 sum_{i != j} H_ij^2 for Rademacher v, 2 ||H||_F^2 for Gaussian v.

    **Arguments:**

    - `f`, `x`: as for `laplacian`.
    - `key`: a PRNG key (explicit: the samples are a function of it).
    - `num_samples`: N >= 2 independent samples.
    - `estimator`: `Sparse(subset_size)` or `Dense(tangent)`.

    **Returns:** a `TaylorEstimate` (the variance of `value` is the above over N).

    **Raises:** `ValueError` for fewer than 2 samples, a subset larger than d, an
    unknown estimator, and as `laplacian`.

    Citation: Shi, Hu, Lin & Kawaguchi, "Stochastic Taylor Derivative Estimator: Efficient amortization for arbitrary differential operators", NeurIPS 2024.
    """  # noqa: E501
    caller = "stde_laplacian"
    _check(estimator, num_samples, caller)
    x = _prepare(f, x, caller)
    d = x.shape[0]
    if isinstance(estimator, Sparse):
        samples = _sparse_samples(
            f, x, laplacian_plan(d), estimator.subset_size, num_samples, key, caller
        )
    else:
        v = _tangents(key, (num_samples, d), estimator.tangent, x.dtype)
        samples = 2.0 * _dense_jets(f, x, v, 2, caller)[1]
    return _summary(samples, num_samples)


def stde_hessian_diagonal(
    f: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    *,
    key: jax.Array,
    num_samples: int = 64,
    estimator: Sparse | Dense = Sparse(),
) -> TaylorEstimate:
    r"""An unbiased estimate of diag(H), H = D^2 f(x), entry by entry.

    - `Sparse(B)`: entry i is (d / B) 1[i in S] H_ii for a random subset S of B
      coordinates: variance H_ii^2 (d / B - 1). B 2-jets per sample.
    - `Dense('gaussian')`: entry i is y_2(v) He_2(v_i) = D^2 f[v, v] (v_i^2 - 1) / 2 for
      v ~ N(0, I) (one 2-jet per sample gives every entry): E = H_ii because
      E[v_j v_k (v_i^2 - 1)] = 2 [j = k = i]. Variance, with a = H_ii, b the rest of
      row i, C the Hessian without row and column i:
      18.5 a^2 + 10 ||b||^2 + (tr C)^2 / 2 + ||C||_F^2 + 5 a tr C.
      Rademacher tangents cannot work (v_i^2 = 1) and are refused.

    **Arguments:** as `stde_laplacian`.

    **Returns:** a `TaylorEstimate` of shape `(d,)`, or `(m, d)` for m outputs.

    **Raises:** as `stde_laplacian`.

    Citation: Shi, Hu, Lin & Kawaguchi, "Stochastic Taylor Derivative Estimator: Efficient amortization for arbitrary differential operators", NeurIPS 2024.
    """  # noqa: E501
    caller = "stde_hessian_diagonal"
    _check(estimator, num_samples, caller, gaussian_only=True)
    x = _prepare(f, x, caller)
    d = x.shape[0]
    if isinstance(estimator, Sparse):
        size = estimator.subset_size
        if size > d:
            raise ValueError(f"{caller}: subset_size={size} exceeds the {d} coordinates")
        index = _subsets(key, d, size, num_samples)  # (N, B)
        rows = jax.nn.one_hot(index.reshape(-1), d, dtype=x.dtype)
        top = _dense_jets(f, x, rows, 2, caller)[1]  # (N B, *out)
        top = jnp.moveaxis(top.reshape(num_samples, size, *top.shape[1:]), 1, -1)  # (N, *out, B)
        scatter = jax.nn.one_hot(index, d, dtype=x.dtype)  # (N, B, d)
        samples = (2.0 * d / size) * jnp.einsum("n...b,nbd->n...d", top, scatter)
    else:
        v = _tangents(key, (num_samples, d), "gaussian", x.dtype)
        top = _dense_jets(f, x, v, 2, caller)[1]  # (N, *out)
        hermite = (v**2 - 1.0).reshape(num_samples, *((1,) * (top.ndim - 1)), d)
        samples = top[..., None] * hermite
    return _summary(samples, num_samples)


def stde_hessian_trace_weighted(
    f: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    A: jax.Array,
    *,
    key: jax.Array,
    num_samples: int = 64,
    estimator: Sparse | Dense = Dense(),
) -> TaylorEstimate:
    r"""An unbiased estimate of tr(A H), H = D^2 f(x), for any square A.

    - `Sparse(B)`: over the 2d polarisation terms of the exact operator,
      y_2(e_i + A_i) / 2 and -y_2(e_i - A_i) / 2 (A_i the i-th row of A); variance (n^2 / B) (n - B) / (n - 1) sigma^2 with n = 2d
      and sigma^2 the population variance of those 2d terms. B 2-jets per sample.
    - `Dense`: u^T A H u = D^2 f[A^T u, u] = (y_2(A^T u + u) - y_2(A^T u - u)) / 2, two
      2-jets per sample. With S = (A H + (A H)^T) / 2, variance
      2 (||S||_F^2 - sum_i S_ii^2) for Rademacher u, 2 ||S||_F^2 for Gaussian u.

    **Arguments:** as `stde_laplacian`, and `A`, `(d, d)`.

    **Returns:** a `TaylorEstimate` of shape `()` or `(m,)`.

    **Raises:** as `stde_laplacian`, and `ValueError` for an `A` that is not `(d, d)`.

    Citation: Shi, Hu, Lin & Kawaguchi, "Stochastic Taylor Derivative Estimator: Efficient amortization for arbitrary differential operators", NeurIPS 2024.
    """  # noqa: E501
    caller = "stde_hessian_trace_weighted"
    _check(estimator, num_samples, caller)
    x = _prepare(f, x, caller)
    d = x.shape[0]
    A = jnp.asarray(A, x.dtype)
    if A.shape != (d, d):
        raise ValueError(f"{caller}: A must be ({d}, {d}), got shape {A.shape}")
    if isinstance(estimator, Sparse):
        samples = _sparse_samples(
            f, x, trace_weighted_plan(A), estimator.subset_size, num_samples, key, caller
        )
    else:
        u = _tangents(key, (num_samples, d), estimator.tangent, x.dtype)
        a = u @ A  # rows A^T u
        top = _dense_jets(f, x, jnp.concatenate([a + u, a - u]), 2, caller)[1]
        samples = (top[:num_samples] - top[num_samples:]) / 2.0
    return _summary(samples, num_samples)


def stde_biharmonic(
    f: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    *,
    key: jax.Array,
    num_samples: int = 64,
    estimator: Sparse | Dense = Dense("gaussian"),
) -> TaylorEstimate:
    r"""An unbiased estimate of the biharmonic Delta^2 f(x) = sum_{i,j} T_iijj, T = D^4 f(x).

    - `Sparse(B)`: over the d^2 terms of `biharmonic`'s exact plan
      ((24 - 8 (d - 1)) y_4(e_i), 4 y_4(e_i + e_j), 4 y_4(e_i - e_j)); variance
      (n^2 / B) (n - B) / (n - 1) sigma^2, n = d^2, sigma^2 their population variance.
      B 4-jets per sample.
    - `Dense('gaussian')`: T[v, v, v, v] / 3 = 8 y_4(v), v ~ N(0, I) (Isserlis: E T[v^4]
      = 3 Delta^2 f); one 4-jet per sample. Variance 8 ||P||_F^2 + (8/3) ||T||_F^2 with
      P_kl = sum_i T_iikl, the Hessian of Delta f. Rademacher tangents are refused
      (their fourth moments give sum_i T_iiii + 3 sum_{i != j} T_iijj instead).

    **Arguments:** as `stde_laplacian`.

    **Returns:** a `TaylorEstimate` of shape `()` or `(m,)`.

    **Raises:** as `stde_laplacian`.

    Citation: Shi, Hu, Lin & Kawaguchi, "Stochastic Taylor Derivative Estimator: Efficient amortization for arbitrary differential operators", NeurIPS 2024.
    """  # noqa: E501
    caller = "stde_biharmonic"
    _check(estimator, num_samples, caller, gaussian_only=True)
    x = _prepare(f, x, caller)
    d = x.shape[0]
    if isinstance(estimator, Sparse):
        samples = _sparse_samples(
            f, x, biharmonic_plan(d), estimator.subset_size, num_samples, key, caller
        )
    else:
        v = _tangents(key, (num_samples, d), "gaussian", x.dtype)
        samples = 8.0 * _dense_jets(f, x, v, 4, caller)[3]
    return _summary(samples, num_samples)


def _hermite(n: int, v):
    """The probabilists' Hermite polynomial He_n at v (He_0 = 1, He_1 = v)."""
    previous, current = jnp.ones_like(v), v
    if n == 0:
        return previous
    for k in range(1, n):
        previous, current = current, v * current - k * previous
    return current


def stde_differential_operator(
    f: Callable[[jax.Array], jax.Array],
    terms: Mapping[tuple[int, ...], float] | Sequence[tuple[float, tuple[int, ...]]],
    *,
    num_samples: int = 64,
    estimator: Sparse | Dense = Sparse(),
) -> Callable[[jax.Array, jax.Array], TaylorEstimate]:
    r"""An unbiased estimator of L f = sum_alpha c_alpha d^alpha f (terms as for
    `differential_operator`), as a function `(x, key) -> TaylorEstimate`.

    - `Sparse(B)`: per order k of L, over the n_k polarisation terms of the exact plan,
      B drawn uniformly per sample (B k-jets per order; orders sampled independently,
      the constant term exact); the variance is the sum over the orders of
      (n_k^2 / B) (n_k - B) / (n_k - 1) sigma_k^2, sigma_k^2 the population variance of
      order k's terms. A `subset_size` above an order's n_k takes all its terms.
    - `Dense('gaussian')`: sum_k y_k(v) h_k(v), h_k(v) = sum_{|alpha| = k} c_alpha
      He_alpha(v) (He_alpha = prod_i He_{alpha_i}(v_i), probabilists' Hermite), one
      K-jet per sample for K the highest order. Unbiased for any operator: for
      homogeneous p(v) = D^k f[v^k] = k! y_k(v) of degree k = |alpha|, Hermite
      orthogonality under N(0, I) gives E[p(v) He_alpha(v)] = k! d^alpha f. Variance
      E[(sum_k y_k(v) h_k(v))^2] - (L f - c_0 f)^2 (an expectation of a polynomial of v
      of degree 4K: exact by Gauss-Hermite quadrature of 2K + 1 points per axis).
      Rademacher tangents are refused.

    **Arguments:** `f`, `terms` as for `differential_operator`; `num_samples`: N >= 2;
    `estimator`.

    **Returns:** `(x, key) -> TaylorEstimate`; jit and vmap it.

    **Raises:** as `differential_operator` and `stde_laplacian`.

    Citation: Shi, Hu, Lin & Kawaguchi, "Stochastic Taylor Derivative Estimator: Efficient amortization for arbitrary differential operators", NeurIPS 2024.
    """  # noqa: E501
    caller = "stde_differential_operator"
    _check(estimator, num_samples, caller, gaussian_only=True)
    parsed = parse_terms(terms, caller)
    d = len(next(iter(parsed)))
    constant, plans = operator_plans(parsed)
    top_order = max((sum(a) for a in parsed), default=0)

    def apply(x, key):
        x = _prepare(f, x, caller)
        if x.shape[0] != d:
            raise ValueError(f"{caller}: x has length {x.shape[0]}, the multi-indices {d}")
        samples = 0.0
        if isinstance(estimator, Sparse):
            keys = jax.random.split(key, max(len(plans), 1))
            for plan, k in zip(plans, keys, strict=False):
                size = min(estimator.subset_size, plan.size)
                samples = samples + _sparse_samples(f, x, plan, size, num_samples, k, caller)
        elif top_order > 0:
            v = _tangents(key, (num_samples, d), "gaussian", x.dtype)
            series = _dense_jets(f, x, v, top_order, caller)
            for alpha, c in parsed.items():
                k = sum(alpha)
                if k == 0:
                    continue
                weight = c * jnp.prod(
                    jnp.stack([_hermite(a, v[:, i]) for i, a in enumerate(alpha)]), axis=0
                )
                top = series[k - 1]
                samples = samples + weight.reshape((-1,) + (1,) * (top.ndim - 1)) * top
        base = f(x)
        samples = jnp.broadcast_to(jnp.asarray(samples, x.dtype), (num_samples, *jnp.shape(base)))
        estimate = _summary(samples, num_samples)
        if constant != 0.0:
            estimate = estimate._replace(value=estimate.value + constant * base)
        return estimate

    return apply
