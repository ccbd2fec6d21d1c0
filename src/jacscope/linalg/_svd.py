"""Top-k singular value decomposition of a linear operator, with residuals."""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from jacscope._validation import check_count, check_rank
from jacscope.linalg._checks import check_operator
from jacscope.linalg._krylov import golub_kahan
from jacscope.operators import AbstractLinearOperator


class DecompositionInfo(NamedTuple):
    """Diagnostics of a top-k decomposition.

    **Fields:**

    - `residuals`: `(k,)` residual norms: for singular triplets
      `(||A v_i - s_i u_i||^2 + ||A^T u_i - s_i v_i||^2)^(1/2)` (one of the two terms
      is zero to rounding by construction), for eigenpairs `||A x_i - l_i x_i||`.
    - `num_matvecs`: products with the operator spent (`mv` and `rmv` together).
    """

    residuals: jax.Array
    num_matvecs: int


def default_depth(k: int, limit: int) -> int:
    """Default Krylov depth for k wanted pairs: `min(limit, 3 k + 20)`.

    One Krylov run without restarts needs room beyond k for the wanted Ritz values
    to converge when the spectrum is clustered; 3 k + 20 gives s_1..s_32 of a
    4096 x 4096 residual-network Jacobian to ~1e-6 (see benchmarks/operators.py),
    where 2 k + 20 stops at ~1e-2.
    """
    return min(limit, 3 * k + 20)


def _dtype(op: AbstractLinearOperator):
    return jnp.result_type(op.dtype)


def _residuals(op, left, values, right, chunk_size):
    """`||A v_i - s_i u_i||` from k explicit products (truthful to rounding); the other
    relation, `A^T u_i = s_i v_i`, holds to rounding by construction."""
    return jnp.linalg.norm(op.mm(right, chunk_size) - left * values, axis=0)


@eqx.filter_jit
def _svd_randomized(op, k, oversampling, power_iterations, chunk_size, key):
    m, n = op.shape
    width = min(k + oversampling, m, n)
    omega = jax.random.normal(key, (n, width), _dtype(op))
    basis, _ = jnp.linalg.qr(op.mm(omega, chunk_size))

    def power_step(_, basis):
        row_basis, _ = jnp.linalg.qr(op.rmm(basis, chunk_size))
        basis, _ = jnp.linalg.qr(op.mm(row_basis, chunk_size))
        return basis

    basis = jax.lax.fori_loop(0, power_iterations, power_step, basis)
    # B = Q^T A, formed through its transpose A^T Q = W diag(s) Z^T, so B = Z diag(s) W^T.
    w, s, zt = jnp.linalg.svd(op.rmm(basis, chunk_size), full_matrices=False)
    left, right = basis @ zt[:k].T, w[:, :k]
    residuals = _residuals(op, left, s[:k], right, chunk_size)
    num_matvecs = width * (2 * power_iterations + 2) + k
    return left, s[:k], right.T, DecompositionInfo(residuals, num_matvecs)


def _ritz_residuals(bidiag, qt, k):
    """`||A v_i - s_i u_i|| = |beta_last (e_j^T q_i)|`, from the Lanczos relation."""
    return jnp.abs(bidiag.beta_last * qt[:k, bidiag.num_steps - 1])


def _svd_lanczos(op, k, depth, key, explicit, tol):
    """Golub-Kahan-Lanczos started in the smaller of the two spaces.

    Started in R^m, the left basis spans R^m after m steps, and then
    `A^T U^T = V^T B^T` makes the singular values of `B` exactly those of `A`. Started
    in the larger space, a full-depth run would still carry the coupling
    `beta_last u_{j+1}` and `B` would miss them, so a tall operator is transposed.
    """
    if op.shape[0] <= op.shape[1]:
        return _svd_lanczos_wide(op, k, depth, key, explicit, tol)
    left, values, right_t, info = _svd_lanczos_wide(op.T, k, depth, key, explicit, tol)
    return right_t.T, values, left.T, info


@eqx.filter_jit
def _svd_lanczos_wide(op, k, depth, key, explicit, tol):
    m, n = op.shape
    key_start, key_restart = jax.random.split(key)
    u0 = jax.random.normal(key_start, (m,), _dtype(op))

    def converged(bidiag):
        _, s, qt = jnp.linalg.svd(bidiag.matrix)
        small = _ritz_residuals(bidiag, qt, k) <= tol * s[:k]
        return (bidiag.num_steps >= k) & jnp.all(small)

    stop = None if tol is None else converged
    bidiag = golub_kahan(op._mv, op._rmv, u0, n, depth, key_restart, stop)
    p, s, qt = jnp.linalg.svd(bidiag.matrix)
    left, right = bidiag.left.T @ p[:, :k], bidiag.right.T @ qt[:k].T
    if explicit:
        residuals = _residuals(op, left, s[:k], right, None)
        return left, s[:k], right.T, DecompositionInfo(residuals, 2 * bidiag.num_steps + k)
    residuals = _ritz_residuals(bidiag, qt, k)
    return left, s[:k], right.T, DecompositionInfo(residuals, 2 * bidiag.num_steps)


