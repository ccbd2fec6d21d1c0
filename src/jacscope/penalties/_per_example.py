"""The input Jacobian of a per-example model over a batch, as one block-diagonal operator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jacscope._validation import check_finite
from jacscope.operators import JacobianOperator, jacobian_operator


class BatchJacobian(NamedTuple):
    """The Jacobians J_b = d f(params, x_b) / d x_b of every example of a batch at once.

    `op` maps R^(B d) -> R^(B m) and is block diagonal: its flat input is the batch
    `(B, d)` in row-major order, its flat output `(B, m)` likewise, so
    `op.mv(V.ravel()).reshape(B, m)[b] = J_b V[b]` and
    `op.rmv(U.ravel()).reshape(B, d)[b] = J_b^T U[b]`.
    """

    op: JacobianOperator
    batch_size: int
    in_dim: int
    out_dim: int


def example_fn(f: Callable, params: Any, example_shape: tuple[int, ...]) -> Callable:
    """`x_flat (d,) -> ravel(f(params, x_flat.reshape(example_shape))) (m,)`."""

    def flat(x_flat: jax.Array) -> jax.Array:
        return ravel_pytree(f(params, x_flat.reshape(example_shape)))[0]

    return flat


def check_batch(x: Any, what: str) -> jax.Array:
    """A batch with a leading example axis, refused (naming its shape) when it has none."""
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(
            f"{what}: x must be a batch with a leading example axis (B, ...) and B >= 1, "
            f"received shape {x.shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        raise ValueError(f"{what}: x must hold floating-point values, received dtype {x.dtype}")
    return x


def batch_jacobian(f: Callable, params: Any, x: jax.Array, what: str) -> BatchJacobian:
    """The block-diagonal Jacobian of `x_b -> f(params, x_b)` over the batch `x` (B, ...).

    `f` maps one example to any pytree of arrays; it is applied to each example with
    `jax.vmap`, so the examples do not interact and the Jacobian is block diagonal.
    """
    x = check_batch(x, what)
    check_finite(params, f"{what}: params")
    batch = x.shape[0]
    flat = example_fn(f, params, x.shape[1:])
    op = jacobian_operator(jax.vmap(flat), x.reshape(batch, -1))
    return BatchJacobian(op, batch, op.shape[1] // batch, op.shape[0] // batch)


def normalise_rows(mat: jax.Array) -> jax.Array:
    """Each row divided by its Euclidean norm; zero rows stay zero."""
    norms = jnp.linalg.norm(mat, axis=-1, keepdims=True)
    tiny = jnp.finfo(mat.dtype).tiny
    return mat / jnp.maximum(norms, tiny)
