"""The Jacobian and the Gramian of many objectives with respect to a model's parameters.

For m losses L(theta) = (L_1, ..., L_m) of parameters theta (any pytree, flattened to n
scalars), the objective Jacobian is the m x n matrix J = dL / dtheta, one gradient per
row, and its Gramian G = J J^T (m x m) is all that the weightings of this package read.
Both are built from one linearisation of L, so any JAX function works: recurrent
networks, `lax.scan`, normalisation layers and in-place updates need no module hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jacscope.operators import jacobian_operator
from jacscope.operators._linear_operator import _DEFAULT_MAX_BYTES

_GRAMIAN_METHODS = ("auto", "jacobian", "products")


def _objective_operator(losses_fn: Callable, params: Any, args: tuple, what: str):
    op = jacobian_operator(losses_fn, params, *args, wrt=0)
    out = op.output()
    if not isinstance(out, jax.Array) or out.ndim != 1:
        shown = jax.tree.map(lambda x: f"{x.dtype}{tuple(x.shape)}", out)
        raise ValueError(f"{what}: losses_fn must return one vector of m losses, returned {shown}")
    return op


def objective_jacobian(
    losses_fn: Callable[..., jax.Array],
    params: Any,
    *args: Any,
    mode: str = "auto",
    max_bytes: int = _DEFAULT_MAX_BYTES,
    chunk_size: int | None = None,
) -> jax.Array:
    r"""The m x n Jacobian J = dL / dtheta of a vector of losses, one gradient per row.

    Columns follow the `ravel_pytree` order of the floating-point array leaves of
    `params` (`jax.flatten_util.ravel_pytree`; an equinox Module's other leaves are
    held fixed). Reverse mode builds J a chunk of rows (VJPs) at a time, forward mode a
    chunk of columns (JVPs); `"auto"` takes the cheaper, rows when m < n.

    **Arguments:**

    - `losses_fn`: `(params, *args) -> (m,)` losses, e.g. one per example (IWRM) or
      per task.
    - `params`: the point theta, any pytree.
    - `*args`: further arguments of `losses_fn` (a batch), held fixed.
    - `mode`: `"auto"`, `"reverse"` or `"forward"`.
    - `max_bytes`: memory budget of the result and its chunks' working memory.
    - `chunk_size`: rows or columns per chunk (default: the largest that fits).

    **Returns:** the `(m, n)` Jacobian.

    **Raises:** `ValueError` if `losses_fn` does not return one vector, or naming the
    leaf of a non-finite parameter or argument; `jacscope.DenseTooLarge` with the bytes
    needed if J does not fit `max_bytes` (then `objective_gramian` with
    `method="products"` still gives G).
    """
    op = _objective_operator(losses_fn, params, args, "objective_jacobian")
    return op.materialize(max_bytes=max_bytes, chunk_size=chunk_size, mode=mode)


def objective_gramian(
    losses_fn: Callable[..., jax.Array],
    params: Any,
    *args: Any,
    method: str = "auto",
    max_bytes: int = _DEFAULT_MAX_BYTES,
    chunk_size: int | None = None,
) -> jax.Array:
    r"""The m x m Gramian G = J J^T of the losses' gradients, G_ij = <grad L_i, grad L_j>.

    `"jacobian"` forms J (`objective_jacobian`, reverse mode) and multiplies;
    `"products"` never holds J: for k columns e_j of the identity at a time it takes
    J^T E (k VJPs) and then J (J^T E) (k JVPs), so memory is O(k n) instead of O(m n)
    at the cost of m extra JVPs. `"auto"` forms J when it fits `max_bytes` and uses
    products otherwise. The products route is symmetrised, (G + G^T) / 2.

    **Arguments:**

    - `losses_fn`, `params`, `*args`: as in `objective_jacobian`.
    - `method`: `"auto"`, `"jacobian"` or `"products"`.
    - `max_bytes`: memory budget (of J on the `"jacobian"` route).
    - `chunk_size`: objectives per chunk (default: the largest chunk whose working
      memory fits the budget).

    **Returns:** the `(m, m)` Gramian.

    **Raises:** as `objective_jacobian`; `ValueError` for an unknown `method`.
    """
    if method not in _GRAMIAN_METHODS:
        choices = ", ".join(map(repr, _GRAMIAN_METHODS))
        raise ValueError(f"objective_gramian: method must be one of {choices}, got {method!r}")
    op = _objective_operator(losses_fn, params, args, "objective_gramian")
    m, n = op.shape
    itemsize = jnp.dtype(jnp.result_type(op.dtype)).itemsize
    if method == "auto":
        method = "jacobian" if m * n * itemsize <= max_bytes else "products"
    if method == "jacobian":
        J = op.materialize(max_bytes=max_bytes, chunk_size=chunk_size, mode="reverse")
        return J @ J.T
    G = (op @ op.T).materialize(max_bytes=max_bytes, chunk_size=chunk_size, mode="forward")
    return (G + G.T) / 2
