"""`solve_sequence`: a recurrence s_t = step(s_{t-1}, x_t) evaluated at all t at once."""

from __future__ import annotations

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
from jacscope.parallel._linear_recurrence import linear_recurrence
from jacscope.parallel._options import Options, make_options
from jacscope.parallel._solution import SequenceSolution, sequential_solution
from jacscope.parallel._tree import (
    broadcast_leading,
    check_like,
    index,
    leading_lengths,
    pad_leading,
    shift_right,
    slice_leading,
    truncate,
    update_leading,
)

SEQUENCE_METHODS = (
    "sequential",
    "jacobi",
    "block_gauss_seidel",
    "jacobi_window",
    "deer",
    "quasi_deer",
)


def solve_sequence(
    step: Callable,
    init: Any,
    inputs: Any = None,
    *,
    method: str = "jacobi",
    length: int | None = None,
    tol: float | None = None,
    max_iter: int | None = None,
    block_size: int | None = None,
    window: int | None = None,
    guess: Any = None,
    return_iterates: bool = False,
) -> SequenceSolution:
    r"""Evaluate s_t = step(s_{t-1}, x_t), t = 0, ..., T-1, s_{-1} = `init`, in parallel.

    The T equations s_t = step(s_{t-1}, x_t) form a lower-triangular nonlinear system
    s = G(s), G(s)_t = step(s_{t-1}, x_t). Fixed-point methods update every position at
    once and are exact after at most T iterations, because position t is exact as soon
    as its predecessor is (prefix convergence): whatever the guess, iterate k is exact
    at positions t < k (Song, Meng, Liao & Ermon 2021).

    Methods:

    - `"sequential"`: `jax.lax.scan`, the reference (T steps).
    - `"jacobi"`: s^{k+1} = G(s^k), all positions in parallel.
    - `"block_gauss_seidel"`: blocks of `block_size` positions run in parallel, each a
      sequential scan from the state its predecessor block ended in at the previous
      iteration; exact after ceil(T / block_size) iterations.
    - `"jacobi_window"`: Jacobi updates restricted to a window of `window` positions
      that slides past the converged prefix (at least one position per iteration).
    - `"deer"`: Newton's method on s = G(s) (DEER, Lim et al. 2024). With J_t the Jacobian
      of step at (s^k_{t-1}, x_t), s^{k+1}_t = step(s^k_{t-1}, x_t) + J_t (s^{k+1}_{t-1} -
      s^k_{t-1}), a linear recurrence solved by an associative scan. Quadratic
      convergence near the solution; dense J_t costs n^2 memory per position.
    - `"quasi_deer"`: the same with J_t replaced by its diagonal (quasi-DEER, Gonzalez
      et al. 2024).

    Stopping: after each iteration, if every position moved by at most `tol` (max norm;
    discrete leaves must not change at all) the iteration stops; that verifying
    iteration is counted. The iteration count never exceeds T (ceil(T / block_size) for
    block Gauss-Seidel), where the result is the sequential one whatever the stopping
    rule said. For discrete states (integer leaves) the result then equals sequential
    evaluation exactly; for continuous ones it is a point whose Jacobi residual is at
    most `tol`, which is within `tol / (1 - L)` of the sequential result when the step
    is an L-contraction (in a chaotic regime the iteration runs to the cap instead).
    The Newton steps replace a non-finite update at a position by the Jacobi update
    there, which keeps prefix convergence through overflows of products of Jacobians.

    Gradients (reverse mode, with respect to `init`, `inputs` and anything `step`
    closes over) use implicit differentiation: with lambda_t = dL/ds_t + J_{t+1}^T
    lambda_{t+1}, the adjoint linear recurrence run backward in time, solved by the
    same method (for DEER: one Newton step, i.e. one associative scan over the dense
    transposed Jacobians). This needs every leaf of the state to be floating point.

    **Arguments:**

    - `step`: `(state, x) -> state`, a pure JAX function; it must return the structure,
      shapes and dtypes of `init`.
    - `init`: the state s_{-1}, a pytree of arrays.
    - `inputs`: a pytree whose leaves share the leading sequence axis T, or `None` (then
      `step` receives `None` and `length` gives T).
    - `method`: one of the methods above.
    - `length`: T, needed only when `inputs` is `None`.
    - `tol`: the stopping tolerance on the max-norm change per iteration; default
      `eps ** 0.75` of the state's dtype (6e-6 in float32, 2e-12 in float64).
    - `max_iter`: stop after this many iterations (clipped to the exactness cap).
    - `block_size`: positions per block for `"block_gauss_seidel"`, default ceil(sqrt(T)).
    - `window`: window length for `"jacobi_window"`, default min(T, 64).
    - `guess`: the starting iterate (leading axis T); default `init` at every position.
    - `return_iterates`: also return every iterate (memory `(max_iter + 1) * T` states).

    **Returns:** a `SequenceSolution` with `states` (leading axis T: s_0, ..., s_{T-1}),
    `iterations`, `converged`, `depth` and `iterates`.

    ```python
    cell = equinox.nn.GRUCell(4, 16, key=key)
    sol = jacscope.parallel.solve_sequence(lambda h, x: cell(x, h), h0, xs, method="deer")
    sol.states, sol.iterations
    ```

    Citation: Song, Meng, Liao & Ermon, "Accelerating Feedforward Computation via Parallel
    Nonlinear Equation Solving", ICML, 2021.

    Citation: Lim et al., "Parallelizing non-linear sequential models over the sequence
    length", arXiv 2309.12252.

    Citation: Gonzalez et al., "Towards Scalable and Stable Parallelization of Nonlinear
    RNNs", NeurIPS, 2024.
    """
    if method not in SEQUENCE_METHODS:
        raise ValueError(f"method must be one of {SEQUENCE_METHODS}, received {method!r}")
    init = jax.tree.map(jnp.asarray, init)
    inputs = jax.tree.map(jnp.asarray, inputs)
    num = _sequence_length(inputs, length)
    check_finite(init, "init")
    check_finite(inputs, "inputs")
    first = index(inputs, 0)
    check_like(jax.eval_shape(step, init, first), init, "step(init, inputs[0])", "init")

    if method == "sequential":
        return _sequential(step, init, inputs, num, return_iterates)

    floating = all(jnp.issubdtype(leaf.dtype, jnp.inexact) for leaf in jax.tree.leaves(init))
    if method in ("deer", "quasi_deer") and not floating:
        raise ValueError(
            f"method={method!r} linearises the step, so every leaf of init must be floating "
            f"point; received dtypes {[str(leaf.dtype) for leaf in jax.tree.leaves(init)]}"
        )
    if guess is None:
        guess = broadcast_leading(init, num)
    else:
        guess = jax.tree.map(jnp.asarray, guess)
        per_position = jax.eval_shape(partial(broadcast_leading, length=num), init)
        check_like(guess, per_position, "guess", "init at every position")
    opts = make_options(
        method,
        num,
        init,
        tol=tol,
        max_iter=max_iter,
        block_size=block_size,
        window=window,
        record=return_iterates,
    )
    fn, consts = hoist(step, init, first)
    solve = _solve if floating else _run
    states, (iterations, converged, iterates) = solve(opts, fn, consts, init, inputs, guess)
    depth = opts.depth(iterations)
    if iterates is not None:
        iterates = jax.lax.stop_gradient(iterates)
    return SequenceSolution(states, iterations, converged, depth, iterates)


