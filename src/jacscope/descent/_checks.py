"""Input checks of the descent package: one-line errors naming the argument.

Shapes are checked always; values (finiteness) only outside a trace, where they are
known.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_finite(x, name: str, what: str) -> None:
    if _concrete(x) and jnp.issubdtype(x.dtype, jnp.inexact):
        bad = ~np.isfinite(np.asarray(x))
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{what}: {name} has {int(bad.sum())} non-finite value(s) (first at {first})"
            )


def check_matrix(J, what: str) -> jax.Array:
    """`J` as an `(m, n)` floating-point array with m >= 1, finite outside a trace."""
    J = jnp.asarray(J)
    if J.ndim != 2 or J.shape[0] < 1:
        raise ValueError(f"{what}: the Jacobian must have shape (m, n) with m >= 1, got {J.shape}")
    if not jnp.issubdtype(J.dtype, jnp.floating):
        J = J.astype(jnp.result_type(float))
    _check_finite(J, "the Jacobian", what)
    return J


def check_gramian(G, what: str) -> jax.Array:
    """`G` as an `(m, m)` floating-point array with m >= 1, finite outside a trace."""
    G = jnp.asarray(G)
    if G.ndim != 2 or G.shape[0] != G.shape[1] or G.shape[0] < 1:
        raise ValueError(f"{what}: the Gramian must have shape (m, m) with m >= 1, got {G.shape}")
    if not jnp.issubdtype(G.dtype, jnp.floating):
        G = G.astype(jnp.result_type(float))
    _check_finite(G, "the Gramian", what)
    return G


def check_vectors(U, m: int, name: str, what: str) -> None:
    """`U` of shape `(m,)` or `(k, m)`, finite outside a trace."""
    if U.ndim not in (1, 2) or U.shape[-1] != m:
        raise ValueError(f"{what}: {name} must have shape ({m},) or (k, {m}), got {U.shape}")
    _check_finite(U, name, what)


def check_weights(weights, m: int, name: str, what: str) -> jax.Array:
    """A `(m,)` vector of weights, finite outside a trace."""
    weights = jnp.asarray(weights)
    if weights.shape != (m,):
        raise ValueError(f"{what}: {name} must have shape ({m},), got {weights.shape}")
    _check_finite(weights, name, what)
    return weights
