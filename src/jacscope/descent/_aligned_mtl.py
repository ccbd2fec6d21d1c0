"""Aligned-MTL: the gradients' Gramian made a multiple of the identity."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jacscope.descent._checks import check_gramian, check_matrix, check_weights

SCALE_MODES = ("min", "median", "rmse")


def aligned_mtl_weights(
    G: jax.Array, pref: jax.Array | None = None, *, scale_mode: str = "min"
) -> jax.Array:
    r"""The weights of Aligned-MTL: B p, with B the balance transformation of G.

    With G = V diag(l) V^T restricted to its rank r (eigenvalues above
    l_max m eps), B = s^(1/2) V_r diag(l_r)^(-1/2) V_r^T, so that the rows of B J are
    orthogonal with equal norms s^(1/2); s is the smallest retained eigenvalue
    (`"min"`), their median (`"median"`) or their mean (`"rmse"`). B = I when r = 0.

    **Arguments:**

    - `G`: `(m, m)` Gramian J J^T.
    - `pref`: `(m,)` weights p (default `1/m` each).
    - `scale_mode`: `"min"`, `"median"` or `"rmse"`.

    **Returns:** `(m,)` weights.

    **Raises:** `ValueError` for a `G` that is not square or non-finite, a `pref` not of
    shape `(m,)`, or an unknown `scale_mode`.

    Citation: Senushkin, Patakin, Kuznetsov & Konushin, "Independent Component Alignment for Multi-Task Learning", CVPR 2023.
    """  # noqa: E501
    G = check_gramian(G, "aligned_mtl_weights")
    if scale_mode not in SCALE_MODES:
        raise ValueError(
            f"aligned_mtl_weights: scale_mode must be one of {SCALE_MODES}, received {scale_mode!r}"
        )
    m = G.shape[0]
    if pref is None:
        p = jnp.full((m,), 1 / m, G.dtype)
    else:
        p = check_weights(pref, m, "pref", "aligned_mtl_weights").astype(G.dtype)
    lam, V = jnp.linalg.eigh((G + G.T) / 2)
    tol = jnp.max(lam) * m * jnp.finfo(G.dtype).eps
    keep = lam > tol
    rank = jnp.sum(keep)
    safe = jnp.where(keep, lam, 1)
    if scale_mode == "min":
        scale = jnp.min(jnp.where(keep, lam, jnp.inf))
    elif scale_mode == "median":
        # the lower median of the retained eigenvalues, as torch.median
        ordered = jnp.sort(jnp.where(keep, lam, jnp.inf))
        scale = ordered[jnp.maximum((rank - 1) // 2, 0)]
    else:
        scale = jnp.sum(jnp.where(keep, lam, 0)) / jnp.maximum(rank, 1)
    inv_sqrt = jnp.where(keep, 1 / jnp.sqrt(safe), 0)
    B = jnp.sqrt(jnp.where(rank > 0, scale, 1)) * (V * inv_sqrt) @ V.T
    B = jnp.where(rank > 0, B, jnp.eye(m, dtype=G.dtype))
    return B @ p


def aligned_mtl(J: jax.Array, pref: jax.Array | None = None, *, scale_mode: str = "min"):
    r"""Aligned-MTL: w^T J with w = `aligned_mtl_weights(J J^T, pref, scale_mode)`.

    **Arguments:**

    - `J`: `(m, n)` Jacobian, one gradient per row.
    - `pref`, `scale_mode`: as in `aligned_mtl_weights`.

    **Returns:** the `(n,)` update direction.

    **Raises:** as `aligned_mtl_weights`, and `ValueError` for a `J` that is not a
    non-empty matrix or non-finite.

    Citation: Senushkin, Patakin, Kuznetsov & Konushin, "Independent Component Alignment for Multi-Task Learning", CVPR 2023.
    """  # noqa: E501
    J = check_matrix(J, "aligned_mtl")
    return aligned_mtl_weights(J @ J.T, pref, scale_mode=scale_mode) @ J
