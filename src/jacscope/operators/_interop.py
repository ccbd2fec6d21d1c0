"""jacscope operators in other libraries: lineax (both ways) and SciPy.

Neither library is imported by `import jacscope`: each function here imports the one
it needs when it is called; without lineax, `to_lineax` and `from_lineax` name the
`lineax` extra to install.
Conventions on both sides are jacscope's: flat 1-D vectors, one real floating-point
dtype, kept as it is (nothing is cast to float32 or float64 on the way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jacscope._extras import require
from jacscope.operators._linear_operator import AbstractLinearOperator


def to_lineax(op: AbstractLinearOperator, tags: Any = ()) -> Any:
    """Implementation of `AbstractLinearOperator.to_lineax`."""
    require("lineax", "to_lineax")
    from jacscope.operators._lineax import JacscopeLinearOperator

    return JacscopeLinearOperator(op, tags)


def from_lineax(op: Any) -> AbstractLinearOperator:
    """A lineax operator on flat vectors as a jacscope operator.

    `mv` is `op.mv` and `rmv` is `op.transpose().mv`, whatever lineax does to transpose
    that kind of operator (`matrix.T` for a `lineax.MatrixLinearOperator`, a
    vector-Jacobian product for a `lineax.JacobianLinearOperator`, `jax.linear_transpose`
    for a `lineax.FunctionLinearOperator`). The shape is `(op.out_size(), op.in_size())`
    and the dtype the operator's own. An operator made by `to_lineax` gives back the
    jacscope operator it holds, so `from_lineax(A.to_lineax())` is `A`.

    **Arguments:**

    - `op`: a `lineax.AbstractLinearOperator` whose input and output structures are each
      a single 1-D array of the same real floating-point dtype.

    **Returns:** a jacscope operator (an `AbstractLinearOperator`) of shape `(m, n)`.

    **Raises:** `TypeError` if `op` is not a lineax operator; `ValueError` naming the
    structure if its input or output is a pytree or an array of another rank (flatten
    it with `jax.flatten_util.ravel_pytree` first), or naming the dtypes if they differ
    or are not real floating-point; `ImportError` if lineax is not installed
    (`pip install 'jacscope[lineax]'`).

    ```python
    M = lineax.MatrixLinearOperator(jnp.arange(6.0).reshape(2, 3))
    A = jacscope.from_lineax(M)
    jacscope.linalg.svd_topk(A, 1, key=jax.random.key(0))
    ```
    """
    require("lineax", "from_lineax")
    from jacscope.operators._lineax import from_lineax as from_lineax_impl

    return from_lineax_impl(op)


_SCIPY_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _compiled(op: AbstractLinearOperator, name: str) -> Callable[[Any], np.ndarray]:
    """`op.<name>` compiled once, taking and returning NumPy arrays of `op.dtype`.

    The operator's arrays are arguments of the compiled function, not constants folded
    into it; a new input shape (a new number of columns for `mm`) compiles once more.
    """
    dynamic, static = eqx.partition(op, eqx.is_array)
    apply = jax.jit(lambda dyn, x: getattr(eqx.combine(dyn, static), name)(x))
    dtype = jnp.dtype(op.dtype)

    def product(x):
        x = jnp.asarray(np.asarray(x), dtype)
        if name in ("mv", "rmv"):
            x = x.reshape(-1)  # SciPy passes (n,) or (n, 1); it reshapes the result back
        return np.array(apply(dynamic, x))

    return product


def to_scipy(op: AbstractLinearOperator) -> Any:
    """Implementation of `AbstractLinearOperator.to_scipy`."""
    import scipy.sparse.linalg as splinalg  # a dependency of jax; imported when used

    dtype = np.dtype(op.dtype)
    if dtype not in _SCIPY_DTYPES:
        raise ValueError(
            f"to_scipy: SciPy's operators work in float32 or float64; this operator's dtype "
            f"is {dtype.name}"
        )
    return splinalg.LinearOperator(
        op.shape,
        matvec=_compiled(op, "mv"),
        rmatvec=_compiled(op, "rmv"),
        matmat=_compiled(op, "mm"),
        rmatmat=_compiled(op, "rmm"),
        dtype=dtype,
    )
