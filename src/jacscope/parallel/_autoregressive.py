"""`solve_autoregressive`: x_t = step(x_{<t}, u_t) evaluated at all t at once."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jacscope._validation import check_finite
from jacscope.parallel._iterate import (
    fixed_point_loop,
    hoist,
    normalise,
    unchanged_positions,
    value_and_jacobian,
    window_advance,
)
from jacscope.parallel._options import Options, make_options
from jacscope.parallel._solution import SequenceSolution, sequential_solution
from jacscope.parallel._tree import (
    check_like,
    leading_lengths,
    pad_leading,
    slice_leading,
    truncate,
    update_leading,
)

AUTOREGRESSIVE_METHODS = ("sequential", "jacobi", "block_gauss_seidel", "jacobi_window", "deer")


def solve_autoregressive(
    step: Callable,
    guess: Any,
    noise: Any = None,
    *,
    method: str = "jacobi",
    tol: float | None = None,
    max_iter: int | None = None,
    block_size: int | None = None,
    window: int | None = None,
    return_iterates: bool = False,
) -> SequenceSolution:
    r"""Evaluate an autoregressive computation x_t = F(x_0, ..., x_{t-1}; u_t) in parallel.

    `step(x, noise)` is the causal map: it computes every position at once, and its
    output at position t may depend only on `x[:t]` and on the pre-drawn noise u_t (a
    MADE or a causal transformer computes all conditionals in one forward pass). The
    sequential computation applies it T times, fixing one position per pass; the fixed
    point x = step(x, noise) of the triangular system is the same sequence, and
    fixed-point iteration is exact after at most T passes (Song, Meng, Liao & Ermon
    2021; Jacobi decoding: Santilli et al. 2023).

    With the noise drawn beforehand, sampling is a deterministic map: x_t =
    [u_t < sigmoid(logit_t)] for binary outputs, x_t = argmax(logit_t + g_t) with
    Gumbel noise g_t for categorical ones, and greedy decoding uses no noise. For such
    discrete outputs the stopping rule "no position changed" certifies that the result
    equals sequential evaluation bitwise.

    Methods: `"sequential"` (T passes), `"jacobi"` (every position each pass),
    `"block_gauss_seidel"` (`block_size` passes per iteration, each fixing the next
    position of every block; exact after ceil(T / block_size) iterations) and
    `"jacobi_window"` (only the `window` positions past the converged prefix are
    updated) and `"deer"`, Newton's method for floating-point outputs: with L = d step / d x
    at the iterate (strictly block lower triangular, so L^T = 0), x^{k+1} = x^k + delta,
    (I - L) delta = step(x^k) - x^k, solved in parallel as delta = (I + L)(I + L^2)
    (I + L^4) ... (I + L^(2^(m-1))) r with 2^m >= T (the Neumann series of a nilpotent L,
    by repeated squaring: ceil(log2 T) products of N x N matrices, N the number of
    scalars in x). Newton converges quadratically near the solution and, like Jacobi,
    fixes at least one more position per iteration; a non-finite update at a position
    is replaced by the Jacobi update there. It forms L densely (N^2 memory), so it
    suits short sequences of small states. Quasi-DEER's diagonal Jacobian is zero for a
    causal map (it would be Jacobi); for a Markov recurrence use `solve_sequence`.

    Stopping, the cap and the result are as in `solve_sequence`. Continuous outputs are
    differentiable (reverse mode, with respect to `noise` and whatever `step` closes
    over) by implicit differentiation: the adjoint lambda = g + (d step / d x)^T lambda
    is again triangular and is solved by Jacobi iteration in at most T passes.

    **Arguments:**

    - `step`: `(x, noise) -> x`, causal, returning the structure, shapes and dtypes of
      `guess`.
    - `guess`: the starting iterate; its leaves share the leading sequence axis T.
    - `noise`: any pytree handed to `step` unchanged (`None` for greedy decoding).
    - `method`, `tol`, `max_iter`, `block_size`, `window`, `return_iterates`: as in
      `solve_sequence`.

    **Returns:** a `SequenceSolution`; `states` holds the outputs x_0, ..., x_{T-1}.

    !!! warning
        Causality is the caller's promise: a `step` whose position t reads later
        positions has no triangular structure, and the cap no longer certifies anything.

    Citation: Song, Meng, Liao & Ermon, "Accelerating Feedforward Computation via Parallel
    Nonlinear Equation Solving", ICML, 2021.

    Citation: Santilli et al., "Accelerating Transformer Inference for Translation via
    Parallel Decoding", ACL, 2023.

    Citation: Lim et al., "Parallelizing non-linear sequential models over the sequence
    length", arXiv 2309.12252.
    """
    if method not in AUTOREGRESSIVE_METHODS:
        hint = " (quasi-DEER needs the Markov form: solve_sequence)" if "deer" in method else ""
        raise ValueError(
            f"method must be one of {AUTOREGRESSIVE_METHODS}, received {method!r}{hint}"
        )
    guess = jax.tree.map(jnp.asarray, guess)
    noise = jax.tree.map(jnp.asarray, noise)
    num = leading_lengths(guess, "guess")
    check_finite(guess, "guess")
    check_finite(noise, "noise")
    check_like(jax.eval_shape(step, guess, noise), guess, "step(guess, noise)", "guess")

    if method == "sequential":
        return _sequential(step, guess, noise, num, return_iterates)

    opts = make_options(
        method,
        num,
        guess,
        tol=tol,
        max_iter=max_iter,
        block_size=block_size,
        window=window,
        record=return_iterates,
    )
    fn, consts = hoist(step, guess, noise)
    floating = all(jnp.issubdtype(leaf.dtype, jnp.inexact) for leaf in jax.tree.leaves(guess))
    if method == "deer" and not floating:
        raise ValueError(
            "method='deer' linearises the step, so every leaf of guess must be floating "
            f"point; received dtypes {[str(leaf.dtype) for leaf in jax.tree.leaves(guess)]}"
        )
    solve = _solve if floating else _run
    states, (iterations, converged, iterates) = solve(opts, fn, consts, noise, guess)
    depth = opts.depth(iterations)
    if iterates is not None:
        iterates = jax.lax.stop_gradient(iterates)
    return SequenceSolution(states, iterations, converged, depth, iterates)


def _set_position(t, x, y):
    return jax.tree.map(lambda a, b: a.at[t].set(b[t]), x, y)


def _sequential(step, guess, noise, num, record) -> SequenceSolution:
    states = jax.lax.fori_loop(0, num, lambda t, x: _set_position(t, x, step(x, noise)), guess)
    return sequential_solution(states, num, record)


def _run(opts: Options, fn, consts, noise, guess):
    """Dispatch to the method; returns `(outputs, (iterations, converged, iterates))`."""

    def causal(x):
        return fn(x, noise, *consts)

    loop = partial(fixed_point_loop, cap=opts.cap, max_iter=opts.max_iter, record=opts.record)
    num = opts.length

    if opts.method == "jacobi":

        def update(x, aux):
            new = causal(x)
            return new, aux, jnp.all(unchanged_positions(new, x, opts.tol))

        states, _, k, converged, iterates = loop(update, guess, None)

    elif opts.method == "block_gauss_seidel":
        block = opts.block_size
        firsts = jnp.arange(-(-num // block)) * block

        def inner(j, x):
            where = firsts + j
            y = causal(x)
            return jax.tree.map(
                lambda a, b: a.at[where].set(b[jnp.minimum(where, num - 1)], mode="drop"), x, y
            )

        def update(x, aux):
            new = jax.lax.fori_loop(0, block, inner, x)
            return new, aux, jnp.all(unchanged_positions(new, x, opts.tol))

        states, _, k, converged, iterates = loop(update, guess, None)

    elif opts.method == "deer":
        states, k, converged, iterates = _newton(opts, causal, guess, loop)

    else:
        width = opts.window

        def update(buf, start):
            new = slice_leading(pad_leading(causal(truncate(buf, num)), width), start, width)
            following = window_advance(new, slice_leading(buf, start, width), start, num, opts.tol)
            return update_leading(buf, new, start), following, following >= num

        padded, _, k, converged, iterates = loop(
            update, pad_leading(guess, width), jnp.asarray(0), view=partial(truncate, length=num)
        )
        states = truncate(padded, num)
    return states, (k, converged, iterates)


def _newton(opts: Options, causal, guess, loop):
    """DEER for a causal map: Newton steps on the flattened outputs."""
    flat_guess, unravel = ravel_pytree(guess)
    squarings = max(0, math.ceil(math.log2(opts.length)))

    def flat_causal(x):
        return ravel_pytree(causal(unravel(x)))[0]

    def update(x, aux):
        value, jac = value_and_jacobian(flat_causal, x)

        def double(carry, _):
            delta, power = carry
            return (delta + power @ delta, power @ power), None

        (delta, _), _ = jax.lax.scan(double, (value - x, jac), None, length=squarings)
        newton, jacobi = unravel(x + delta), unravel(value)
        finite = jnp.ones((opts.length,), bool)
        for leaf in jax.tree.leaves(newton):
            finite = finite & jnp.all(jnp.isfinite(leaf.reshape(opts.length, -1)), axis=1)
        new = jax.tree.map(
            lambda n, j: jnp.where(finite.reshape((-1,) + (1,) * (n.ndim - 1)), n, j),
            newton,
            jacobi,
        )
        same = unchanged_positions(new, unravel(x), opts.tol)
        return ravel_pytree(new)[0], aux, jnp.all(same)

    flat, _, k, converged, iterates = loop(update, flat_guess, None, view=unravel)
    return unravel(flat), k, converged, iterates


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _solve(opts, fn, consts, noise, guess):
    return _run(opts, fn, consts, noise, guess)


def _solve_fwd(opts, fn, consts, noise, guess):
    out = _run(opts, fn, consts, noise, guess)
    return out, (out[0], consts, noise)


def _solve_bwd(opts, fn, residuals, cotangents):
    states, consts, noise = residuals
    g = cotangents[0]
    _, pullback = jax.vjp(lambda x, c, u: fn(x, u, *c), states, consts, noise)
    unit, scale = normalise(g)

    def update(lam, aux):
        new = jax.tree.map(jnp.add, unit, pullback(lam)[0])
        return new, aux, jnp.all(unchanged_positions(new, lam, opts.tol))

    cap = opts.length
    lam, *_ = fixed_point_loop(update, unit, None, cap=cap, max_iter=cap, record=False)
    _, consts_bar, noise_bar = pullback(jax.tree.map(lambda a: a * scale, lam))
    return consts_bar, noise_bar, None


_solve.defvjp(_solve_fwd, _solve_bwd)