def _sequence_length(inputs: Any, length: int | None) -> int:
    if inputs is None or not jax.tree.leaves(inputs):
        if length is None:
            raise ValueError("pass length=T when inputs is None (there is no sequence axis)")
        num = length
    else:
        num = leading_lengths(inputs, "inputs")
        if length is not None and length != num:
            raise ValueError(f"length={length} disagrees with the leading axis {num} of inputs")
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"the sequence length must be a positive integer, received {num!r}")
    return num


def _sequential(step, init, inputs, num, record) -> SequenceSolution:
    def body(state, x):
        state = step(state, x)
        return state, state

    _, states = jax.lax.scan(body, init, inputs, length=num)
    return sequential_solution(states, num, record)


def _run(opts: Options, fn, consts, init, inputs, guess):
    """Dispatch to the method; returns `(states, (iterations, converged, iterates))`."""
    step = partial(_call, fn, consts)
    loop = partial(fixed_point_loop, cap=opts.cap, max_iter=opts.max_iter, record=opts.record)
    num = opts.length

    if opts.method == "jacobi":

        def update(buf, aux):
            new = jax.vmap(step)(shift_right(buf, init), inputs)
            return new, aux, jnp.all(unchanged_positions(new, buf, opts.tol))

        states, _, k, converged, iterates = loop(update, guess, None)

    elif opts.method == "block_gauss_seidel":
        block = opts.block_size
        blocks = -(-num // block)
        extra = blocks * block - num
        blocked_inputs = jax.tree.map(
            lambda a: a.reshape(blocks, block, *a.shape[1:]), pad_leading(inputs, extra)
        )

        def run_block(state, xs):
            def body(s, x):
                s = step(s, x)
                return s, s

            return jax.lax.scan(body, state, xs, length=block)[1]

        def update(buf, aux):
            padded = pad_leading(buf, extra)
            ends = jax.tree.map(lambda a: a[block - 1 :: block][: blocks - 1], padded)
            starts = jax.tree.map(lambda s, e: jnp.concatenate([s[None], e]), init, ends)
            new = jax.vmap(run_block)(starts, blocked_inputs)
            new = jax.tree.map(lambda a: a.reshape(blocks * block, *a.shape[2:])[:num], new)
            return new, aux, jnp.all(unchanged_positions(new, buf, opts.tol))

        states, _, k, converged, iterates = loop(update, guess, None)

    elif opts.method == "jacobi_window":
        width = opts.window
        padded_inputs = pad_leading(inputs, width)

        def update(buf, start):
            prev = slice_leading(shift_right(buf, init), start, width)
            new = jax.vmap(step)(prev, slice_leading(padded_inputs, start, width))
            following = window_advance(new, slice_leading(buf, start, width), start, num, opts.tol)
            return update_leading(buf, new, start), following, following >= num

        padded, _, k, converged, iterates = loop(
            update, pad_leading(guess, width), jnp.asarray(0), view=partial(truncate, length=num)
        )
        states = truncate(padded, num)

    else:
        states, k, converged, iterates = _newton(opts, step, init, inputs, guess, loop)
    return states, (k, converged, iterates)


def _call(fn, consts, state, x):
    return fn(state, x, *consts)


def _newton(opts: Options, step, init, inputs, guess, loop):
    """DEER (dense Jacobians) or quasi-DEER (their diagonals) on the flattened state."""
    flat_init, unravel = ravel_pytree(init)
    quasi = opts.method == "quasi_deer"

    def flat_step(s, x):
        return ravel_pytree(step(unravel(s), x))[0]

    def linearise(s, x):
        value, jac = value_and_jacobian(lambda z: flat_step(z, x), s)
        return (jnp.diagonal(jac) if quasi else jac), value

    def update(buf, aux):
        jac, value = jax.vmap(linearise)(shift_right(buf, flat_init), inputs)
        delta = linear_recurrence(jac, value - buf)
        before = jnp.concatenate([jnp.zeros_like(delta[:1]), delta[:-1]])
        correction = jac * before if quasi else jnp.einsum("tij,tj->ti", jac, before)
        newton = value + correction
        new = jnp.where(jnp.all(jnp.isfinite(newton), axis=1, keepdims=True), newton, value)
        return new, aux, jnp.all(unchanged_positions(new, buf, opts.tol))

    flat_guess = jax.vmap(lambda s: ravel_pytree(s)[0])(guess)
    flat, _, k, converged, iterates = loop(update, flat_guess, None, view=jax.vmap(unravel))
    return jax.vmap(unravel)(flat), k, converged, iterates


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _solve(opts, fn, consts, init, inputs, guess):
    return _run(opts, fn, consts, init, inputs, guess)


def _solve_fwd(opts, fn, consts, init, inputs, guess):
    out = _run(opts, fn, consts, init, inputs, guess)
    return out, (out[0], consts, init, inputs)


def _solve_bwd(opts, fn, residuals, cotangents):
    states, consts, init, inputs = residuals
    adjoint = _adjoint(opts, fn, consts, states, inputs, cotangents[0])

    def sweep(c, prev, xs):
        return jax.vmap(lambda p, x: fn(p, x, *c))(prev, xs)

    _, pullback = jax.vjp(sweep, consts, shift_right(states, init), inputs)
    consts_bar, prev_bar, inputs_bar = pullback(adjoint)
    return consts_bar, index(prev_bar, 0), inputs_bar, None


_solve.defvjp(_solve_fwd, _solve_bwd)


def _adjoint(opts: Options, fn, consts, states, inputs, cotangent):
    """lambda_t = cotangent_t + J_{t+1}^T lambda_{t+1}, by `solve_sequence` in reverse time.

    The recurrence is linear in the cotangent, so it is solved for the cotangent scaled
    to unit max norm (the tolerance then means the same as in the forward pass) and
    scaled back.
    """
    unit, scale = normalise(cotangent)
    following = jax.tree.map(lambda a: jnp.concatenate([a[1:], a[-1:]]), inputs)

    def adjoint_step(mu, item):
        g, state, x_next = item
        _, pullback = jax.vjp(lambda s: fn(s, x_next, *consts), state)
        return jax.tree.map(jnp.add, g, pullback(mu)[0])

    reverse = partial(jax.tree.map, lambda a: a[::-1])
    items = reverse((unit, states, following))
    sol = solve_sequence(
        adjoint_step,
        jax.tree.map(jnp.zeros_like, index(states, 0)),
        items,
        method=opts.method,
        tol=opts.tol,
        block_size=opts.block_size,
        window=opts.window,
    )
    return jax.tree.map(lambda a: a[::-1] * scale, sol.states)
