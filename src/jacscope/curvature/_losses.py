"""The common losses of a model's outputs, with their Hessians in closed form.

A loss of a model f with per-example outputs z_n = f(x_n) in R^C (the outputs'
non-batch axes, flattened) and targets y_n is `l_n = l(z_n, y_n)`; its Hessian with
respect to the outputs, `H_n = d^2 l_n / d z_n^2` (C x C), is applied to a tangent
without being formed:

- `"cross_entropy"`: `l = -sum_c t_c log softmax(z)_c`, with t the one-hot vector of an
  integer label or soft targets; `H u = s (p * u - p (p . u))`, `p = softmax(z)`,
  `s = sum_c t_c` (1 for labels), i.e. `H = s (diag(p) - p p^T)`.
- `"mse"`: `l = sum_c (z_c - y_c)^2` (no 1/2, no 1/C); `H u = 2 u`.
- `"bernoulli"`: `l = sum_c softplus(z_c) - y_c z_c`, the binary cross-entropy of
  logits; `H u = sigma(z) (1 - sigma(z)) u`.

Targets: for `"cross_entropy"` the outputs are `(B, C)` logits and the targets either
integer labels `(B,)` in `[0, C)` or floating-point class weights `(B, C)`; for
`"mse"` and `"bernoulli"` the targets have the outputs' shape (Bernoulli targets in
`[0, 1]`). None of the Hessians depends on the targets beyond `s`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jacscope._parameters import describe_shapes
from jacscope._validation import eval_shape_explained
from jacscope.curvature._batches import split_pair


class Loss(NamedTuple):
    """A loss of a model's outputs, by name.

    **Fields:**

    - `name`: `"cross_entropy"`, `"mse"` or `"bernoulli"`.
    - `per_example`: `(outputs (B, ...), targets) -> (B,)` losses `l_n`.
    - `hessian_product`: `(outputs, targets, tangent) -> H_n tangent_n` for every
      example n, the tangent and result shaped like the outputs.
    - `check_targets`: `(outputs_shape, targets, what, values) -> None`, raising a
      one-line `ValueError` for targets that do not fit the outputs: their shape, and,
      with `values=True` and concrete targets, their values (labels in range,
      Bernoulli targets in [0, 1]).
    """

    name: str
    per_example: Callable[[jax.Array, jax.Array], jax.Array]
    hessian_product: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
    check_targets: Callable[[tuple[int, ...], Any, str, bool], None]


def _sum_per_example(x: jax.Array) -> jax.Array:
    return jnp.sum(x.reshape(x.shape[0], -1), axis=1)


def _is_integer(targets: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(targets), jnp.integer)


def _check_same_shape(shape, targets, what: str, name: str) -> None:
    if tuple(np.shape(targets)) != tuple(shape):
        raise ValueError(
            f"{what}: targets of shape {tuple(np.shape(targets))} do not match outputs of "
            f"shape {tuple(shape)}: loss={name!r} needs targets of the outputs' shape"
        )


def _check_outputs(shape, what: str, name: str) -> None:
    if len(shape) == 0:
        raise ValueError(
            f"{what}: model_fn returns a scalar; loss={name!r} needs outputs with a leading "
            "example axis, (examples, ...)"
        )


def _concrete(targets: Any) -> np.ndarray | None:
    return None if isinstance(targets, jax.core.Tracer) else np.asarray(targets)


# cross-entropy ----------------------------------------------------------------------------


def _ce_per_example(logits, targets):
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    if _is_integer(targets):
        return -jnp.take_along_axis(log_probs, targets[:, None], axis=-1)[:, 0]
    return -jnp.sum(targets * log_probs, axis=-1)


def _ce_hessian_product(logits, targets, tangent):
    probs = jax.nn.softmax(logits, axis=-1)
    out = probs * tangent - probs * jnp.sum(probs * tangent, axis=-1, keepdims=True)
    if _is_integer(targets):
        return out
    return jnp.sum(targets, axis=-1, keepdims=True) * out


def _ce_check(shape, targets, what, values):
    if len(shape) != 2:
        raise ValueError(
            f"{what}: loss='cross_entropy' needs outputs of shape (examples, classes), "
            f"model_fn returns shape {tuple(shape)}"
        )
    if _is_integer(targets):
        if tuple(np.shape(targets)) != (shape[0],):
            raise ValueError(
                f"{what}: integer labels of shape {tuple(np.shape(targets))} do not match "
                f"outputs of shape {tuple(shape)}: loss='cross_entropy' needs labels of shape "
                f"({shape[0]},) (or class weights of shape {tuple(shape)})"
            )
        labels = _concrete(targets) if values else None
        if labels is not None and labels.size and (labels.min() < 0 or labels.max() >= shape[1]):
            bad = labels[(labels < 0) | (labels >= shape[1])][0]
            raise ValueError(
                f"{what}: label {int(bad)} is outside [0, {shape[1]}), the {shape[1]} classes "
                "of the outputs"
            )
        return
    if tuple(np.shape(targets)) != tuple(shape):
        raise ValueError(
            f"{what}: targets of shape {tuple(np.shape(targets))} do not match outputs of "
            f"shape {tuple(shape)}: loss='cross_entropy' needs integer labels of shape "
            f"({shape[0]},) or class weights of shape {tuple(shape)}"
        )


# mean squared error --------------------------------------------------------------------


def _mse_per_example(outputs, targets):
    return _sum_per_example((outputs - targets) ** 2)


def _mse_hessian_product(outputs, targets, tangent):
    return 2 * tangent


def _mse_check(shape, targets, what, values):
    _check_outputs(shape, what, "mse")
    _check_same_shape(shape, targets, what, "mse")


# Bernoulli (binary cross-entropy on logits) -------------------------------------------------


def _bernoulli_per_example(logits, targets):
    return _sum_per_example(jax.nn.softplus(logits) - targets * logits)


def _bernoulli_hessian_product(logits, targets, tangent):
    sigma = jax.nn.sigmoid(logits)
    return sigma * (1 - sigma) * tangent


def _bernoulli_check(shape, targets, what, values):
    _check_outputs(shape, what, "bernoulli")
    _check_same_shape(shape, targets, what, "bernoulli")
    given = _concrete(targets) if values else None
    if given is not None and given.size and (given.min() < 0 or given.max() > 1):
        bad = given[(given < 0) | (given > 1)][0]
        raise ValueError(f"{what}: loss='bernoulli' needs targets in [0, 1], received {bad}")


LOSSES = {
    "cross_entropy": Loss("cross_entropy", _ce_per_example, _ce_hessian_product, _ce_check),
    "mse": Loss("mse", _mse_per_example, _mse_hessian_product, _mse_check),
    "bernoulli": Loss(
        "bernoulli", _bernoulli_per_example, _bernoulli_hessian_product, _bernoulli_check
    ),
}


def get_loss(name: Any, what: str) -> Loss:
    """The `Loss` called `name`, or a `ValueError` listing the valid names."""
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"{what}: loss must be one of {tuple(LOSSES)}, received {name!r}")
    return LOSSES[name]


def output_shape(
    model_fn: Callable, flat: jax.Array, unravel: Callable, batch: Any, loss: Loss, what: str
) -> tuple[int, ...]:
    """The shape of `model_fn`'s outputs on a batch `(inputs, targets)`, after checking
    that the model runs on the inputs and that the targets fit its outputs.

    **Raises:** `ValueError` naming the batch's shapes if `model_fn` fails on the inputs
    or returns something other than one floating-point array; `ValueError` from
    `loss.check_targets` for targets that do not fit.
    """
    inputs, targets = split_pair(batch, what)
    out = eval_shape_explained(
        lambda q: model_fn(unravel(q), inputs),
        flat,
        failure=f"{what}: model_fn fails on params and inputs {describe_shapes(inputs)}",
    )
    if not isinstance(out, jax.ShapeDtypeStruct) or not jnp.issubdtype(out.dtype, jnp.inexact):
        raise ValueError(
            f"{what}: model_fn must return one floating-point array of outputs, returned "
            f"{jax.tree.map(lambda s: f'{s.dtype}{tuple(s.shape)}', out)}"
        )
    loss.check_targets(tuple(out.shape), targets, what, True)
    return tuple(out.shape)
