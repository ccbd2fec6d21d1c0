"""IMTL-G: the combination with equal projections onto every gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jacscope.descent._checks import check_gramian, check_matrix


def imtl_g_weights(G: jax.Array) -> jax.Array:
    r"""The weights of IMTL-G: v = G^+ d, d_i = ||g_i|| = G_ii^(1/2), w = v / (1^T v).

    J^T v has the same inner product with every unit gradient g_i / ||g_i||, and w
    rescales v to sum to 1 (w = 0 when |1^T v| < 1e-12). G^+ is the pseudo-inverse.

    **Arguments:**

    - `G`: `(m, m)` Gramian J J^T.

    **Returns:** `(m,)` weights.

    **Raises:** `ValueError` for a `G` that is not square or non-finite.

    Citation: Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial Multi-task Learning", ICLR 2021.
    """  # noqa: E501
    G = check_gramian(G, "imtl_g_weights")
    d = jnp.sqrt(jnp.clip(jnp.diagonal(G), 0))
    v = jnp.linalg.pinv(G, hermitian=True) @ d
    total = jnp.sum(v)
    small = jnp.abs(total) < 1e-12
    return jnp.where(small, 0, v / jnp.where(small, 1, total))


def imtl_g(J: jax.Array) -> jax.Array:
    r"""IMTL-G: w^T J with w = `imtl_g_weights(J J^T)`.

    **Arguments:**

    - `J`: `(m, n)` Jacobian, one gradient per row.

    **Returns:** the `(n,)` update direction.

    **Raises:** `ValueError` for a `J` that is not a non-empty matrix or non-finite.

    Citation: Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial Multi-task Learning", ICLR 2021.
    """  # noqa: E501
    J = check_matrix(J, "imtl_g")
    return imtl_g_weights(J @ J.T) @ J