def svd_topk(
    op: AbstractLinearOperator,
    k: int,
    *,
    key: jax.Array,
    method: str = "randomized",
    oversampling: int = 10,
    power_iterations: int = 2,
    depth: int | None = None,
    chunk_size: int | None = None,
    residuals: str = "explicit",
    tol: float | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array, DecompositionInfo]:
    r"""The k largest singular values of `op` and their singular vectors.

    Returns `(U, S, Vt, info)` with `U` `(m, k)`, `S` `(k,)` descending, `Vt` `(k, n)`,
    so that `A ~ U diag(S) Vt` on the top-k subspace, and `info` a
    `DecompositionInfo` whose `residuals[i]` is the norm of `[A v_i - S_i u_i;
    A^T u_i - S_i v_i]`.

    Both methods are Rayleigh-Ritz projections: `S` are the singular values of
    `Q^T A P` for orthonormal `Q`, `P`, hence `S_i <= sigma_i(A)` (interlacing), and
    one of `A^T u_i = S_i v_i`, `A v_i = S_i u_i` holds to rounding by construction
    (the first for the randomized method and for Lanczos on a wide operator, the second
    for Lanczos on a tall one, which runs on `A^T`). So `[u_i; v_i] / sqrt(2)` is
    an approximate eigenvector of `[[0, A], [A^T, 0]]` with residual
    `residuals[i] / sqrt(2)`: some singular value of `A` lies within
    `residuals[i] / sqrt(2)` of `S_i` (and within `residuals[i]^2 / (2 gap)` when the
    other singular values are at least `gap` away).

    **Methods:**

    - `"randomized"`: randomized range finder (Halko, Martinsson & Tropp 2011,
      Algorithms 4.4 and 5.1): `Q = orth(A Omega)` for a Gaussian `Omega` with
      `k + oversampling` columns, `power_iterations` rounds of
      `Q <- orth(A orth(A^T Q))` (re-orthonormalised between every product), then the
      SVD of `Q^T A`. Costs `(k + oversampling)(2 power_iterations + 2) + k`
      products. Good when the spectrum decays.
    - `"lanczos"`: Golub-Kahan-Lanczos bidiagonalisation (Golub & Kahan 1965) of
      `depth` steps with full reorthogonalisation, restarted from a fresh random
      vector orthogonal to the basis on breakdown, so repeated singular values are
      found with their multiplicity, started in the smaller of R^m and R^n. Costs
      `2 depth + k` products. At `depth = min(m, n)` the Krylov space is the whole
      space and every `k` is exact to rounding. Below it the accuracy depends on the
      spectrum: on a 200 x 100 Gaussian matrix at k = 10 the default depth (50) gives
      a relative error of 5e-7 for the median start and 8e-4 for the worst of 20;
      check `residuals`, raise `depth` or pass `tol`.

    By default (`residuals="explicit"`) the residuals come from `k` explicit
    products `A v_i`, so they include the rounding error of the products. With
    `residuals="recurrence"` (Lanczos only) they are read off the Lanczos relation
    `A V^T = U^T B + beta u_{j+1} e_j^T` as `|beta (e_j^T q_i)|` for free: equal in
    exact arithmetic and, with full reorthogonalisation, to rounding, which matters
    when one product is expensive (a pass through a whole training run).

    **Arguments:**

    - `op`: any jacscope linear operator of shape `(m, n)`.
    - `k`: number of singular triplets, `1 <= k <= min(m, n)`.
    - `key`: a `jax.random` key; equal keys give identical results.
    - `method`: `"randomized"` or `"lanczos"`.
    - `oversampling`, `power_iterations`, `chunk_size`: randomized method only
      (`chunk_size` bounds how many products `op.mm` runs at once).
    - `depth`: Krylov depth of the Lanczos method, `k <= depth <= min(m, n)`;
      default `min(min(m, n), 3 k + 20)`.
    - `residuals`: `"explicit"` (k more products) or `"recurrence"` (Lanczos only).
    - `tol`: Lanczos only. Stop before `depth` steps once every Lanczos-relation
      residual is at most `tol * S_i` (checked after each step from the SVD of the
      small projected matrix, no extra products); `depth` is then the most steps
      spent, and `info.num_matvecs` says how many were.

    Works under `jax.jit` (with `k` and the options static).

    Citation: Halko, Martinsson & Tropp, "Finding structure with randomness: Probabilistic
    algorithms for constructing approximate matrix decompositions", arXiv 0909.4061.

    Citation: Golub & Kahan, "Calculating the singular values and pseudo-inverse of a
    matrix", SIAM Journal on Numerical Analysis, 1965.
    """
    check_operator(op, "svd_topk")
    check_rank(k, op.shape, "svd_topk")
    k = int(k)
    if residuals not in ("explicit", "recurrence"):
        raise ValueError(
            f"svd_topk: residuals must be 'explicit' or 'recurrence', received {residuals!r}"
        )
    if method == "randomized":
        if tol is not None:
            raise ValueError("svd_topk: tol applies to method='lanczos'")
        if residuals != "explicit":
            raise ValueError("svd_topk: residuals='recurrence' needs method='lanczos'")
        check_count(oversampling, "oversampling", "svd_topk", minimum=0)
        check_count(power_iterations, "power_iterations", "svd_topk", minimum=0)
        if chunk_size is not None:
            check_count(chunk_size, "chunk_size", "svd_topk", minimum=1)
        return _svd_randomized(op, k, oversampling, power_iterations, chunk_size, key)
    if method == "lanczos":
        limit = min(op.shape)
        depth = default_depth(k, limit) if depth is None else depth
        check_count(depth, "depth", "svd_topk", minimum=k, maximum=limit)
        if tol is not None and not (isinstance(tol, int | float) and tol > 0):
            raise ValueError(f"svd_topk: tol must be a positive number, received {tol!r}")
        tol = None if tol is None else float(tol)
        return _svd_lanczos(op, k, depth, key, residuals == "explicit", tol)
    raise ValueError(f"svd_topk: method must be 'randomized' or 'lanczos', received {method!r}")
