"""Linear recurrences x_t = A_t x_{t-1} + b_t in O(log T) depth by an associative scan."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _compose_dense(earlier, later):
    a1, b1 = earlier
    a2, b2 = later
    return a2 @ a1, jnp.einsum("...ij,...j->...i", a2, b1) + b2


def _compose_diagonal(earlier, later):
    a1, b1 = earlier
    a2, b2 = later
    return a2 * a1, a2 * b1 + b2


def linear_recurrence(a: jax.Array, b: jax.Array, init: jax.Array | None = None) -> jax.Array:
    """Solve x_t = A_t x_{t-1} + b_t for t = 0, ..., T-1 with x_{-1} = `init` (zero if None).

    The affine maps x -> A_t x + b_t compose associatively,
    (A_2, b_2) o (A_1, b_1) = (A_2 A_1, A_2 b_1 + b_2), so all T prefixes are computed
    by `jax.lax.associative_scan` in O(log T) sequential depth (Blelloch, 1990). This is
    the linear solve inside each Newton step of DEER (Lim et al. 2024).

    **Arguments:**

    - `a`: `(T, n, n)` dense transition matrices, or `(T, n)` for diagonal ones.
    - `b`: `(T, n)` offsets.
    - `init`: `(n,)` state before the first step, or `None` for zero.

    **Returns:** `(T, n)`, the states x_0, ..., x_{T-1}.

    Positions only see earlier positions: a non-finite value at t never reaches an
    output before t. An overflow of a product of matrices times an exactly zero offset
    gives NaN (inf * 0), not zero.

    Citation: Lim et al., "Parallelizing non-linear sequential models over the sequence
    length", arXiv 2309.12252.
    """
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    if b.ndim != 2:
        raise ValueError(f"b must have shape (T, n), received shape {b.shape}")
    diagonal = a.shape == b.shape
    if not diagonal and a.shape != (*b.shape, b.shape[1]):
        raise ValueError(
            f"a must have shape {b.shape} (diagonal) or {(*b.shape, b.shape[1])} (dense) "
            f"for b of shape {b.shape}, received shape {a.shape}"
        )
    if init is not None:
        first = a[0] * init if diagonal else a[0] @ init
        b = b.at[0].add(first)
    compose = _compose_diagonal if diagonal else _compose_dense
    _, x = jax.lax.associative_scan(compose, (a, b))
    return x
