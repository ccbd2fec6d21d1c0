"""A plain matrix as a jacscope operator."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jacscope.operators._linear_operator import AbstractLinearOperator


class MatrixOperator(AbstractLinearOperator):
    """The operator `v -> M v` of a dense `(m, n)` matrix `M`.

    `mv(v) = M @ v` and `rmv(u) = M.T @ u`; the dtype is the matrix's own, and
    `materialize()` returns `M` itself (no products, no copy). The matrix is an array
    leaf of the operator, so under `jax.jit` operators of the same shape and dtype
    share one compilation and the matrix is an argument rather than a constant baked
    into the program.

    **Arguments:**

    - `matrix`: a 2-D real floating-point array (JAX or NumPy) with both sides >= 1.

    **Raises:** `ValueError` naming the shape or dtype, for anything else.

    Build it with `jacscope.matrix_operator`.
    """

    matrix: jax.Array
    shape: tuple[int, int] = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)

    def __init__(self, matrix: Any):
        matrix = jnp.asarray(matrix)
        if matrix.ndim != 2 or min(matrix.shape) < 1:
            raise ValueError(
                f"matrix_operator expects a 2-D matrix of shape (m, n) with m, n >= 1, "
                f"received shape {tuple(matrix.shape)}"
            )
        if not jnp.issubdtype(matrix.dtype, jnp.floating):
            raise ValueError(
                f"matrix_operator expects a real floating-point matrix, received dtype "
                f"{matrix.dtype}; convert it first, e.g. matrix.astype(float)"
            )
        self.matrix = matrix
        self.shape = (int(matrix.shape[0]), int(matrix.shape[1]))
        self.dtype = jnp.dtype(matrix.dtype)

    def _mv(self, v):
        return self.matrix @ v

    def _rmv(self, u):
        return self.matrix.T @ u


def matrix_operator(matrix: jax.Array | np.ndarray) -> MatrixOperator:
    """A dense matrix as a jacscope operator: `mv(v) = M v`, `rmv(u) = M^T u`.

    Any function of `jacscope.linalg` then applies to it, which is how its results
    are checked against dense references; see `MatrixOperator`.

    **Arguments:**

    - `matrix`: a 2-D real floating-point array `M` of shape `(m, n)`; its dtype
      becomes the operator's.

    **Returns:** a `MatrixOperator` of shape `(m, n)`.

    **Raises:** `ValueError` if `matrix` is not 2-D, has an empty side, or is not of a
    real floating-point dtype.

    ```python
    A = jacscope.matrix_operator(jnp.arange(6.0).reshape(2, 3))
    A.mv(jnp.ones(3))    # [3., 12.]
    ```
    """
    return MatrixOperator(matrix)
