"""Jacobian regularisation: the squared Frobenius norm of the input Jacobian."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jacscope._validation import check_count
from jacscope.penalties._per_example import batch_jacobian, normalise_rows


def jacobian_frobenius_penalty(
    f: Callable,
    params: Any,
    x: jax.Array,
    key: jax.Array | None = None,
    num_projections: int = 1,
    *,
    exact: bool = False,
) -> jax.Array:
    r"""Jacobian regularisation: `1/2 * mean_b ||J(x_b)||_F^2`, by random projections.

    With `J(x_b) = d f(params, x_b) / d x_b` (m x d), the estimate is

        R = (m / (2 B k)) * sum_b sum_{i=1..k} ||u_{b,i}^T J(x_b)||^2,

    with `u_{b,i}` drawn independently and uniformly on the unit sphere of R^m
    (Hoffman, Roberts & Yaida, 2019). Since `E[u u^T] = I / m`, `E[R]` is exactly
    `1/2 mean_b ||J(x_b)||_F^2`: the estimate is unbiased, and so is its gradient with
    respect to `params`. Each projection costs one vector-Jacobian product per
    example. With `exact=True` every output direction `e_1..e_m` is used once
    (m products per example) and the value is exact; `key` is then not needed.

    Pure, `jax.jit`-able (with `f`, `num_projections` and `exact` static) and
    differentiable with respect to `params`, for use inside any training loss:

    ```python
    def loss(params, batch, key):
        ce = cross_entropy(mlp_apply(params, batch["x"]), batch["y"])
        return ce + 0.01 * jacobian_frobenius_penalty(mlp_apply, params, batch["x"], key)
    ```

    **Arguments:**

    - `f`: `(params, x_b) -> output` for ONE example `x_b`; the output is any pytree
      of arrays (flattened to R^m). It is mapped over the batch with `jax.vmap`.
    - `params`: the parameters (any pytree).
    - `x`: the batch, shape `(B, ...)`; each example is flattened to R^d.
    - `key`: a `jax.random` key for the projections (unused when `exact=True`).
    - `num_projections`: k, the projections per example.
    - `exact`: use every output direction instead of random ones.

    **Returns:** the scalar penalty.

    Citation: Hoffman, Roberts & Yaida, "Robust Learning with Jacobian Regularization",
    arXiv 1908.02729.
    """
    what = "jacobian_frobenius_penalty"
    jac = batch_jacobian(f, params, x, what)
    batch, m = jac.batch_size, jac.out_dim
    dtype = jac.op.primal_out.dtype
    if exact:
        # column i holds e_i in every example's block: J^T of it stacks the rows i of every J_b
        directions = jnp.tile(jnp.eye(m, dtype=dtype), (batch, 1))
        scale = 1.0
    else:
        k = check_count(num_projections, "num_projections", what)
        if key is None:
            raise ValueError(f"{what}: a jax.random key is needed unless exact=True")
        draws = jax.random.normal(key, (batch, k, m), dtype)
        directions = jnp.transpose(normalise_rows(draws), (0, 2, 1)).reshape(batch * m, k)
        scale = m / k
    rows = jac.op.rmm(directions)  # (B d, k): the vectors u^T J_b, stacked
    return 0.5 * scale * jnp.sum(rows**2) / batch
