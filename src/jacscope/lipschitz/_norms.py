"""The two norms of the Lipschitz bounds: l_inf (-> the l_inf operator norm, the largest
l_1 norm of a row) and l_2 (-> the spectral norm)."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jacscope._validation import check_number


def check_norm(norm: Any, what: str) -> str:
    """`"inf"` for the l_inf ball, `"2"` for the l_2 ball; anything else is refused."""
    if isinstance(norm, str) and norm.lower() in ("inf", "linf", "l_inf"):
        return "inf"
    if isinstance(norm, int | float) and not isinstance(norm, bool):
        if math.isinf(norm) and norm > 0:
            return "inf"
        if norm == 2:
            return "2"
    if norm in ("2", "l2", "l_2"):
        return "2"
    raise ValueError(f'{what}: norm must be "inf" or 2, received {norm!r}')


def check_eps(eps: Any, what: str) -> None:
    """Refuse a radius that is not a finite number >= 0 when it is concrete."""
    check_number(eps, f"{what}: eps", positive=False)


def operator_norm(mat: jax.Array, norm: str) -> jax.Array:
    """||A||_{p -> p}: the largest row l_1 norm for p = inf, the spectral norm for p = 2."""
    if norm == "inf":
        return jnp.max(jnp.sum(jnp.abs(mat), axis=-1), axis=-1)
    return jnp.linalg.norm(mat, ord=2, axis=(-2, -1))


def dual_norm(vec: jax.Array, norm: str, axis: int = -1) -> jax.Array:
    """The dual norm along `axis`, max over the unit p-ball of <vec, x>: l_1 for p = inf,
    l_2 for p = 2."""
    if norm == "inf":
        return jnp.sum(jnp.abs(vec), axis=axis)
    return jnp.linalg.norm(vec, axis=axis)


def project_ball(x: jax.Array, center: jax.Array, eps: jax.Array, norm: str) -> jax.Array:
    """The Euclidean projection of `x` onto the p-ball of radius `eps` around `center`."""
    if norm == "inf":
        return jnp.clip(x, center - eps, center + eps)
    delta = x - center
    length = jnp.linalg.norm(delta)
    return center + delta * jnp.minimum(1.0, eps / jnp.maximum(length, jnp.finfo(x.dtype).tiny))
