"""A training run as a pure function of its initial parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from jacscope._fingerprint import hash_program, hash_tree
from jacscope._memory import format_bytes
from jacscope._parameters import describe_shapes, split_parameters
from jacscope._validation import (
    check_step_batches,
    eval_shape_explained,
    looks_like_step_list,
)
from jacscope.data import batch_bytes


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

    - `params0`: the initial parameters as the model holds them: an equinox Module,
      flax variables or any pytree. Its floating-point array leaves are trained and
      differentiated; the rest (activation functions, integer arrays, PRNG keys) is
      held fixed (`run.static`).
    - `loss_fn`: `(params, batch) -> scalar`.
    - `optimizer`: an `optax.GradientTransformation` (`optax.sgd(0.1)`, not `optax.sgd`).
    - `batches`: a pytree of arrays with the step as leading axis (typed PRNG keys
      included, for dropout); `jacscope.data.stack_batches` builds one from a list or
      an iterator of per-step batches.

    The run is checked when it is built: one step is traced at `params0` and the first
    batch, so a loss that is not a scalar, a batch of the wrong shape or an optimizer
    factory passed uncalled is a `ValueError` (`TypeError` for a wrong argument)
    naming it, before any work.

    `run.params0`, `run.step`, `run.loss_fn` and what `train` returns are in terms of
    the trained leaves only (a pytree of the model's structure with `None` in the
    static places); `run.parameters(theta)` puts the static leaves back.

    For loops optax cannot express, use `TrainingRun.from_step`; such a run has
    `loss_fn` and `optimizer` set to `None`.
    """

    params0: Any
    static: Any
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
        check_step_batches(batches)
        arrays, static = split_parameters(params0)
        if not jax.tree_util.tree_leaves(arrays):
            raise ValueError(
                "params0 has no floating-point array leaves to train; it holds "
                + describe_shapes(params0)
            )
        if step is None:
            _check_optimizer(loss_fn, optimizer)
            loss_fn = _on_arrays_loss(loss_fn, static)
            step = _optax_step(loss_fn, optimizer)
            init_state = optimizer.init
        elif init_state is None:
            raise ValueError("TrainingRun.from_step needs init_state")
        else:
            step = _on_arrays_step(step, static)
            loss_fn = optimizer = None
        self.params0 = arrays
        self.static = static
        self.batches = batches
        self.step = step
        self.init_state = init_state
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        try:
            self._check_first_step()
        except ValueError as err:
            if not looks_like_step_list(batches):
                raise
            raise ValueError(
                f"batches is a list of {len(batches)} per-step batches; TrainingRun takes one "
                "pytree with a leading step axis: jacscope.data.stack_batches(batches) "
                f"stacks them ({format_bytes(batch_bytes(batches))})"
            ) from err

    def _check_first_step(self) -> None:
        first = jax.tree.map(lambda leaf: leaf[0], self.batches)
        batch_shapes = describe_shapes(first)
        if self.loss_fn is not None:
            loss = _trace("loss_fn", self.loss_fn, batch_shapes, self.params0, first)
            if not hasattr(loss, "shape") or loss.shape != ():
                raise ValueError(
                    f"loss_fn must return a scalar; it returns shape {getattr(loss, 'shape', loss)}"
                    " (reduce it, e.g. with jnp.mean)"
                )
        state0 = _trace("init_state", self.init_state, "", self.params0)
        params, _, loss = _trace("the step", self.step, batch_shapes, self.params0, state0, first)
        if jax.tree.structure(params) != jax.tree.structure(self.params0) or any(
            (a.shape, a.dtype) != (b.shape, b.dtype)
            for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(self.params0), strict=True)
        ):
            raise ValueError(
                "the step changes the parameters' structure, shapes or dtypes: params0 holds "
                f"{describe_shapes(self.params0)}, one step gives {describe_shapes(params)}"
            )
        if getattr(loss, "shape", None) != ():
            raise ValueError(f"the step must return a scalar loss; it returns {loss}")

    def parameters(self, theta: Any) -> Any:
        """The whole model at trained leaves `theta` (such as `train(...)[0]`): `theta`
        combined with the static leaves of `params0`."""
        return eqx.combine(theta, self.static)

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
        """Run training from `params0` (default: the run's own); return `(theta_T, losses)`,
        theta_T holding the trained leaves (`parameters(theta_T)` is the whole model).

        Pure and traceable: differentiate it, `vmap` it or `jit` it.
        """
        params0 = self.params0 if params0 is None else split_parameters(params0)[0]

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


def _check_optimizer(loss_fn: Any, optimizer: Any) -> None:
    """`TypeError` for the usual slips: arguments swapped, an optax factory uncalled."""
    if _is_transformation(loss_fn):
        raise TypeError(
            "TrainingRun(params0, loss_fn, optimizer, batches): the second argument is an "
            "optax optimizer; pass the loss function second and the optimizer third"
        )
    if loss_fn is None or optimizer is None:
        raise ValueError("TrainingRun needs either loss_fn and optimizer, or step")
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be a function (params, batch) -> scalar, received {loss_fn!r}"
        )
    if not _is_transformation(optimizer):
        name = getattr(optimizer, "__qualname__", type(optimizer).__name__)
        if getattr(optimizer, "__module__", "").startswith("optax"):
            name = f"optax.{name}"
        hint = (
            f"; {name} is a factory: call it, e.g. {name}(learning_rate)"
            if callable(optimizer)
            else ""
        )
        raise TypeError(f"optimizer must be an optax.GradientTransformation{hint}")


def _is_transformation(value: Any) -> bool:
    return callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))


def _trace(what: str, fn: Callable, batch_shapes: str, *args: Any) -> Any:
    """`jax.eval_shape(fn, *args)`; a failure is a `ValueError` naming `what` and the
    batch's shapes, with the first line of the original error."""
    where = f" and the first batch ({batch_shapes})" if batch_shapes else ""
    return eval_shape_explained(fn, *args, failure=f"{what} fails on params0{where}")


def _on_arrays_loss(loss_fn: Callable, static: Any) -> Callable:
    """`loss_fn` as a function of the trained leaves, the static ones put back."""
    return lambda arrays, batch: loss_fn(eqx.combine(arrays, static), batch)


def _on_arrays_step(step: Callable, static: Any) -> Callable:
    """A custom `step` as a function of the trained leaves, the static ones put back."""

    def on_arrays(arrays, state, batch):
        params, state, loss = step(eqx.combine(arrays, static), state, batch)
        return split_parameters(params)[0], state, loss

    return on_arrays


def _optax_step(loss_fn: Callable, optimizer: optax.GradientTransformation) -> Callable:
    def step(params, state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        return (*optax_update(optimizer, params, state, grads), loss)

    return step
