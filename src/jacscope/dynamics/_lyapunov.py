r"""Lyapunov spectra of discrete maps and of ODEs by the QR method.

For a map x_{t+1} = F(x_t, u_t) with Jacobians J_t = dF/dx at x_t, the Lyapunov
exponents are the growth rates lambda_i = lim (1/T) log sigma_i(J_{T-1} ... J_0). The QR
method (Benettin, Galgani, Giorgilli & Strelcyn 1980) carries k orthonormal tangent
vectors Q: every step Q <- J_t Q (k JVPs of one linearisation, never J_t itself), and
every `reorthonormalize_every` steps Q R = Q, whose log |R_ii| accumulate to T lambda_i
for the k leading exponents. For an ODE dx/dt = f(t, x) the tangents follow the
variational equation dQ/dt = Df(t, x) Q (k JVPs of the vector field per evaluation),
solved with x by diffrax over each reorthonormalisation interval; the exponents are per
unit time. The run is cut into batches of equal length; each gives one estimate, their
mean is the exponent and their spread the standard error (batch means), which holds
when the batches are long against the correlation time. The per-block values
log |R_ii| / (block's duration) are the local (finite-time) exponents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jacscope._extras import require
from jacscope._ode import solve_to_end
from jacscope._validation import check_finite


class LyapunovSpectrum(NamedTuple):
    """The result of `lyapunov_spectrum` and `lyapunov_spectrum_ode`.

    - `exponents`: `(k,)` the k leading exponents, largest first, per step (or per unit
      time with `dt`, and always for an ODE).
    - `stderr`: `(k,)` their standard errors from the batch means.
    - `running`: `(num_batches, k)` the running estimates after each batch, for a
      convergence plot.
    - `batch_estimates`: `(num_batches, k)` each batch's own estimate (their spread
      gives `stderr`, and that of any sum of exponents).
    - `kaplan_yorke`: the Kaplan-Yorke dimension j + (lambda_1 + ... + lambda_j) /
      |lambda_{j+1}|, j the largest index with a nonnegative partial sum.
    - `kaplan_yorke_resolved`: False when the k exponents' partial sums never turn
      negative and k < n, so that the dimension is at least k but not known (more
      exponents would resolve it); `kaplan_yorke` is then k, a lower bound.
    - `vectors`: `(n, k)` the final orthonormal tangent vectors (flat, in
      `ravel_pytree` order of the state), the backward Lyapunov vectors.
    - `num_steps`: the steps (ODE: reorthonormalisation intervals) measured, after the
      transient.
    - `local`: with `local=True`, `(num_blocks, k)` the local (finite-time) exponents of
      each reorthonormalisation block in order, else `None`.
    """

    exponents: jax.Array
    stderr: jax.Array
    running: jax.Array
    batch_estimates: jax.Array
    kaplan_yorke: jax.Array
    kaplan_yorke_resolved: jax.Array
    vectors: jax.Array
    num_steps: int
    local: jax.Array | None = None


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


def _flat_state(x0: Any, k: int | None, num_batches: int, caller: str):
    """`(flat0, unravel, n, k)` of a checked state and a checked k."""
    check_finite(x0, "x0")
    flat0, unravel = ravel_pytree(x0)
    n = flat0.size
    k = n if k is None else int(k)
    if not 1 <= k <= n:
        raise ValueError(f"{caller}: k must be in 1..{n} (the state's size), got {k}")
    if num_batches < 2:
        raise ValueError(f"{caller}: num_batches must be >= 2, got {num_batches}")
    return flat0, unravel, n, k


def _check_same_size(fn, args, n: int, caller: str, what: str) -> None:
    shape = jax.eval_shape(fn, *args)
    if shape.shape != (n,):
        raise ValueError(
            f"{caller}: {what} returns {shape.shape[0]} scalars from a state of {n}; "
            "it must return a state of the same structure"
        )


def _qr_method(
    block: Callable,
    carry: tuple[jax.Array, jax.Array],
    warm: Any,
    measured: Any,
    *,
    block_time: float,
    n: int,
    local: bool,
) -> LyapunovSpectrum:
    """Run `block` (carry, xs) -> (carry, log |diag R|) over the warm blocks, then over
    `measured` (leading axes: batch, block), and reduce to a `LyapunovSpectrum`."""
    if jax.tree.leaves(warm) and jax.tree.leaves(warm)[0].shape[0]:
        carry, _ = jax.lax.scan(block, carry, warm)

    def batch(carry, xs):
        return jax.lax.scan(block, carry, xs)

    (_, Q), logs = jax.lax.scan(batch, carry, measured)
    num_batches, blocks_per_batch, k = logs.shape
    estimates = jnp.sum(logs, axis=1) / (blocks_per_batch * block_time)
    exponents = jnp.mean(estimates, axis=0)
    stderr = jnp.std(estimates, axis=0, ddof=1) / jnp.sqrt(num_batches)
    running = jnp.cumsum(estimates, axis=0) / jnp.arange(1, num_batches + 1)[:, None]
    dimension, resolved = kaplan_yorke_dimension(jnp.sort(exponents)[::-1], n)
    return LyapunovSpectrum(
        exponents=exponents,
        stderr=stderr,
        running=running,
        batch_estimates=estimates,
        kaplan_yorke=dimension,
        kaplan_yorke_resolved=resolved,
        vectors=Q,
        num_steps=num_batches * blocks_per_batch,
        local=logs.reshape(-1, k) / block_time if local else None,
    )


def _reorthonormalize(x: jax.Array, Q: jax.Array):
    Q, R = jnp.linalg.qr(Q)
    return (x, Q), jnp.log(jnp.abs(jnp.diagonal(R)))


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
    local: bool = False,
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
    - `local`: also return the local exponents of every reorthonormalisation block.
    - `key`: a PRNG key for the initial tangent frame.

    **Returns:** a `LyapunovSpectrum`.

    **Raises:** `ValueError` naming the problem: a non-finite leaf of `x0`, a step that
    changes the state's shapes, `k` out of range, too few steps for the batches, or
    both or neither of `inputs` and `num_steps`.

    Citation: Benettin, Galgani, Giorgilli & Strelcyn, "Lyapunov characteristic exponents for smooth dynamical systems and for Hamiltonian systems; a method for computing all of them", Meccanica, 1980.
    """  # noqa: E501
    flat0, unravel, n, k = _flat_state(x0, k, num_batches, "lyapunov_spectrum")
    if (inputs is None) == (num_steps is None):
        raise ValueError("lyapunov_spectrum: give either inputs (a driven map) or num_steps")
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

    first = jax.tree.map(lambda a: a[0], inputs)
    _check_same_size(flat_step, (flat0, first), n, "lyapunov_spectrum", "step")

    def tangent_step(carry, u):
        x, Q = carry
        x_next, linear = jax.linearize(lambda y: flat_step(y, u), x)
        return (x_next, jax.vmap(linear, in_axes=1, out_axes=1)(Q)), None

    def block(carry, us):  # `every` steps, then one QR
        (x, Q), _ = jax.lax.scan(tangent_step, carry, us)
        return _reorthonormalize(x, Q)

    Q0, _ = jnp.linalg.qr(jax.random.normal(key, (n, k), flat0.dtype))
    # The transient is reorthonormalised every step, so that no direction is lost.
    warm = jax.tree.map(lambda a: a[:transient, None], inputs)
    rest = jax.tree.map(lambda a: a[transient : transient + per_batch * num_batches], inputs)
    batched = jax.tree.map(
        lambda a: a.reshape(num_batches, per_batch // every, every, *a.shape[1:]), rest
    )
    return _qr_method(block, (flat0, Q0), warm, batched, block_time=every * dt, n=n, local=local)


def lyapunov_spectrum_ode(
    vector_field: Callable[[Any, Any], Any],
    x0: Any,
    *,
    duration: float,
    interval: float,
    k: int | None = None,
    transient: float = 0.0,
    num_batches: int = 10,
    solver: Any = None,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 4096,
    local: bool = False,
    key: jax.Array,
) -> LyapunovSpectrum:
    r"""The k leading Lyapunov exponents of dx/dt = vector_field(t, x), per unit time.

    x and k tangent vectors Q are solved together by diffrax, dx/dt = f(t, x) and
    dQ/dt = Df(t, x) Q (the variational equation, k JVPs of one linearisation of f per
    evaluation, never Df itself), and Q is reorthonormalised every `interval`: the
    log |R_ii| of each interval accumulate to duration * lambda_i. The sum of all n
    exponents is the time average of the divergence tr Df, to the solver's tolerance.
    Time starts at 0; the first `transient` (rounded down to whole intervals) is spent
    before measuring, then `duration` (rounded down to whole batches of whole intervals)
    is measured. Pure, jit- and vmap-compatible. Needs the `ode` extra (diffrax).

    **Arguments:**

    - `vector_field`: `(t, x) -> dx/dt`, the same pytree structure as `x`.
    - `x0`: the initial state, a pytree of floating-point arrays.
    - `duration`: the time measured, after the transient.
    - `interval`: the time between QR factorisations (short enough that the tangents'
      growth ratio over it stays far from 1 / eps: exp((lambda_1 - lambda_k) interval)).
    - `k`: exponents wanted, `1 <= k <= n` (default n, the full spectrum).
    - `transient`: time run before measuring.
    - `num_batches`: batches for the standard error, `>= 2`.
    - `solver`: a diffrax solver (default `diffrax.Tsit5()`).
    - `rtol`, `atol`: the adaptive step-size controller's tolerances, for x and Q alike.
    - `max_steps`: the solver's step limit per interval (diffrax raises past it).
    - `local`: also return the local exponents of every interval.
    - `key`: a PRNG key for the initial tangent frame.

    **Returns:** a `LyapunovSpectrum`, exponents per unit time.

    **Raises:** `ValueError` naming the problem (a non-finite leaf of `x0`, a field that
    changes the state's shapes, `k` out of range, a non-positive interval, a duration
    shorter than `num_batches` intervals); `MissingExtra` without diffrax.

    Citation: Benettin, Galgani, Giorgilli & Strelcyn, "Lyapunov characteristic exponents for smooth dynamical systems and for Hamiltonian systems; a method for computing all of them", Meccanica, 1980.
    """  # noqa: E501
    require("diffrax", "lyapunov_spectrum_ode")  # before any work
    caller = "lyapunov_spectrum_ode"
    flat0, unravel, n, k = _flat_state(x0, k, num_batches, caller)
    if not interval > 0:
        raise ValueError(f"{caller}: interval must be positive, got {interval}")
    per_batch = int(duration / interval / num_batches + 1e-9)
    if per_batch < 1:
        raise ValueError(
            f"{caller}: a duration of {duration} cannot fill {num_batches} batches of whole "
            f"intervals of {interval}; measure longer or use fewer batches"
        )
    num_warm = int(transient / interval + 1e-9)

    def flat_field(t, x):
        flat, _ = ravel_pytree(vector_field(t, unravel(x)))
        return flat.astype(x.dtype)

    _check_same_size(flat_field, (0.0, flat0), n, caller, "vector_field")

    def variational(t, y, args):
        x, Q = y
        dx, linear = jax.linearize(lambda z: flat_field(t, z), x)
        return dx, jax.vmap(linear, in_axes=1, out_axes=1)(Q)

    def block(carry, t0):
        (x, Q), _ = solve_to_end(
            variational, carry, t0=t0, t1=t0 + interval, solver=solver, rtol=rtol,
            atol=atol, max_steps=max_steps, caller=caller,
        )  # fmt: skip
        return _reorthonormalize(x, Q)

    Q0, _ = jnp.linalg.qr(jax.random.normal(key, (n, k), flat0.dtype))
    starts = interval * jnp.arange(num_warm + per_batch * num_batches, dtype=flat0.dtype)
    measured = starts[num_warm:].reshape(num_batches, per_batch)
    return _qr_method(
        block, (flat0, Q0), starts[:num_warm], measured, block_time=interval, n=n, local=local
    )
