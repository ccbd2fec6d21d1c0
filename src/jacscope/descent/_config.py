"""ConFIG: the direction with prescribed inner products with the unit gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jacscope.descent._checks import check_matrix, check_weights


def config(J: jax.Array, pref: jax.Array | None = None) -> jax.Array:
    r"""ConFIG (not a weighting of the Gramian).

    With the unit rows u_i = g_i / ||g_i|| (0 for a zero row) stacked in N, the
    direction d = N^+ p (so N d = p where solvable: inner product p_i with each unit
    gradient; p = 1 by default), normalised, and scaled by the sum of the projections
    of the gradients on it: (sum_i g_i^T d_hat) d_hat.

    **Arguments:**

    - `J`: `(m, n)` Jacobian, one gradient per row.
    - `pref`: `(m,)` target inner products p (default all ones).

    **Returns:** the `(n,)` update direction.

    **Raises:** `ValueError` for a `J` that is not a non-empty matrix or non-finite, or
    a `pref` not of shape `(m,)`.

    Citation: Liu, Chu, Thuerey, "ConFIG: Towards Conflict-free Training of Physics Informed Neural Networks", ICLR 2025.
    """  # noqa: E501
    J = check_matrix(J, "config")
    m = J.shape[0]
    p = jnp.ones((m,), J.dtype) if pref is None else check_weights(pref, m, "pref", "config")
    norms = jnp.linalg.norm(J, axis=1, keepdims=True)
    units = jnp.where(norms > 0, J / jnp.where(norms > 0, norms, 1), 0)
    direction = jnp.linalg.pinv(units) @ p.astype(J.dtype)
    length = jnp.linalg.norm(direction)
    unit = jnp.where(length > 0, direction / jnp.where(length > 0, length, 1), 0)
    return jnp.sum(J @ unit) * unit
