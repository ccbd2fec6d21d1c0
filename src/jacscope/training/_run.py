"""A training run as a pure function of its initial parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from jacscope._fingerprint import hash_program, hash_tree


class TrainingRun(eqx.Module):
    """A deterministic training run theta_0 -> theta_T, differentiable end to end.

    The run applies `step(params, state, batch) -> (params, state, loss)` once per
    entry of `batches` (a pytree whose leaves share a leading step axis), starting
    from `params0` and `init_state(params0)`. With `loss_fn` and an optax
    `optimizer`, the step is the usual one: `updates, state = optimizer.update(
    grad(loss_fn)(params, batch), state, params)` and `params + updates`; the
    optimizer state (momentum, Adam moments, schedule counters) is part of what is
    differentiated.

    **Arguments:**

    - `params0`: the initial parameters, any pytree of float arrays.
    - `loss_fn`: `(params, batch) -> scalar`.
    - `optimizer`: an `optax.GradientTransformation`.
    - `batches`: a pytree of arrays with the step as leading axis.

    For loops optax cannot express, use `TrainingRun.from_step`; such a run has
    `loss_fn` and `optimizer` set to `None`.
    """

    params0: Any
    batches: Any
    step: Callable = eqx.field(static=True)
    init_state: Callable = eqx.field(static=True)
    loss_fn: Callable | None = eqx.field(static=True)
    optimizer: optax.GradientTransformation | None = eqx.field(static=True)

    def __init__(
        self,
        params0: Any,
        loss_fn: Callable | None = None,
        optimizer: optax.GradientTransformation | None = None,
        batches: Any = None,
        *,
        step: Callable | None = None,
        init_state: Callable | None = None,
    ):
        if batches is None:
            raise ValueError("TrainingRun needs batches (a pytree with a leading step axis)")
        if step is None:
            if loss_fn is None or optimizer is None:
                raise ValueError("TrainingRun needs either loss_fn and optimizer, or step")
            step = _optax_step(loss_fn, optimizer)
            init_state = optimizer.init
        elif init_state is None:
            raise ValueError("TrainingRun.from_step needs init_state")
        else:
            loss_fn = optimizer = None
        leading = {jnp.shape(leaf)[0] for leaf in jax.tree_util.tree_leaves(batches)}
        if len(leading) != 1:
            raise ValueError(
                f"every leaf of batches must share the leading step axis; found lengths "
                f"{sorted(leading)}"
            )
        self.params0 = params0
        self.batches = batches
        self.step = step
        self.init_state = init_state
        self.loss_fn = loss_fn
        self.optimizer = optimizer

    @classmethod
    def from_step(
        cls, params0: Any, step: Callable, init_state: Callable, batches: Any
    ) -> TrainingRun:
        """A run from a custom pure `step(params, state, batch) -> (params, state, loss)`;
        `init_state(params0)` gives the initial state."""
        return cls(params0, batches=batches, step=step, init_state=init_state)

    @property
    def num_steps(self) -> int:
        """The number of optimizer steps T."""
        return int(jnp.shape(jax.tree_util.tree_leaves(self.batches)[0])[0])

    def fingerprint(self) -> dict[str, str]:
        """Hashes of everything the run computes from: `params0`, `batches`, and
        `program`, the step as a program (the jaxpr of `init_state` and one step at
        `params0` and the first batch, with the constants it closes over). A changed
        loss, optimizer, schedule, hyperparameter or dtype changes `program`; result
        folders store these and refuse a run whose hashes differ."""
        first = jax.tree.map(lambda leaf: leaf[0], self.batches)
        program = hash_program(
            lambda params, batch: self.step(params, self.init_state(params), batch),
            self.params0,
            first,
        )
        return {
            "params0": hash_tree(self.params0),
            "batches": hash_tree(self.batches),
            "program": program,
        }

    def train(self, params0: Any | None = None) -> tuple[Any, jax.Array]:
        """Run training from `params0` (default: the run's own); return `(theta_T, losses)`.

        Pure and traceable: differentiate it, `vmap` it or `jit` it.
        """
        params0 = self.params0 if params0 is None else params0

        def body(carry, batch):
            params, state = carry
            params, state, loss = self.step(params, state, batch)
            return (params, state), loss

        (params, _), losses = jax.lax.scan(body, (params0, self.init_state(params0)), self.batches)
        return params, losses

    def final_params(self, params0: Any | None = None) -> Any:
        """theta_T, the parameters after every step (compiled)."""
        return _train_jit(self, params0)[0]


@eqx.filter_jit
def _train_jit(run: TrainingRun, params0: Any | None):
    return run.train(params0)


def optax_update(
    optimizer: optax.GradientTransformation, params: Any, state: Any, grads: Any
) -> tuple[Any, Any]:
    """The parameters and optimizer state after one optax update with `grads`."""
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state


def split_state(state: Any) -> tuple[Any, Any]:
    """An optimizer state as (its floating-point leaves, everything else), equinox
    partitions: the differentiable part and the counters carried alongside."""
    return eqx.partition(state, _is_float)


def _is_float(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)


def _optax_step(loss_fn: Callable, optimizer: optax.GradientTransformation) -> Callable:
    def step(params, state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        return (*optax_update(optimizer, params, state, grads), loss)

    return step
