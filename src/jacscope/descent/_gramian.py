"""The Gramian of a Jacobian, and its normalised, regularised form the solvers need."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jacscope.descent._checks import check_gramian, check_matrix


def gramian(J: jax.Array) -> jax.Array:
    """The Gramian G = J J^T of the rows of a Jacobian.

    **Arguments:**

    - `J`: `(m, n)` Jacobian, one gradient per row.

    **Returns:** the `(m, m)` symmetric positive semi-definite matrix J J^T.

    **Raises:** `ValueError` for a `J` that is not a non-empty matrix or (outside a
    trace) holds non-finite values.
    """
    J = check_matrix(J, "gramian")
    return J @ J.T


def regularize_gramian(G: jax.Array, norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> jax.Array:
    r"""G / tr(G) + reg_eps I: a Gramian scaled to unit trace and made positive definite.

    tr(G) = ||J||_F^2, so the first term is the Gramian of J / ||J||_F; when
    tr(G) <= `norm_eps` it is replaced by 0 (a stationary Jacobian). Adding `reg_eps`
    I makes the dual-cone programs strictly convex, with a unique, differentiable
    solution, also when G is singular (m > n, dependent rows). The defaults are those
    of TorchJD, so that UPGrad and DualProj give the same weights.

    **Arguments:**

    - `G`: `(m, m)` Gramian.
    - `norm_eps`: traces at most this are treated as zero.
    - `reg_eps`: the multiple of the identity added.

    **Returns:** the `(m, m)` regularised Gramian.

    **Raises:** `ValueError` for a `G` that is not square or holds non-finite values.
    """
    G = check_gramian(G, "regularize_gramian")
    trace = jnp.trace(G)
    big = trace > norm_eps
    scaled = jnp.where(big, G / jnp.where(big, trace, 1), 0)
    return scaled + reg_eps * jnp.eye(G.shape[0], dtype=G.dtype)
