r"""Lyapunov spectra of discrete maps by the QR method.

For a map x_{t+1} = F(x_t, u_t) with Jacobians J_t = dF/dx at x_t, the Lyapunov
exponents are the growth rates lambda_i = lim (1/T) log sigma_i(J_{T-1} ... J_0). The QR
method (Benettin, Galgani, Giorgilli & Strelcyn 1980) carries k orthonormal tangent
vectors Q: every step Q <- J_t Q (k JVPs of one linearisation, never J_t itself), and
every `reorthonormalize_every` steps Q R = Q, whose log |R_ii| accumulate to T lambda_i
for the k leading exponents. The run is cut into batches of equal length; each gives
one estimate, their mean is the exponent and their spread the standard error (batch
means), which holds when the batches are long against the correlation time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jacscope._validation import check_finite


class LyapunovSpectrum(NamedTuple):
    """The result of `lyapunov_spectrum`.

    - `exponents`: `(k,)` the k leading exponents, largest first, per step (or per unit
      time with `dt`).
    - `stderr`: `(k,)` their standard errors from the batch means.
    - `running`: `(num_batches, k)` the running estimates after each batch, for a
      convergence plot.
    - `kaplan_yorke`: the Kaplan-Yorke dimension j + (lambda_1 + ... + lambda_j) /
      |lambda_{j+1}|, j the largest index with a nonnegative partial sum.
    - `kaplan_yorke_resolved`: False when the k exponents' partial sums never turn
      negative and k < n, so that the dimension is at least k but not known (more
      exponents would resolve it); `kaplan_yorke` is then k, a lower bound.
    - `vectors`: `(n, k)` the final orthonormal tangent vectors (flat, in
      `ravel_pytree` order of the state), the backward Lyapunov vectors.
    - `num_steps`: the steps measured (after the transient).
    """

    exponents: jax.Array
    stderr: jax.Array
    running: jax.Array
    kaplan_yorke: jax.Array
    kaplan_yorke_resolved: jax.Array
    vectors: jax.Array
    num_steps: int


def kaplan_yorke_dimension(exponents: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """`(dimension, resolved)` of exponents sorted largest first (see `LyapunovSpectrum`)."""
    k = exponents.shape[0]
    partial = jnp.cumsum(exponents)
    nonnegative = partial >= 0
    j = jnp.sum(jnp.cumprod(nonnegative))  # leading run of nonnegative partial sums
    inside = j < k
    next_exponent = exponents[jnp.minimum(j, k - 1)]
    fraction = jnp.where(j > 0, partial[jnp.maximum(j - 1, 0)], 0.0) / jnp.abs(
        jnp.where(inside, next_exponent, 1.0)
    )
    dimension = jnp.where(inside, j + fraction, float(k))
    return dimension, inside | (k == n)


def lyapunov_spectrum(
    step: Callable[..., Any],
    x0: Any,
    inputs: Any = None,
    *,
    num_steps: int | None = None,
    k: int | None = None,
    transient: int = 0,
    reorthonormalize_every: int = 1,
    num_batches: int = 10,
    dt: float = 1.0,
    key: jax.Array,
) -> LyapunovSpectrum:
    r"""The k leading Lyapunov exponents of x_{t+1} = step(x_t[, u_t]) by the QR method.

    The state is any pytree of floating-point arrays (flattened, n scalars). With
    `inputs` (a pytree of arrays with a leading time axis), `step(x, u_t)` is driven by
    them, the first `transient` of them spent before measuring; without, `step(x)` is
    autonomous and runs `transient + num_steps` steps. The tangent vectors start as an
    orthonormal random k-frame drawn from `key`. The measured steps are cut into
    `num_batches` batches of whole reorthonormalisation blocks (a remainder is
    dropped). Pure, jit- and vmap-compatible (vmap over `x0` or a parameter closed over
    by `step`).

    **Arguments:**

    - `step`: `(x) -> x` or `(x, u) -> x`, the same pytree structure in and out.
    - `x0`: the initial state.
    - `inputs`: the driving inputs, leading axis the time, or `None`.
    - `num_steps`: measured steps when there are no inputs.
    - `k`: exponents wanted, `1 <= k <= n` (default n, the full spectrum).
    - `transient`: steps run before measuring, the tangents reorthonormalised at each
      so that they align with the leading directions.
    - `reorthonormalize_every`: steps between QR factorisations (more is cheaper but
      loses the smaller exponents once the tangents' growth ratio nears 1 / eps).
    - `num_batches`: batches for the standard error, `>= 2`.
    - `dt`: time per step; the exponents are divided by it (per unit time).
    - `key`: a PRNG key for the initial tangent frame.

    **Returns:** a `LyapunovSpectrum`.

    **Raises:** `ValueError` naming the problem: a non-finite leaf of `x0`, a step that
    changes the state's shapes, `k` out of range, too few steps for the batches, or
    both or neither of `inputs` and `num_steps`.

    Citation: Benettin, Galgani, Giorgilli & Strelcyn, "Lyapunov characteristic exponents for smooth dynamical systems and for Hamiltonian systems; a method for computing all of them", Meccanica, 1980.
    """  # noqa: E501
    check_finite(x0, "x0")
    flat0, unravel = ravel_pytree(x0)
    n = flat0.size
    k = n if k is None else int(k)
    if not 1 <= k <= n:
        raise ValueError(f"lyapunov_spectrum: k must be in 1..{n} (the state's size), got {k}")
    if (inputs is None) == (num_steps is None):
        raise ValueError("lyapunov_spectrum: give either inputs (a driven map) or num_steps")
    if num_batches < 2:
        raise ValueError(f"lyapunov_spectrum: num_batches must be >= 2, got {num_batches}")
    every = int(reorthonormalize_every)
    if every < 1:
        raise ValueError(f"lyapunov_spectrum: reorthonormalize_every must be >= 1, got {every}")
    if inputs is None:
        total = transient + int(num_steps)
        driven = False
        inputs = jnp.zeros((total, 0), flat0.dtype)
    else:
        total = jax.tree.leaves(inputs)[0].shape[0]
        driven = True
    measured = total - transient
    per_batch = (measured // every // num_batches) * every
    if per_batch < every:
        raise ValueError(
            f"lyapunov_spectrum: {measured} measured steps cannot fill {num_batches} batches "
            f"of whole blocks of {every} steps; run more steps or fewer batches"
        )

    def flat_step(x, u):
        out = step(unravel(x), u) if driven else step(unravel(x))
        flat, _ = ravel_pytree(out)
        return flat.astype(x.dtype)

    shape = jax.eval_shape(flat_step, flat0, jax.tree.map(lambda a: a[0], inputs))
    if shape.shape != (n,):
        raise ValueError(
            f"lyapunov_spectrum: step returns {shape.shape[0]} scalars from a state of {n}; "
            "it must return a state of the same structure"
        )

    def tangent_step(carry, u):
        x, Q = carry
        x_next, linear = jax.linearize(lambda y: flat_step(y, u), x)
        return (x_next, jax.vmap(linear, in_axes=1, out_axes=1)(Q)), None

    def block(carry, us):  # `every` steps, then one QR
        (x, Q), _ = jax.lax.scan(tangent_step, carry, us)
        Q, R = jnp.linalg.qr(Q)
        return (x, Q), jnp.log(jnp.abs(jnp.diagonal(R)))

    Q0, _ = jnp.linalg.qr(jax.random.normal(key, (n, k), flat0.dtype))
    carry = (flat0, Q0)
    warm = jax.tree.map(lambda a: a[:transient], inputs)
    if transient:  # reorthonormalised every step, so that no direction is lost
        carry, _ = jax.lax.scan(block, carry, jax.tree.map(lambda a: a[:, None], warm))
    rest = jax.tree.map(lambda a: a[transient : transient + per_batch * num_batches], inputs)
    batched = jax.tree.map(
        lambda a: a.reshape(num_batches, per_batch // every, every, *a.shape[1:]), rest
    )

    def batch(carry, us):
        carry, logs = jax.lax.scan(block, carry, us)
        return carry, jnp.sum(logs, axis=0) / (per_batch * dt)

    (_, Q), estimates = jax.lax.scan(batch, carry, batched)
    exponents = jnp.mean(estimates, axis=0)
    stderr = jnp.std(estimates, axis=0, ddof=1) / jnp.sqrt(num_batches)
    running = jnp.cumsum(estimates, axis=0) / jnp.arange(1, num_batches + 1)[:, None]
    dimension, resolved = kaplan_yorke_dimension(jnp.sort(exponents)[::-1], n)
    return LyapunovSpectrum(
        exponents=exponents,
        stderr=stderr,
        running=running,
        kaplan_yorke=dimension,
        kaplan_yorke_resolved=resolved,
        vectors=Q,
        num_steps=per_batch * num_batches,
    )
