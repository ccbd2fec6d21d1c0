"""UPGrad and DualProj: projections onto the dual cone of the Jacobian's rows.

Convention of this package: a weighting maps the Gramian G = J J^T (m x m) to weights
w (m,), and its aggregator maps J (m x n) to w^T J.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jacscope.descent._checks import check_gramian, check_matrix, check_weights
from jacscope.descent._dual_cone import ActiveSet, ProjectedGradient, project_to_dual_cone
from jacscope.descent._gramian import regularize_gramian


def _preference(pref, G, what):
    """The preference weights p in G's dtype: `pref` checked, or 1/m each by default."""
    m = G.shape[0]
    if pref is None:
        return jnp.full((m,), 1 / m, G.dtype)
    return check_weights(pref, m, "pref", what).astype(G.dtype)


def upgrad_weights(
    G: jax.Array,
    pref: jax.Array | None = None,
    *,
    norm_eps: float = 1e-4,
    reg_eps: float = 1e-4,
    method: ActiveSet | ProjectedGradient | None = None,
) -> jax.Array:
    r"""The weights of UPGrad: the sum of each row's projection onto the dual cone.

    With G' = `regularize_gramian(G, norm_eps, reg_eps)` and w_i the solution of
    min_w w^T G' w subject to w >= p_i e_i, the weights are sum_i w_i, so that
    J^T (sum_i w_i) = sum_i pi_J(p_i g_i) projects each gradient g_i, scaled by its
    preference p_i, onto the dual cone of the rows of J and sums the projections.
    The m programs are solved as one batch by `project_to_dual_cone`.

    **Arguments:**

    - `G`: `(m, m)` Gramian J J^T.
    - `pref`: `(m,)` nonnegative preference weights p (default `1/m` each: the mean).
    - `norm_eps`, `reg_eps`: the normalisation and regularisation of
      `regularize_gramian` (TorchJD's defaults).
    - `method`: the dual-cone solver (`None`: `ActiveSet` for m <= 64, else
      `ProjectedGradient`).

    **Returns:** `(m,)` weights.

    **Raises:** `ValueError` for a `G` that is not square or non-finite, or a `pref`
    not of shape `(m,)`.

    Citation: Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv 2406.16232.
    """  # noqa: E501
    G = check_gramian(G, "upgrad_weights")
    p = _preference(pref, G, "upgrad_weights")
    Greg = regularize_gramian(G, norm_eps, reg_eps)
    return jnp.sum(project_to_dual_cone(Greg, jnp.diag(p), method=method).weights, axis=0)


def upgrad(
    J: jax.Array,
    pref: jax.Array | None = None,
    *,
    norm_eps: float = 1e-4,
    reg_eps: float = 1e-4,
    method: ActiveSet | ProjectedGradient | None = None,
) -> jax.Array:
    r"""UPGrad: w^T J with w = `upgrad_weights(J J^T, pref)`.

    Non-conflicting (J A(J) >= 0), linear under scaling of J, and with the preference
    vector's weighting recovered where the gradients do not conflict.

    **Arguments:**

    - `J`: `(m, n)` Jacobian, one gradient per row.
    - `pref`, `norm_eps`, `reg_eps`, `method`: as in `upgrad_weights`.

    **Returns:** the `(n,)` update direction.

    **Raises:** `ValueError` for a `J` that is not a non-empty matrix or holds
    non-finite values, or a `pref` not of shape `(m,)`.

    Citation: Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv 2406.16232.
    """  # noqa: E501
    J = check_matrix(J, "upgrad")
    w = upgrad_weights(J @ J.T, pref, norm_eps=norm_eps, reg_eps=reg_eps, method=method)
    return w @ J


def dualproj_weights(
    G: jax.Array,
    pref: jax.Array | None = None,
    *,
    norm_eps: float = 1e-4,
    reg_eps: float = 1e-4,
    method: ActiveSet | ProjectedGradient | None = None,
) -> jax.Array:
    r"""The weights of DualProj: the preference-weighted combination, projected.

    The solution w of min_w w^T G' w subject to w >= p, with G' =
    `regularize_gramian(G, norm_eps, reg_eps)`: J^T w is the projection of J^T p onto
    the dual cone of the rows of J (the projection of Gradient Episodic Memory,
    their equation 11).

    **Arguments:**

    - `G`: `(m, m)` Gramian J J^T.
    - `pref`: `(m,)` weights p of the combination to project (default `1/m` each).
    - `norm_eps`, `reg_eps`, `method`: as in `upgrad_weights`.

    **Returns:** `(m,)` weights.

    **Raises:** `ValueError` for a `G` that is not square or non-finite, or a `pref`
    not of shape `(m,)`.

    Citation: Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017.
    """  # noqa: E501
    G = check_gramian(G, "dualproj_weights")
    p = _preference(pref, G, "dualproj_weights")
    Greg = regularize_gramian(G, norm_eps, reg_eps)
    return project_to_dual_cone(Greg, p, method=method).weights


def dualproj(
    J: jax.Array,
    pref: jax.Array | None = None,
    *,
    norm_eps: float = 1e-4,
    reg_eps: float = 1e-4,
    method: ActiveSet | ProjectedGradient | None = None,
) -> jax.Array:
    r"""DualProj: w^T J with w = `dualproj_weights(J J^T, pref)`.

    **Arguments:**

    - `J`: `(m, n)` Jacobian, one gradient per row.
    - `pref`, `norm_eps`, `reg_eps`, `method`: as in `dualproj_weights`.

    **Returns:** the `(n,)` update direction.

    **Raises:** `ValueError` for a `J` that is not a non-empty matrix or holds
    non-finite values, or a `pref` not of shape `(m,)`.

    Citation: Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017.
    """  # noqa: E501
    J = check_matrix(J, "dualproj")
    w = dualproj_weights(J @ J.T, pref, norm_eps=norm_eps, reg_eps=reg_eps, method=method)
    return w @ J
