"""Local linearisation of a network, whole or layer by layer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jacscope._validation import check_finite
from jacscope.operators import jacobian_operator

_METHODS = ("full", "marginal")


def as_layers(f: Callable | Sequence[Callable], what: str) -> tuple[Callable, ...]:
    """`f` as a non-empty tuple of layer functions (a single callable is one layer)."""
    layers = (f,) if callable(f) else tuple(f)
    if not layers or not all(callable(layer) for layer in layers):
        raise ValueError(f"{what}: f must be a callable or a non-empty sequence of callables")
    return layers


def compose(layers: tuple[Callable, ...]) -> Callable:
    """x -> layers[-1](... layers[0](x)), each output flattened to a vector."""

    def composed(x):
        for layer in layers:
            x = jnp.ravel(layer(x))
        return x

    return composed


def check_method(method: Any, what: str) -> str:
    """`"full"` or `"marginal"`, or a `ValueError`."""
    if method not in _METHODS:
        raise ValueError(f"{what}: method must be one of {_METHODS}, received {method!r}")
    return method


def check_location(loc: Any, name: str, what: str) -> jax.Array:
    """A finite floating-point vector `(n,)`."""
    loc = jnp.asarray(loc)
    if loc.ndim != 1 or loc.shape[0] < 1:
        raise ValueError(f"{what}: {name} must be a vector (n,), received shape {loc.shape}")
    if not jnp.issubdtype(loc.dtype, jnp.inexact):
        raise ValueError(f"{what}: {name} must hold floating-point values, received {loc.dtype}")
    check_finite(loc, f"{what}: {name}")
    return loc


def linearise(fn: Callable, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`(fn(x), J)`: the value (flattened) and the dense Jacobian of `fn` at `x`.

    `J` comes from `jacscope.jacobian_operator`, built column by column (JVPs) or row
    by row (VJPs), whichever is fewer.
    """
    op = jacobian_operator(lambda v: jnp.ravel(fn(v)), x)
    return op.primal_out, op.materialize(chunk_size=min(op.shape))
