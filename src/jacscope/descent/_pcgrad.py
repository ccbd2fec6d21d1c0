"""PCGrad: each gradient projected off the gradients it conflicts with, in turn."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jacscope.descent._checks import check_gramian, check_matrix


def projection_orders(m: int, key: jax.Array | None) -> jax.Array:
    """`(m, m)`: row i is the order in which gradient i visits the others, a random
    permutation per row drawn from `key`, or 0, 1, ..., m - 1 for `key=None`."""
    if key is None:
        return jnp.tile(jnp.arange(m), (m, 1))
    return jax.vmap(lambda k: jax.random.permutation(k, m))(jax.random.split(key, m))


def pcgrad_weights(G: jax.Array, key: jax.Array | None = None) -> jax.Array:
    r"""The weights of PCGrad, computed on the Gramian.

    For each i, starting from c = e_i (the gradient g_i), and for each j != i in turn:
    if (G c)_j = g_j^T (J^T c) < 0, then c_j <- c_j - (G c)_j / G_jj (the projection of
    J^T c onto the normal plane of g_j). The weights are sum_i c. The order of the j
    is a random permutation per i drawn from `key` (the paper's algorithm), or, with
    `key=None`, the fixed order 0, 1, ..., m - 1 (deterministic). A row with G_jj = 0
    is skipped. With two rows the order does not matter, and PCGrad equals UPGrad with
    the preference vector (1, 1) and no regularisation.

    **Arguments:**

    - `G`: `(m, m)` Gramian J J^T.
    - `key`: a PRNG key for the orders, or `None`.

    **Returns:** `(m,)` weights.

    **Raises:** `ValueError` for a `G` that is not square or non-finite.

    Citation: Yu, Kumar, Gupta, Levine, Hausman & Finn, "Gradient Surgery for Multi-Task Learning", NeurIPS 2020.
    """  # noqa: E501
    G = check_gramian(G, "pcgrad_weights")
    m = G.shape[0]
    orders = projection_orders(m, key)

    def one(i, order):
        def step(t, c):
            j = order[t]
            inner = G[j] @ c
            ok = (j != i) & (inner < 0) & (G[j, j] > 0)
            return c.at[j].add(jnp.where(ok, -inner / jnp.where(ok, G[j, j], 1), 0))

        return jax.lax.fori_loop(0, m, step, jnp.zeros((m,), G.dtype).at[i].set(1))

    return jnp.sum(jax.vmap(one)(jnp.arange(m), orders), axis=0)


def pcgrad(J: jax.Array, key: jax.Array | None = None) -> jax.Array:
    r"""PCGrad: w^T J with w = `pcgrad_weights(J J^T, key)`.

    **Arguments:**

    - `J`: `(m, n)` Jacobian, one gradient per row.
    - `key`: a PRNG key for the projection orders, or `None` for the fixed order.

    **Returns:** the `(n,)` update direction.

    **Raises:** `ValueError` for a `J` that is not a non-empty matrix or non-finite.

    Citation: Yu, Kumar, Gupta, Levine, Hausman & Finn, "Gradient Surgery for Multi-Task Learning", NeurIPS 2020.
    """  # noqa: E501
    J = check_matrix(J, "pcgrad")
    return pcgrad_weights(J @ J.T, key) @ J
