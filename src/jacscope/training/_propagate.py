"""Forward-mode propagation of tangent columns through a whole training run.

A training run maps the state z_t = (theta_t, s_t) (parameters and optimiser state)
through z_{t+1} = F_t(z_t). Its Jacobian with respect to the initialisation is

    J = d theta_T / d theta_0 = [I 0] . A_{T-1} ... A_1 A_0 . [I ; d s_0 / d theta_0],

with A_t = d F_t / d z_t at the trajectory. `TangentPropagation` pushes a block of
K columns V (P x K) through that product: the initial state tangent
d s_0 / d theta_0 . V comes from `jax.jvp` of `init_state`, and each A_t is applied by
a `TangentProgram` compiled once from the linearisation of the step.

The linearisation's known part (residuals, elementwise coefficients) is either
computed once for the whole run and stored (`residuals`, then `propagate_stored`,
the fast way) or recomputed inside every chunk (`propagate_recompute`, when the
stored part would not fit in memory).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.extend.core import jaxpr_as_fun
from jax.flatten_util import ravel_pytree

from jacscope.training._run import TrainingRun, split_state
from jacscope.training._tangent_program import TangentProgram, canonical_axis


class TangentPropagation:
    """The Jacobian-column machinery of one `TrainingRun` (see the module doc).

    Building it traces one step of the run (no computation); its methods are pure
    functions to be compiled by the caller, who may keep the compiled functions in
    `cache`. It keeps no reference to the run itself.
    """

    def __init__(self, run: TrainingRun):
        params0 = run.params0
        flat0 = jax.eval_shape(lambda p: ravel_pytree(p)[0], params0)
        self.num_params = int(flat0.size)
        self.num_steps = run.num_steps
        self.dtype = flat0.dtype
        self.cache: dict[Any, Any] = {}
        self._init_state = run.init_state
        leaves, self._param_tree = jax.tree.flatten(params0)
        self._param_avals = [jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)) for x in leaves]
        self._param_shapes = [a.shape for a in self._param_avals]
        state0 = jax.eval_shape(run.init_state, params0)
        batch0 = jax.tree.map(
            lambda b: jax.ShapeDtypeStruct(jnp.shape(b)[1:], jnp.result_type(b)), run.batches
        )
        self._avals = (jax.tree.unflatten(self._param_tree, self._param_avals), state0, batch0)
        captured: dict[str, Any] = {}

        def capture(params, state, batch):
            floats, others = split_state(state)

            def step(p, f):
                new_p, new_s, loss = run.step(p, eqx.combine(f, others), batch)
                new_f, new_o = split_state(new_s)
                return (new_p, new_f), (new_o, loss)

            (new_p, new_f), linear, (new_o, loss) = jax.linearize(
                step, params, floats, has_aux=True
            )
            closed = jax.make_jaxpr(linear)(params, floats)
            captured["jaxpr"] = closed.jaxpr
            return (new_p, eqx.combine(new_f, new_o), loss), list(closed.consts)

        self._capture, out_shape = jax.make_jaxpr(capture, return_shape=True)(
            params0, state0, batch0
        )
        self._capture_tree = jax.tree.structure(out_shape)
        (_, state_out, _), _ = out_shape
        if jax.tree.structure(state_out) != jax.tree.structure(state0):
            raise ValueError(
                "the step must return an optimiser state with the structure of "
                f"init_state(params0); got {jax.tree.structure(state_out)}, expected "
                f"{jax.tree.structure(state0)}"
            )
        jaxpr = captured["jaxpr"]
        in_avals = [v.aval for v in jaxpr.invars]
        out_avals = [v.aval for v in jaxpr.outvars]
        for a, b in zip(in_avals, out_avals, strict=True):
            if a.shape != b.shape or a.dtype != b.dtype:
                raise ValueError(
                    f"the step changes a parameter or state leaf from {a.str_short()} to "
                    f"{b.str_short()}; a training step must keep shapes and dtypes"
                )
        self._axes = [canonical_axis(len(a.shape)) for a in in_avals]
        self._tangent_avals = in_avals
        self.program = TangentProgram(jaxpr, self._axes, self._axes)

    # ---------------------------------------------------------------- sizes

    def carry_elements(self) -> int:
        """Tangent elements per column carried from step to step (params and state)."""
        return sum(math.prod(a.shape) for a in self._tangent_avals)

    @functools.cached_property
    def prepared_shapes(self) -> list[jax.ShapeDtypeStruct]:
        """Shapes of the known arrays stored per step (`residuals`, without the T axis)."""

        def one(params, state, batch):
            (_, consts) = self._linearize(params, state, batch)
            return self.program.prepare(consts)

        return jax.eval_shape(one, *self._avals)

    def step_flops(self, k: int) -> float:
        """Floating-point operations of one step for K columns (XLA cost analysis)."""
        if ("flops", k) in self.cache:
            return self.cache["flops", k]
        tangents = [
            jax.ShapeDtypeStruct(a.shape[:axis] + (k,) + a.shape[axis:], a.dtype)
            for a, axis in zip(self._tangent_avals, self._axes, strict=True)
        ]
        lowered = jax.jit(self.program.apply).lower(tangents, self.prepared_shapes)
        cost = lowered.cost_analysis()
        if isinstance(cost, list | tuple):
            cost = cost[0] if cost else {}
        self.cache["flops", k] = float((cost or {}).get("flops", 0.0))
        return self.cache["flops", k]

    # ------------------------------------------------------------ the primal

    def _linearize(self, params, state, batch):
        outs = jaxpr_as_fun(self._capture)(*jax.tree.leaves((params, state, batch)))
        (new_params, new_state, loss), consts = jax.tree.unflatten(self._capture_tree, outs)
        return (new_params, new_state, loss), consts

    def residuals(self, params0: Any, batches: Any) -> tuple[jax.Array, list[jax.Array]]:
        """Run training once; return the losses (T,) and the program's known arrays for
        every step (each with a leading T axis)."""

        def body(carry, batch):
            (params, state, loss), consts = self._linearize(*carry, batch)
            return (params, state), (loss, self.program.prepare(consts))

        init = (params0, self._init_state(params0))
        _, (losses, prepared) = jax.lax.scan(body, init, batches)
        return losses, prepared

    # ------------------------------------------------------------ the tangents

    def _initial(self, params0, start, k: int) -> list[jax.Array]:
        """Tangent buffers for columns start .. start+k-1 of the identity (zero beyond P)."""
        rows = jnp.arange(self.num_params)[:, None]
        basis = (rows == start + jnp.arange(k)[None, :]).astype(self.dtype)
        offsets = [0]
        for shape in self._param_shapes:
            offsets.append(offsets[-1] + math.prod(shape))
        param_tangents = [
            basis[a:b].reshape(shape + (k,))
            for a, b, shape in zip(offsets, offsets[1:], self._param_shapes, strict=False)
        ]
        dparams_front = jax.tree.unflatten(
            self._param_tree,
            [
                jnp.moveaxis(t, -1, 0).astype(aval.dtype)
                for t, aval in zip(param_tangents, self._param_avals, strict=True)
            ],
        )

        def init_floats(p):
            return split_state(self._init_state(p))[0]

        def state_tangent(dp):
            return jax.jvp(init_floats, (params0,), (dp,))[1]

        dstate_front = jax.vmap(state_tangent)(dparams_front)
        front = jax.tree.leaves(dparams_front) + jax.tree.leaves(dstate_front)
        return [jnp.moveaxis(t, 0, axis) for t, axis in zip(front, self._axes, strict=True)]

    def _columns(self, tangents: list[jax.Array], k: int) -> jax.Array:
        """The parameter part of the tangent buffers as a (P, K) block."""
        parts = [
            jnp.moveaxis(t, axis, -1).reshape(-1, k).astype(self.dtype)
            for t, axis in zip(tangents[: len(self._param_shapes)], self._axes, strict=False)
        ]
        return jnp.concatenate(parts, axis=0)

    def propagate_stored(self, start, params0, prepared, *, k: int) -> jax.Array:
        """J[:, start:start+k] (zero columns beyond P) from stored `residuals`."""

        def body(tangents, prepared_t):
            return self.program.apply(tangents, prepared_t), None

        tangents, _ = jax.lax.scan(body, self._initial(params0, start, k), prepared)
        return self._columns(tangents, k)

    def propagate_recompute(self, start, params0, batches, *, k: int):
        """J[:, start:start+k] and the losses, recomputing the primal run meanwhile."""

        def body(carry, batch):
            params, state, tangents = carry
            (params, state, loss), consts = self._linearize(params, state, batch)
            tangents = self.program.apply(tangents, self.program.prepare(consts))
            return (params, state, tangents), loss

        init = (params0, self._init_state(params0), self._initial(params0, start, k))
        (_, _, tangents), losses = jax.lax.scan(body, init, batches)
        return self._columns(tangents, k), losses
