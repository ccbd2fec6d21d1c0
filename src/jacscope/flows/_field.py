"""The vector field of FFJORD's experiments: an MLP that sees the time at every layer."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def init_concat_field(
    key: jax.Array, dim: int, hidden: Sequence[int] = (64, 64, 64), *, dtype=jnp.float32
) -> list:
    """Parameters of `concat_field` from R^dim to R^dim: per layer `(w, b)`, `w` of shape
    `(fan_in + 1, fan_out)` drawn N(0, 1 / (fan_in + 1)), `b` zero."""
    sizes = (int(dim), *(int(h) for h in hidden), int(dim))
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        (
            jax.random.normal(k, (a + 1, b), dtype) / jnp.sqrt(a + 1).astype(dtype),
            jnp.zeros(b, dtype),
        )
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def concat_field(t, z: jax.Array, layers: list) -> jax.Array:
    """dz/dt = f(t, z): every layer maps [h, t] affinely, tanh between layers (FFJORD's
    "concat" layers); `(t, z, params)` as `cnf_log_density` calls it.

    Citation: Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud, "FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models", ICLR, 2019.
    """  # noqa: E501
    h = z
    for i, (w, b) in enumerate(layers):
        h = jnp.concatenate([h, jnp.full((1,), t, h.dtype)]) @ w + b
        h = jnp.tanh(h) if i < len(layers) - 1 else h
    return h
