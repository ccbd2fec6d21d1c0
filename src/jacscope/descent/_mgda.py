"""MGDA: the minimum-norm point of the convex hull of the gradients, solved exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jacscope.descent._checks import check_gramian, check_matrix
from jacscope.descent._dual_cone import (
    ActiveSet,
    ProjectedGradient,
    default_method,
    solve_nonnegative_qp,
)
from jacscope.descent._gramian import regularize_gramian


def mgda_weights(
    G: jax.Array,
    *,
    reg_eps: float = 1e-8,
    method: ActiveSet | ProjectedGradient | None = None,
) -> jax.Array:
    r"""The weights of MGDA: argmin of w^T G w over the probability simplex.

    Solved without a simplex constraint: with G' = G / tr(G) + reg_eps I positive
    definite, the solution l of the nonnegative program min 1/2 l^T G' l - 1^T l,
    l >= 0 gives w = l / (1^T l), because its KKT conditions (G' l >= 1, with equality
    where l > 0) are MGDA's (G' w >= (w^T G' w) 1, with equality where w > 0) after
    division by 1^T l. The solver is that of `project_to_dual_cone` (exact with
    `ActiveSet`). Unlike the Frank-Wolfe loop of Sener & Koltun, the answer is exact
    for G' (and within O(reg_eps) of G's optimal value).

    **Arguments:**

    - `G`: `(m, m)` Gramian J J^T.
    - `reg_eps`: the multiple of the identity added to G / tr(G).
    - `method`: the solver (`None`: `ActiveSet` for m <= 64, else
      `ProjectedGradient`).

    **Returns:** `(m,)` weights on the simplex.

    **Raises:** `ValueError` for a `G` that is not square or non-finite.

    Citation: Desideri, "Multiple-gradient descent algorithm (MGDA) for multiobjective optimization", Comptes Rendus Mathematique, 2012.
    Citation: Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018.
    """  # noqa: E501
    G = check_gramian(G, "mgda_weights")
    m = G.shape[0]
    method = default_method(m) if method is None else method
    Greg = regularize_gramian(G, 0.0, reg_eps)
    ones = -jnp.ones((1, m), G.dtype)
    lam, _, _ = solve_nonnegative_qp(Greg, ones, method)
    return lam[0] / jnp.sum(lam[0])


def mgda(
    J: jax.Array,
    *,
    reg_eps: float = 1e-8,
    method: ActiveSet | ProjectedGradient | None = None,
) -> jax.Array:
    r"""MGDA: the minimum-norm element w^T J of the convex hull of the rows of J.

    **Arguments:**

    - `J`: `(m, n)` Jacobian, one gradient per row.
    - `reg_eps`, `method`: as in `mgda_weights`.

    **Returns:** the `(n,)` update direction.

    **Raises:** `ValueError` for a `J` that is not a non-empty matrix or holds
    non-finite values.

    Citation: Desideri, "Multiple-gradient descent algorithm (MGDA) for multiobjective optimization", Comptes Rendus Mathematique, 2012.
    """  # noqa: E501
    J = check_matrix(J, "mgda")
    return mgda_weights(J @ J.T, reg_eps=reg_eps, method=method) @ J
