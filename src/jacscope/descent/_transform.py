"""Jacobian descent as an optax transformation, and the Jacobians of a multi-task model.

A step of Jacobian descent replaces the gradient of one loss by an aggregation A(J) of
the m x n Jacobian of m losses (Quinton & Rey). As an optax `GradientTransformation` it
reads the per-objective gradients (a pytree like the parameters whose leaves carry a
leading axis of length m, as `jax.jacrev` of the losses returns them) and emits one
update shaped like the parameters, which any optax optimiser then transforms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from jacscope._parameters import ravel_parameters, split_parameters


class JacobianDescentState(NamedTuple):
    """The state of `jacobian_descent`: the PRNG key of a random aggregator, or `None`."""

    key: jax.Array | None


def stack_rows(jacobian: Any, what: str = "jacobian_descent") -> jax.Array:
    """The m x n matrix whose row i is objective i's gradient, flattened: each floating-point
    leaf `(m, *shape)` of `jacobian` becomes `(m, prod(shape))` columns, in leaf order."""
    arrays, _ = split_parameters(jacobian)
    leaves = jax.tree_util.tree_leaves_with_path(arrays)
    if not leaves:
        raise ValueError(f"{what}: the Jacobian has no floating-point array leaves")
    first_path, first = leaves[0]
    for path, leaf in leaves:
        if leaf.ndim == 0 or first.ndim == 0 or leaf.shape[0] != first.shape[0]:
            raise ValueError(
                f"{what}: every leaf needs the same leading objective axis (m); leaf "
                f"{jax.tree_util.keystr(first_path) or '(root)'} has shape {tuple(first.shape)}"
                f" and leaf {jax.tree_util.keystr(path) or '(root)'} {tuple(leaf.shape)}"
            )
    m = first.shape[0]
    return jnp.concatenate([leaf.reshape(m, -1) for _, leaf in leaves], axis=1)


def unstack_direction(direction: jax.Array, jacobian: Any) -> Any:
    """The `(n,)` vector `direction` as a pytree like one row of `jacobian` (its leaves
    without the objective axis); the non-floating leaves of `jacobian` are kept."""
    first_row = jax.tree.map(lambda leaf: leaf[0] if eqx.is_inexact_array(leaf) else leaf, jacobian)
    return ravel_parameters(first_row)[1](direction)


def jacobian_descent(
    aggregator: Callable[..., jax.Array], key: jax.Array | None = None
) -> optax.GradientTransformation:
    r"""An optax transformation from the Jacobian of m losses to one update, A(J).

    `update(jacobian, state, params=None)` flattens `jacobian` (leaves `(m, *shape)`,
    from `jax.jacrev(losses_fn)(params)` or `jacscope.descent.multitask_jacobians`) to
    the m x n matrix J, applies `aggregator` and returns the `(n,)` direction A(J) shaped
    like the parameters. Chain it before an optimiser, which then treats A(J) as a
    gradient: `optax.chain(jacobian_descent(upgrad), optax.adam(1e-3))`. With m = 1 and
    `aggregator=mean` it is the identity on the gradient.

    **Arguments:**

    - `aggregator`: `J -> (n,)`, one of this package's aggregators (`upgrad`, `mgda`,
      `functools.partial(krum, n_byzantine=1)`, ...), or with `key`, `(J, key) -> (n,)`.
    - `key`: for a random aggregator (`random`, `pcgrad`, `graddrop`): the first key,
      split at every step and carried in the state.

    **Returns:** an `optax.GradientTransformation`.

    **Raises** (at `update`): `ValueError` naming a leaf without the leading objective
    axis; the aggregator's own errors for a non-finite Jacobian.

    Citation: Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv 2406.16232.
    """  # noqa: E501

    def init(params):
        del params
        return JacobianDescentState(key=key)

    def update(jacobian, state, params=None):
        del params
        J = stack_rows(jacobian)
        if state.key is None:
            direction, new_key = aggregator(J), None
        else:
            new_key, subkey = jax.random.split(state.key)
            direction = aggregator(J, subkey)
        return unstack_direction(direction, jacobian), JacobianDescentState(key=new_key)

    return optax.GradientTransformation(init, update)


class MultitaskJacobians(NamedTuple):
    """What `multitask_jacobians` returns.

    - `losses`: `(m,)` the task losses.
    - `shared`: the Jacobian of the losses with respect to the shared parameters, a
      pytree like them with a leading axis m (input of `jacobian_descent`).
    - `heads`: the gradient of the sum of the losses with respect to the task-specific
      parameters, a pytree like them (head i's loss is the only one that depends on it).
    """

    losses: jax.Array
    shared: Any
    heads: Any


def multitask_jacobians(
    trunk_fn: Callable[..., Any],
    heads_fn: Callable[[Any, Any], jax.Array],
    shared: Any,
    heads: Any,
    *args: Any,
) -> MultitaskJacobians:
    r"""The Jacobians of a multi-task model: through the shared trunk, and of the heads.

    With features z = trunk_fn(shared, *args) and losses L = heads_fn(heads, z) (m task
    losses), the Jacobian with respect to the shared parameters is dL/dz . dz/dshared:
    the m rows of dL/dz (by reverse mode on the heads, which are small) are pulled back
    through the trunk by one batched VJP of its single linearisation, so the trunk's
    forward pass runs once. The heads get ordinary gradients of sum_i L_i.

    **Arguments:**

    - `trunk_fn`: `(shared, *args) -> features`, any pytree of arrays.
    - `heads_fn`: `(heads, features) -> (m,)` losses.
    - `shared`, `heads`: parameters, any pytrees (equinox Modules included).
    - `*args`: the batch, passed to `trunk_fn`.

    **Returns:** a `MultitaskJacobians` of the losses, the shared Jacobian and the
    heads' gradient.

    **Raises:** `ValueError` if `heads_fn` does not return one vector of losses.
    """
    shared_arrays, shared_static = split_parameters(shared)
    heads_arrays, heads_static = split_parameters(heads)
    features, pullback = jax.vjp(
        lambda s: trunk_fn(eqx.combine(s, shared_static), *args), shared_arrays
    )

    def losses_of(h, z):
        losses = heads_fn(eqx.combine(h, heads_static), z)
        if not isinstance(losses, jax.Array) or losses.ndim != 1:
            raise ValueError(
                "multitask_jacobians: heads_fn must return one vector of m task losses, "
                f"returned {jax.tree.map(lambda x: f'{x.dtype}{tuple(x.shape)}', losses)}"
            )
        return losses, losses

    (d_heads, d_features), losses = jax.jacrev(losses_of, argnums=(0, 1), has_aux=True)(
        heads_arrays, features
    )
    (shared_jacobian,) = jax.vmap(pullback)(d_features)
    heads_gradient = jax.tree.map(lambda leaf: jnp.sum(leaf, axis=0), d_heads)
    return MultitaskJacobians(losses=losses, shared=shared_jacobian, heads=heads_gradient)
