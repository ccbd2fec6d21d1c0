"""`SequenceSolution`: what a parallel evaluation of a sequential computation returns."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class SequenceSolution(NamedTuple):
    """The result of `solve_sequence` or `solve_autoregressive`.

    **Fields:**

    - `states`: the sequence, a pytree whose leaves have the sequence length T as
      leading axis (position t holds s_t, or the output x_t).
    - `iterations`: how many iterations ran (for `"sequential"`: T steps). The pass
      that verified convergence is counted.
    - `converged`: whether the result is certified to be the sequential result: the
      stopping rule held, or the iteration count reached the method's exactness cap
      (T for Jacobi, DEER and quasi-DEER and the window; the number of blocks for block
      Gauss-Seidel). `False` only when a `max_iter` below the cap cut the run short.
    - `depth`: the number of step evaluations on the critical path, the parallel time:
      T for sequential evaluation, `iterations` for Jacobi, the window and (quasi-)DEER
      (each of whose Newton steps adds an O(log T) scan), `iterations * block_size` for
      block Gauss-Seidel.
    - `iterates`: `None` unless requested; otherwise the iterates stacked along a new
      leading axis, row 0 the starting guess and rows past `iterations` repeating the
      result. They carry no gradient.

    Convert to JSON with `{k: numpy.asarray(v).tolist() for k, v in sol._asdict().items()}`.
    """

    states: Any
    iterations: jax.Array
    converged: jax.Array
    depth: jax.Array
    iterates: Any = None


def sequential_solution(states: Any, length: int, record: bool) -> SequenceSolution:
    """The solution of sequential evaluation: T steps, certified by construction."""
    count = jnp.asarray(length, jnp.int32)
    iterates = jax.tree.map(lambda a: a[None], states) if record else None
    return SequenceSolution(states, count, jnp.asarray(True), count, iterates)
