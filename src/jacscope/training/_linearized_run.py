"""An optax training run linearised step by step, with each Hessian applied in reverse mode.

A step of a run built from `loss_fn` and `optimizer` is
theta', s' = U(theta, s, g) with g = grad L_t(theta), so its Jacobian is

    d(theta', s') = dU/dtheta . d theta + dU/ds . d s + dU/dg . H_t d theta

with H_t the Hessian of step t's loss. The linearisation of the whole run
(`jax.linearize`) applies H_t d theta forward-over-reverse; on CPUs that tangent
sweep costs up to twice its transpose, because the forward tangent of a weight
gradient is a sum of products in transposed layouts that XLA materialises, while
the transposed sweep applies H_t reverse-over-reverse. H_t is symmetric, so
H_t x = H_t^T x: `LinearizedRun` keeps every step's gradient map and update
linearised separately and

- `mv(v) = J v` applies each H_t as the transpose of the linearised gradient map;
- `rmv(u) = J^T u` transposes the sweep that applies H_t forward, which JAX turns
  into the same reverse-over-reverse product.

Both products then read the stored trajectory and cost one reverse-mode
Hessian-vector product per step, with no primal computation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jacscope.operators import AbstractLinearOperator
from jacscope.training._run import TrainingRun, optax_update, split_state


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), tree)


class LinearizedRun(AbstractLinearOperator):
    """J = d theta_T / d theta_0 from every step's stored linearisation (see module doc).

    `grad_maps` and `update_maps` are the `jax.tree_util.Partial` linear maps of
    `jax.linearize`, their residual arrays stacked along a leading step axis;
    `init_map` is the linearised optimizer-state initialisation. Vectors are flat, in
    `ravel_pytree(params0)` order. Build it with `linearize_run`.
    """

    grad_maps: Any
    update_maps: Any
    init_map: Any
    params0: Any
    unravel: Callable = eqx.field(static=True)
    shape: tuple[int, int] = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)

    def _mv(self, v):
        return self._sweep(v, hessian_transposed=True)

    def _rmv(self, u):
        vector = jax.ShapeDtypeStruct((self.shape[1],), self.dtype)
        forward = lambda v: self._sweep(v, hessian_transposed=False)
        return jax.linear_transpose(forward, vector)(u)[0]

    def _sweep(self, v: jax.Array, *, hessian_transposed: bool) -> jax.Array:
        params = _abstract(self.params0)
        dp = self.unravel(v)

        def body(carry, maps):
            dp, ds = carry
            grad_map, update_map = maps
            if hessian_transposed:
                (dg,) = jax.linear_transpose(grad_map, params)(dp)
            else:
                dg = grad_map(dp)
            return update_map(dp, ds, dg), None

        maps = (self.grad_maps, self.update_maps)
        (dp, _), _ = jax.lax.scan(body, (dp, self.init_map(dp)), maps)
        return ravel_pytree(dp)[0]


def linearize_run(run: TrainingRun) -> LinearizedRun:
    """Train once, linearising each step's gradient map and optimizer update.

    `run` must be built from `loss_fn` and `optimizer`; a run from
    `TrainingRun.from_step` has no such split (use `jacscope.jacobian_operator` of
    `run.train`). Memory: every step's residuals, linear in T.
    """
    if run.loss_fn is None or run.optimizer is None:
        raise ValueError("linearize_run needs a run built from loss_fn and optimizer")
    loss_fn, optimizer = run.loss_fn, run.optimizer
    floats0, others0 = split_state(run.init_state(run.params0))

    def body(carry, batch):
        params, floats, others = carry
        grads, grad_map = jax.linearize(lambda p: jax.grad(loss_fn)(p, batch), params)

        def update(p, f, g):
            p, state = optax_update(optimizer, p, eqx.combine(f, others), g)
            new_floats, new_others = split_state(state)
            return (p, new_floats), new_others

        (params, floats), update_map, others = jax.linearize(
            update, params, floats, grads, has_aux=True
        )
        return (params, floats, others), (grad_map, update_map)

    init = (run.params0, floats0, others0)
    _, (grad_maps, update_maps) = jax.lax.scan(body, init, run.batches)
    init_floats = lambda p: split_state(run.init_state(p))[0]
    _, init_map = jax.linearize(init_floats, run.params0)
    flat0, unravel = ravel_pytree(run.params0)
    return LinearizedRun(
        grad_maps=grad_maps,
        update_maps=update_maps,
        init_map=init_map,
        params0=run.params0,
        unravel=unravel,
        shape=(int(flat0.size), int(flat0.size)),
        dtype=flat0.dtype,
    )
