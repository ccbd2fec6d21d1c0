"""Dense materialisation of an operator under a memory budget."""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jacscope._memory import format_bytes
from jacscope._validation import check_count
from jacscope.operators._linear_operator import AbstractLinearOperator
from jacscope.operators._matrix import MatrixOperator

_MATRIX_FREE = (
    "op.mv / op.rmv / op.mm, jacscope.linalg.svd_topk, jacscope.linalg.spectral_norm, "
    "jacscope.linalg.trace, jacscope.linalg.frobenius_sq, jacscope.linalg.spectral_density"
)


class DenseTooLarge(MemoryError):
    """A dense matrix was requested that does not fit the memory budget.

    Carries `shape`, `dtype`, `needed_bytes` and `max_bytes`; the message names the
    matrix-free functions that answer the same questions without forming it.
    """

    def __init__(self, shape: tuple[int, int], dtype, needed_bytes: int, max_bytes: int):
        self.shape = tuple(shape)
        self.dtype = jnp.dtype(dtype)
        self.needed_bytes = int(needed_bytes)
        self.max_bytes = int(max_bytes)
        super().__init__(
            f"the dense {shape[0]} x {shape[1]} {self.dtype.name} matrix needs "
            f"{self.needed_bytes:,} bytes ({format_bytes(self.needed_bytes)}), over the budget "
            f"max_bytes={self.max_bytes:,} ({format_bytes(self.max_bytes)}). "
            f"Use the matrix-free functions instead: {_MATRIX_FREE}."
        )


def _apply_one(op: AbstractLinearOperator, forward: bool, v: jax.Array) -> jax.Array:
    return op._mv(v) if forward else op._rmv(v)


def _working_bytes_per_vector(op: AbstractLinearOperator, forward: bool) -> int:
    """Working memory of one product, from XLA's memory analysis (fallback: a guess)."""
    m, n = op.shape
    length = n if forward else m
    dtype = jnp.result_type(op.dtype)
    probe = jnp.zeros((length,), dtype)
    try:
        dynamic, static = eqx.partition(op, eqx.is_array)
        apply = lambda dyn, v: _apply_one(eqx.combine(dyn, static), forward, v)
        stats = jax.jit(apply).lower(dynamic, probe).compile().memory_analysis()
        per_vector = int(stats.temp_size_in_bytes + stats.output_size_in_bytes)
    except Exception:  # memory analysis is not offered by every backend
        per_vector = 0
    return max(per_vector, 4 * (m + n) * jnp.dtype(dtype).itemsize, 1)


@functools.partial(eqx.filter_jit, donate="none")
def _fill(op: AbstractLinearOperator, forward: bool, chunk_size: int) -> jax.Array:
    m, n = op.shape
    count = n if forward else m
    apply_block = jax.vmap(op._mv if forward else op._rmv, in_axes=1, out_axes=1)
    dtype = jnp.result_type(op.dtype)
    result = jnp.zeros((m, n), dtype)

    def block(start, size, result):
        basis = (jnp.arange(count)[:, None] == (start + jnp.arange(size))[None, :]).astype(dtype)
        cols = apply_block(basis)  # forward: (m, size) columns; reverse: (n, size) rows^T
        if forward:
            return jax.lax.dynamic_update_slice(result, cols, (0, start))
        return jax.lax.dynamic_update_slice(result, cols.T, (start, 0))

    num_full, remainder = divmod(count, chunk_size)
    result = jax.lax.fori_loop(
        0, num_full, lambda c, res: block(c * chunk_size, chunk_size, res), result
    )
    if remainder:
        result = block(num_full * chunk_size, remainder, result)
    return result


_MODES = ("auto", "forward", "reverse")


def materialize(
    op: AbstractLinearOperator, max_bytes: int, chunk_size: int | None = None, mode: str = "auto"
) -> jax.Array:
    """Dense matrix of `op`; see `AbstractLinearOperator.materialize`.

    A `MatrixOperator` is already dense: its matrix is returned as it is, whatever the
    budget, since nothing new is allocated.
    """
    if isinstance(op, MatrixOperator):
        return op.matrix
    m, n = op.shape
    dtype = jnp.result_type(op.dtype)
    needed = m * n * jnp.dtype(dtype).itemsize
    if needed > max_bytes:
        raise DenseTooLarge(op.shape, dtype, needed, max_bytes)
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, _MODES))}, got {mode!r}")
    forward = n <= m if mode == "auto" else mode == "forward"
    count = n if forward else m
    if chunk_size is None:
        per_vector = _working_bytes_per_vector(op, forward)
        chunk_size = int(np.clip((max_bytes - needed) // per_vector, 1, count))
    else:
        check_count(chunk_size, "chunk_size")
    return _fill(op, forward, int(min(chunk_size, count)))
