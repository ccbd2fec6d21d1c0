"""The fixed-point loop shared by every parallel method, and its stopping rules.

A sequential computation of length T is the triangular system x = G(x): position t
of G(x) depends only on positions before t. Every method here iterates an update
built from G until a stopping rule holds, under a hard cap on the number of
iterations at which the iterate is provably the sequential result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jacscope._validation import check_count
from jacscope.parallel._tree import dtype_of, leading_length


def is_discrete(tree: Any) -> bool:
    """Whether no leaf of `tree` is floating point (integer tokens, boolean bits)."""
    return not any(jnp.issubdtype(dtype_of(leaf), jnp.inexact) for leaf in jax.tree.leaves(tree))


def default_tolerance(tree: Any) -> float:
    """`eps ** 0.75` of the least precise floating-point leaf of `tree`; 0 when none is.

    About 6e-6 in float32 and 2e-12 in float64: far below any modelling error, and
    reached by Jacobi iterations (which become bitwise stationary) and by Newton
    iterations (which converge quadratically) alike.
    """
    eps = [
        float(jnp.finfo(dtype_of(leaf)).eps)
        for leaf in jax.tree.leaves(tree)
        if jnp.issubdtype(dtype_of(leaf), jnp.inexact)
    ]
    return max(eps) ** 0.75 if eps else 0.0


def unchanged_positions(new: Any, old: Any, tol: float) -> jax.Array:
    """A boolean `(T,)` vector: position t is unchanged when every leaf satisfies
    `max |new[t] - old[t]| <= tol` (floating leaves; NaN counts as changed) or
    `new[t] == old[t]` (integer and boolean leaves)."""
    length = leading_length(new)
    flags = jnp.ones((length,), bool)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old), strict=True):
        a2 = jnp.reshape(a, (length, -1))
        b2 = jnp.reshape(b, (length, -1))
        if jnp.issubdtype(a2.dtype, jnp.inexact):
            same = jnp.abs(a2 - b2) <= tol
        else:
            same = a2 == b2
        flags = flags & jnp.all(same, axis=1)
    return flags


def window_advance(new: Any, old: Any, start: jax.Array, length: int, tol: float) -> jax.Array:
    """Where a sliding window that started at `start` starts next.

    `new` and `old` hold the window's positions `start, ..., start + W - 1` after and
    before one Jacobi update. The leading unchanged positions are final, and so is the
    first changed one: it was computed from final predecessors (for discrete outputs it
    is then exact; for continuous ones it is as accurate as they are). The window moves
    past them, by at least one and at most W positions, and never beyond `length`.
    """
    width = leading_length(new)
    inside = start + jnp.arange(width) < length
    settled = unchanged_positions(new, old, tol) | ~inside
    leading = jnp.sum(jnp.cumprod(settled.astype(jnp.int32)))
    return jnp.minimum(start + jnp.minimum(leading + 1, width), length)


def fixed_point_loop(
    update: Callable,
    buf0: Any,
    aux0: Any,
    *,
    cap: int,
    max_iter: int,
    record: bool,
    view: Callable = lambda buf: buf,
):
    """Iterate `buf, aux, done = update(buf, aux)` until `done` or `max_iter` iterations.

    `cap` is the iteration count at which the iterate is exact whatever happened
    before (prefix convergence); `max_iter <= cap` may stop earlier. The loop is a
    `jax.lax.while_loop` with a static bound, so it jits and vmaps (under `vmap` each
    batch member keeps its own count).

    **Returns:** `(buf, aux, iterations, converged, iterates)`. `converged` holds when
    the stopping rule was met or the cap reached; `iterates` is `None` unless `record`,
    else `view(buf)` after every iteration stacked on a new leading axis of length
    `max_iter + 1` (row 0 is the starting point; rows past `iterations` repeat the
    result).
    """
    if record:
        first = view(buf0)
        iterates0 = jax.tree.map(
            lambda a: jnp.broadcast_to(a, (max_iter + 1, *a.shape)).copy(), first
        )
    else:
        iterates0 = None

    def cond(carry):
        k, _, _, done, _ = carry
        return (~done) & (k < max_iter)

    def body(carry):
        k, buf, aux, _, iterates = carry
        buf, aux, done = update(buf, aux)
        if record:
            iterates = jax.tree.map(lambda its, a: its.at[k + 1].set(a), iterates, view(buf))
        return k + 1, buf, aux, done, iterates

    carry0 = (jnp.asarray(0, jnp.int32), buf0, aux0, jnp.asarray(False), iterates0)
    k, buf, aux, done, iterates = jax.lax.while_loop(cond, body, carry0)
    if record:
        final = view(buf)
        rows = jnp.arange(max_iter + 1)
        iterates = jax.tree.map(
            lambda its, a: jnp.where((rows <= k).reshape((-1,) + (1,) * a.ndim), its, a[None]),
            iterates,
            final,
        )
    return buf, aux, k, done | (k >= cap), iterates


def value_and_jacobian(fn: Callable, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`(fn(x), d fn / d x)` for a vector `x`, from one forward-mode pass (`jax.jacfwd`)."""
    jac, value = jax.jacfwd(lambda z: (fn(z),) * 2, has_aux=True)(x)
    return value, jac


def normalise(tree: Any) -> tuple[Any, jax.Array]:
    """`(tree / c, c)` with c the largest absolute value in `tree` (at least the smallest
    positive float): a linear problem in `tree` is solved at unit scale, where an
    absolute tolerance means what it means for the forward pass, and scaled back."""
    leaves = jax.tree.leaves(tree)
    largest = jnp.max(jnp.stack([jnp.max(jnp.abs(leaf)) for leaf in leaves]))
    scale = jnp.maximum(largest, jnp.finfo(largest.dtype).tiny)
    return jax.tree.map(lambda a: a / scale, tree), scale


def hoist(step: Callable, *example_args: Any) -> tuple[Callable, list]:
    """`jax.closure_convert(step, *example_args)`: the arrays `step` closes over become
    explicit trailing arguments, so a custom VJP can return their cotangents.

    `step` is wrapped in a fresh function first, because the conversion is cached by
    hashing the callable and a bound method of a module holding arrays is unhashable.
    """
    return jax.closure_convert(lambda *args: step(*args), *example_args)


def resolve_max_iter(max_iter: int | None, cap: int) -> int:
    """`max_iter` clipped to the exactness cap; `cap` when `None`."""
    if max_iter is None:
        return cap
    return min(check_count(max_iter, "max_iter"), cap)
