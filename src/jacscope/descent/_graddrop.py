"""GradDrop: a random sign chosen per coordinate, and the rows of the other sign dropped."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jacscope.descent._checks import check_matrix, check_weights


def graddrop(J: jax.Array, key: jax.Array, leak: jax.Array | None = None) -> jax.Array:
    r"""GradDrop (not a weighting of the Gramian).

    Per coordinate k, the positive-sign purity P_k = (1 + sum_i J_ik / sum_i |J_ik|) / 2
    and a uniform draw U_k: the positive entries J_ik are kept where P_k > U_k and the
    negative ones where P_k < U_k; the result is sum_i (l_i + (1 - l_i) M_ik) J_ik, with
    M the mask kept and l the leak (default 0). A column of zeros gives 0.

    **Arguments:**

    - `J`: `(m, n)` Jacobian, one gradient per row.
    - `key`: a PRNG key for U.
    - `leak`: `(m,)` leak l_i in [0, 1] per row, or `None` (no leak).

    **Returns:** the `(n,)` update direction.

    **Raises:** `ValueError` for a `J` that is not a non-empty matrix or non-finite, or
    a `leak` not of shape `(m,)`.

    Citation: Chen, Ngiam, Huang, Luong, Kretzschmar, Chai & Anguelov, "Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout", NeurIPS 2020.
    """  # noqa: E501
    J = check_matrix(J, "graddrop")
    m, n = J.shape
    if leak is None:
        leak = jnp.zeros((m,), J.dtype)
    else:
        leak = check_weights(leak, m, "leak", "graddrop").astype(J.dtype)
    total = jnp.sum(jnp.abs(J), axis=0)
    nonzero = total > 0
    P = 0.5 * (1 + jnp.sum(J, axis=0) / jnp.where(nonzero, total, 1))
    U = jax.random.uniform(key, (n,), J.dtype)
    keep = ((P > U) & (J > 0)) | ((P < U) & (J < 0))
    return jnp.sum((leak[:, None] + (1 - leak[:, None]) * keep) * J, axis=0)
