"""Lanczos and Golub-Kahan-Lanczos iterations, fully reorthogonalised, restarted on breakdown.

Both iterations keep every basis vector and orthogonalise each new one against all
previous ones twice ("twice is enough", classical Gram-Schmidt), so the bases stay
orthonormal to working precision and no spurious copies of converged Ritz values
appear.

**Breakdown.** When the new direction vanishes (its norm drops below
`10 eps sqrt(dim)` times the largest coefficient met so far, i.e. to rounding level),
the Krylov space is invariant. The iteration then continues from a fresh random
vector orthogonal to the basis and records a zero coupling coefficient, so the
projected matrix is block diagonal. One starting vector spans at most one
direction of each eigenspace; the restarts are what let repeated eigen/singular
values (identity-plus-low-rank spectra, exactly low-rank matrices) appear with
their multiplicity. Quadrature weights `(e_1^T y)^2` of the later blocks are zero,
as they should be, so stochastic Lanczos quadrature is unaffected.

matfree's `tridiag_sym` and `bidiag` implement the same recurrences but divide by
the vanishing norm on breakdown, which is why jacscope carries its own loops. The
recurrences are those of Golub & Van Loan (4th edition), sections 10.1 and 10.4.

Citation: Golub & Van Loan, "Matrix Computations", Johns Hopkins University Press, 2013.

Citation: Golub & Kahan, "Calculating the singular values and pseudo-inverse of a matrix",
SIAM Journal on Numerical Analysis, 1965.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Tridiagonal(NamedTuple):
    """Symmetric Lanczos: `A Q^T = Q^T T + beta_last q_{j+1} e_j^T`, `Q` orthonormal rows.

    `basis` is `(depth, n)` (rows q_1..q_j), `diag` `(depth,)`, `offdiag` `(depth - 1,)`
    (zero where the iteration restarted), `beta_last` the norm of the final remainder.
    """

    basis: jax.Array
    diag: jax.Array
    offdiag: jax.Array
    beta_last: jax.Array


class Bidiagonal(NamedTuple):
    """Golub-Kahan-Lanczos started in the output space R^m of `A`.

    After `num_steps = j` steps, with `B` the `(j, j)` lower-bidiagonal matrix
    (`alphas` on the diagonal, `betas[:j-1]` below it), `U` `(j, m)` and `V` `(j, n)`
    with orthonormal rows:

        A^T U^T = V^T B^T                      (exact up to rounding)
        A V^T   = U^T B + beta_last u_{j+1} e_j^T

    so a singular triplet `B q = s p` gives `u = U^T p`, `v = V^T q` with
    `A^T u = s v` and `||A v - s u|| = |beta_last q_j|`. The arrays have room for the
    requested depth; rows and entries beyond `num_steps` (an early stop) are zero.
    """

    left: jax.Array
    right: jax.Array
    alphas: jax.Array
    betas: jax.Array
    num_steps: jax.Array

    @property
    def matrix(self) -> jax.Array:
        """The lower-bidiagonal projection `B = U A V^T`, zero-padded to the full depth."""
        return _bidiagonal_matrix(self.alphas, self.betas, self.num_steps)

    @property
    def beta_last(self) -> jax.Array:
        """The norm of the remainder after the last step, coupling `B` to `u_{j+1}`."""
        return self.betas[self.num_steps - 1]


def _bidiagonal_matrix(alphas, betas, num_steps):
    inside = jnp.arange(betas.shape[0] - 1) < num_steps - 1
    return jnp.diag(alphas) + jnp.diag(jnp.where(inside, betas[:-1], 0), -1)


def _orthogonalise(basis: jax.Array, x: jax.Array) -> jax.Array:
    """Remove from `x` its components along the rows of `basis` (two passes)."""
    x = x - basis.T @ (basis @ x)
    return x - basis.T @ (basis @ x)


def _safe_normalise(x: jax.Array) -> jax.Array:
    norm = jnp.linalg.norm(x)
    return x / jnp.where(norm > 0, norm, 1)


def _fresh_direction(basis: jax.Array, seed: jax.Array, shift) -> jax.Array:
    """A unit vector orthogonal to the rows of `basis` (zero rows are ignored).

    It is the Gaussian vector `seed` cyclically shifted by `shift`: the shifts of a
    Gaussian vector are linearly independent with probability one, so every restart
    brings a new direction, and no random numbers are drawn inside the loop.
    """
    return _safe_normalise(_orthogonalise(basis, jnp.roll(seed, shift)))


def _breakdown_tol(dtype, dim: int) -> float:
    return 10.0 * float(jnp.finfo(dtype).eps) * dim**0.5


def _next_direction(r, basis, seed, shift, scale, tol):
    """Normalise `r`, or restart from a fresh orthogonal direction if it has vanished.

    Returns the new unit vector and the coefficient to record (0 after a restart).
    """
    norm = jnp.linalg.norm(r)
    broke = norm <= tol * scale
    direction = jax.lax.cond(
        broke,
        lambda: _fresh_direction(basis, seed, shift),
        lambda: r / jnp.where(broke, 1, norm),
    )
    return direction, jnp.where(broke, jnp.zeros_like(norm), norm)


def lanczos(matvec: Callable, v0: jax.Array, depth: int, key: jax.Array) -> Tridiagonal:
    """`depth` steps of symmetric Lanczos on `matvec` from `v0` (need not be normalised).

    Uses exactly `depth` products with the (assumed symmetric) operator.
    """
    n = v0.shape[0]
    dtype = v0.dtype
    tol = _breakdown_tol(dtype, n)
    seed = _safe_normalise(jax.random.normal(key, (n,), dtype))

    def step(i, state):
        basis, diag, betas, q, q_prev, beta_prev, scale = state
        basis = basis.at[i].set(q)
        w = matvec(q) - beta_prev * q_prev
        alpha = jnp.vdot(q, w)
        w = _orthogonalise(basis, w - alpha * q)
        scale = jnp.maximum(scale, jnp.maximum(jnp.abs(alpha), jnp.linalg.norm(w)))
        q_next, beta = _next_direction(w, basis, seed, i, scale, tol)
        return (
            basis,
            diag.at[i].set(alpha),
            betas.at[i].set(beta),
            q_next,
            q,
            beta,
            scale,
        )

    zero = jnp.zeros((), dtype)
    init = (
        jnp.zeros((depth, n), dtype),
        jnp.zeros((depth,), dtype),
        jnp.zeros((depth,), dtype),
        _safe_normalise(v0.astype(dtype)),
        jnp.zeros((n,), dtype),
        zero,
        zero,
    )
    basis, diag, betas, *_ = jax.lax.fori_loop(0, depth, step, init)
    return Tridiagonal(basis=basis, diag=diag, offdiag=betas[:-1], beta_last=betas[-1])


def golub_kahan(
    mv: Callable,
    rmv: Callable,
    u0: jax.Array,
    n: int,
    depth: int,
    key: jax.Array,
    stop: Callable[[Bidiagonal], jax.Array] | None = None,
) -> Bidiagonal:
    """At most `depth` steps of Golub-Kahan-Lanczos bidiagonalisation from `u0` in R^m.

    `mv` maps R^n -> R^m and `rmv` R^m -> R^n; each step uses one product with each.
    `stop`, if given, is called on the bidiagonalisation so far after every step and
    ends the iteration when it returns True (a traced boolean).
    """
    m = u0.shape[0]
    dtype = u0.dtype
    tol = _breakdown_tol(dtype, max(m, n))
    key_u, key_v = jax.random.split(key)
    seed_u = _safe_normalise(jax.random.normal(key_u, (m,), dtype))
    seed_v = _safe_normalise(jax.random.normal(key_v, (n,), dtype))

    def step(state):
        bidiag, u, v_prev, beta_prev, scale, _ = state
        left, right, alphas, betas, i = bidiag
        left = left.at[i].set(u)
        r = _orthogonalise(right, rmv(u) - beta_prev * v_prev)
        scale = jnp.maximum(scale, jnp.linalg.norm(r))
        v, alpha = _next_direction(r, right, seed_v, i, scale, tol)
        right = right.at[i].set(v)
        p = _orthogonalise(left, mv(v) - alpha * u)
        scale = jnp.maximum(scale, jnp.linalg.norm(p))
        u_next, beta = _next_direction(p, left, seed_u, i, scale, tol)
        bidiag = Bidiagonal(left, right, alphas.at[i].set(alpha), betas.at[i].set(beta), i + 1)
        done = jnp.asarray(False) if stop is None else stop(bidiag)
        return bidiag, u_next, v, beta, scale, done

    def more(state):
        bidiag, *_, done = state
        return (bidiag.num_steps < depth) & jnp.logical_not(done)

    zero = jnp.zeros((), dtype)
    start = Bidiagonal(
        left=jnp.zeros((depth, m), dtype),
        right=jnp.zeros((depth, n), dtype),
        alphas=jnp.zeros((depth,), dtype),
        betas=jnp.zeros((depth,), dtype),
        num_steps=jnp.zeros((), jnp.int32),
    )
    init = (
        start,
        _safe_normalise(u0.astype(dtype)),
        jnp.zeros((n,), dtype),
        zero,
        zero,
        jnp.asarray(False),
    )
    return jax.lax.while_loop(more, step, init)[0]
