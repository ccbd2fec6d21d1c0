r"""Covariant Lyapunov vectors of a map by Ginelli's method.

The backward Lyapunov vectors of `lyapunov_spectrum` (the QR frame Q_t) are orthonormal
and depend on the whole past; the covariant vectors v_t^i are the directions carried
into each other by the dynamics, J_t v_t^i = g_t^i v_{t+1}^i, whose mean log-growth
log |g_t^i| is lambda_i, and which need not be orthogonal (their angles measure how
close the dynamics is to a tangency, hyperbolicity). With J_t Q_t = Q_{t+1} R_{t+1}
stored along a forward run, v_t^i = Q_t c_t^i with C_t upper triangular: the backward
iteration C_t = R_{t+1}^{-1} C_{t+1} (columns normalised), started from a random upper
triangular C past the window and run for `backward_transient` steps before the window,
converges to it (Ginelli, Poggi, Turchi, Chate, Livi & Politi 2007). The growth
factors come with it: |g_t^i| = 1 / ||R_{t+1}^{-1} c_{t+1}^i||.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jacscope._memory import format_bytes
from jacscope.dynamics._lyapunov import _check_same_size, _flat_state


class CovariantLyapunovVectors(NamedTuple):
    """The result of `covariant_lyapunov_vectors`.

    - `vectors`: `(num_steps, n, k)` the unit covariant vectors v_t^1..v_t^k at each
      step of the window, columns ordered by exponent (flat, `ravel_pytree` order),
      each up to sign.
    - `states`: `(num_steps, n)` the flat states x_t they belong to.
    - `growth`: `(num_steps, k)` the local growth rates log ||J_t v_t^i|| of each vector.
    - `exponents`: `(k,)` the mean of `growth` over the window: the exponents.
    """

    vectors: jax.Array
    states: jax.Array
    growth: jax.Array
    exponents: jax.Array


def covariant_lyapunov_vectors(
    step: Callable[[Any], Any],
    x0: Any,
    *,
    num_steps: int,
    k: int | None = None,
    transient: int = 1000,
    backward_transient: int = 1000,
    max_bytes: int = 2**30,
    key: jax.Array,
) -> CovariantLyapunovVectors:
    r"""The k leading covariant Lyapunov vectors of x_{t+1} = step(x_t) along a window.

    Runs `transient` steps to align the QR frame, then `num_steps + backward_transient`
    steps storing each Q_t and R_{t+1} (the memory, checked against `max_bytes`:
    a method for small systems), then the backward iteration (see the module).

    **Arguments:**

    - `step`: `(x) -> x`, an autonomous map of a pytree state.
    - `x0`: the initial state.
    - `num_steps`: steps in the window the vectors are returned for.
    - `k`: vectors wanted, `1 <= k <= n` (default n).
    - `transient`: forward steps before the window (aligns the backward vectors).
    - `backward_transient`: steps after the window the backward iteration starts from
      (aligns C with the covariant directions).
    - `max_bytes`: the largest store of frames allowed.
    - `key`: a PRNG key for the initial frame and the starting C.

    **Returns:** a `CovariantLyapunovVectors`.

    **Raises:** `ValueError` naming the problem: a non-finite leaf of `x0`, a step that
    changes the state's shapes, `k` out of range, or a store larger than `max_bytes`
    (with the bytes it needs).

    Citation: Ginelli, Poggi, Turchi, Chate, Livi & Politi, "Characterizing dynamics with covariant Lyapunov vectors", Physical Review Letters, 2007.
    """  # noqa: E501
    caller = "covariant_lyapunov_vectors"
    flat0, unravel, n, k = _flat_state(x0, k, 2, caller)
    if num_steps < 1:
        raise ValueError(f"{caller}: num_steps must be >= 1, got {num_steps}")
    window = int(num_steps) + int(backward_transient)
    needed = window * (n * k + k * k + n) * flat0.dtype.itemsize
    if needed > max_bytes:
        raise ValueError(
            f"{caller}: storing {window} frames of a {n}-dimensional state needs "
            f"{format_bytes(needed)}, above max_bytes={format_bytes(max_bytes)}; use fewer "
            "steps or vectors, or raise max_bytes"
        )

    def flat_step(x):
        flat, _ = ravel_pytree(step(unravel(x)))
        return flat.astype(x.dtype)

    _check_same_size(flat_step, (flat0,), n, caller, "step")

    def forward(carry, _):
        x, Q = carry
        x_next, linear = jax.linearize(flat_step, x)
        Q_next, R = jnp.linalg.qr(jax.vmap(linear, in_axes=1, out_axes=1)(Q))
        return (x_next, Q_next), (x, Q, R)

    frame_key, triangle_key = jax.random.split(key)
    Q0, _ = jnp.linalg.qr(jax.random.normal(frame_key, (n, k), flat0.dtype))
    carry, _ = jax.lax.scan(forward, (flat0, Q0), length=int(transient))
    _, (states, frames, triangles) = jax.lax.scan(forward, carry, length=window)

    def backward(C_next, R):  # c_t = R_{t+1}^{-1} c_{t+1}, normalised
        C = jax.scipy.linalg.solve_triangular(R, C_next, lower=False)
        norms = jnp.linalg.norm(C, axis=0)
        return C / norms, (C / norms, -jnp.log(norms))

    C_end = jnp.triu(jax.random.normal(triangle_key, (k, k), flat0.dtype))
    C_end = C_end / jnp.linalg.norm(C_end, axis=0)
    _, (coefficients, growth) = jax.lax.scan(backward, C_end, triangles, reverse=True)
    # scan's outputs: coefficients[t] = C_t (the frame at x_t), growth[t] = log |g_t|.
    vectors = jnp.einsum("tnk,tkj->tnj", frames[:num_steps], coefficients[:num_steps])
    growth = growth[:num_steps]
    return CovariantLyapunovVectors(
        vectors=vectors,
        states=states[:num_steps],
        growth=growth,
        exponents=jnp.mean(growth, axis=0),
    )
