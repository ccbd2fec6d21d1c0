r"""GradVac: gradients moved towards a target similarity that tracks the training.

For each task i and each other task j in turn, with g_i' the current (already
modified) gradient of task i and phi_ij = cos(g_i', g_j): if phi_ij < phihat_ij, the
target, then

    g_i' <- g_i' + ||g_i'|| (phihat sqrt(1 - phi^2) - phi sqrt(1 - phihat^2))
                   / (||g_j|| sqrt(1 - phihat^2)) g_j,

which sets cos(g_i', g_j) to phihat_ij; then phihat_ij <- (1 - beta) phihat_ij +
beta phi_ij. The update is sum_i g_i'. As with PCGrad, all of it reads the Gramian:
g_i' = J^T c, ||g_i'||^2 = c^T G c and g_j^T g_i' = (G c)_j. With targets zero (and
beta = 0) it is PCGrad.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jacscope.descent._checks import check_gramian, check_matrix
from jacscope.descent._pcgrad import projection_orders


class GradVacState(NamedTuple):
    """The targets phihat, `(m, m)`, of `gradvac`; start from `gradvac_init(m)`."""

    targets: jax.Array


def gradvac_init(m: int, dtype=None) -> GradVacState:
    """The first state of GradVac for m tasks: every target similarity zero."""
    return GradVacState(targets=jnp.zeros((m, m), dtype or jnp.result_type(float)))


def gradvac_weights(
    G: jax.Array,
    state: GradVacState,
    key: jax.Array | None = None,
    *,
    beta: float = 0.01,
) -> tuple[jax.Array, GradVacState]:
    r"""The weights of GradVac and its next state (see the module for the rule).

    **Arguments:**

    - `G`: `(m, m)` Gramian J J^T.
    - `state`: the targets, from `gradvac_init(m)` or the previous call.
    - `key`: a PRNG key for the orders of the j, or `None` for 0, 1, ..., m - 1.
    - `beta`: the rate of the targets' exponential moving average.

    **Returns:** `(weights, state)`: `(m,)` weights and the updated targets.

    **Raises:** `ValueError` for a `G` that is not square or non-finite, or targets not
    of shape `(m, m)`.

    Citation: Wang, Tsvetkov, Firat & Cao, "Gradient Vaccine: Investigating and Improving Multi-task Optimization in Massively Multilingual Models", ICLR 2021.
    """  # noqa: E501
    G = check_gramian(G, "gradvac_weights")
    m = G.shape[0]
    targets = jnp.asarray(state.targets)
    if targets.shape != (m, m):
        raise ValueError(
            f"gradvac_weights: the targets must have shape ({m}, {m}), got {targets.shape}"
        )
    targets = targets.astype(G.dtype)
    norms = jnp.sqrt(jnp.maximum(jnp.diag(G), 0))

    def one(i, order, phihat_i):
        def visit(t, carry):
            c, phihat_i = carry
            j = order[t]
            norm_c = jnp.sqrt(jnp.maximum(c @ G @ c, 0))
            valid = (j != i) & (norm_c > 0) & (norms[j] > 0)
            phi = jnp.where(valid, (G[j] @ c) / jnp.where(valid, norm_c * norms[j], 1), 0)
            phi = jnp.clip(phi, -1, 1)
            target = phihat_i[j]
            move = valid & (phi < target)
            coef = norm_c * (target * jnp.sqrt(1 - phi**2) - phi * jnp.sqrt(1 - target**2))
            coef = coef / jnp.where(move, norms[j] * jnp.sqrt(1 - target**2), 1)
            c = c.at[j].add(jnp.where(move, coef, 0))
            phihat_i = phihat_i.at[j].set(
                jnp.where(valid, (1 - beta) * target + beta * phi, target)
            )
            return c, phihat_i

        start = jnp.zeros((m,), G.dtype).at[i].set(1)
        return jax.lax.fori_loop(0, m, visit, (start, phihat_i))

    cs, new_targets = jax.vmap(one)(jnp.arange(m), projection_orders(m, key), targets)
    return jnp.sum(cs, axis=0), GradVacState(targets=new_targets)


def gradvac(
    J: jax.Array,
    state: GradVacState,
    key: jax.Array | None = None,
    *,
    beta: float = 0.01,
) -> tuple[jax.Array, GradVacState]:
    r"""GradVac: w^T J and the next state, with `gradvac_weights(J J^T, state, key)`.

    **Arguments:**

    - `J`: `(m, n)` Jacobian, one gradient per row.
    - `state`, `key`, `beta`: as in `gradvac_weights`.

    **Returns:** `(direction, state)`: the `(n,)` update direction and the next state.

    **Raises:** as `gradvac_weights`, for a `J` that is not a non-empty matrix or
    non-finite.

    Citation: Wang, Tsvetkov, Firat & Cao, "Gradient Vaccine: Investigating and Improving Multi-task Optimization in Massively Multilingual Models", ICLR 2021.
    """  # noqa: E501
    J = check_matrix(J, "gradvac")
    w, state = gradvac_weights(J @ J.T, state, key, beta=beta)
    return w @ J, state
