"""The squared spectral norm of the input Jacobian, by warm-started power iteration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jacscope._validation import check_count, check_start_vectors, check_vector_shape
from jacscope.penalties._per_example import batch_jacobian, normalise_rows


class SpectralPenalty(NamedTuple):
    """The spectral-norm penalty and the vector to carry to the next call.

    **Fields:**

    - `value`: the scalar penalty, `mean_b ||J(x_b)^T u_b||^2`.
    - `vector`: the refined right singular vector estimate(s), same shape as the
      `v` that was passed in; pass it back in at the next training step.

    Citation: Miyato, Kataoka, Koyama & Yoshida, "Spectral Normalization for Generative
    Adversarial Networks", arXiv 1802.05957.
    """

    value: jax.Array
    vector: jax.Array


def jacobian_spectral_penalty(
    f: Callable,
    params: Any,
    x: jax.Array,
    v: jax.Array,
    num_iterations: int = 1,
    *,
    exact: bool = False,
) -> SpectralPenalty:
    r"""`mean_b ||J(x_b)||_2^2` by power iteration, warm-started from the previous step.

    For each example, power iteration on `J_b^T J_b` (`J_b = d f(params, x_b) / d x_b`)
    starts from `v` and runs `num_iterations` rounds of

        u_b = J_b v_b / ||J_b v_b||,    v_b = J_b^T u_b / ||J_b^T u_b||

    (one JVP and one VJP each). The penalty is `mean_b ||J_b^T u_b||^2` for the last
    `u_b`, a Rayleigh-type lower bound of `||J_b||_2^2` that increases
    monotonically to it as the iteration converges (at a rate set by the gap
    `sigma_2 / sigma_1`). The vectors are held constant in the gradient (as in
    spectral normalisation, Miyato et al. 2018): at convergence
    `d ||J^T u||^2 = 2 sigma u^T dJ v = d sigma^2`, the exact gradient. Carrying
    `vector` from one training step to the next makes one iteration per step enough,
    since the parameters, and with them the top singular vectors, change slowly.

    `v` of shape `(d,)` is one direction shared by all examples (it suits batches that
    change from step to step: the returned `vector` is the normalised mean of the
    per-example vectors); `v` of shape `(B, d)` keeps one vector per example (for a
    batch that recurs). With `exact=True` the value is `mean_b sigma_max(J_b)^2` from
    dense per-example Jacobians (m VJPs each) and a singular value decomposition, and
    `vector` holds the exact top right singular vectors (sign-aligned with `v`).

    **Arguments:**

    - `f`: `(params, x_b) -> output` for ONE example (mapped over the batch).
    - `params`: the parameters (any pytree); the value is differentiable in them.
    - `x`: the batch, shape `(B, ...)`; each example is flattened to R^d.
    - `v`: the starting vector(s), `(d,)` or `(B, d)`, e.g.
      `jax.random.normal(key, (d,))` at the first step.
    - `num_iterations`: power-iteration rounds in this call (>= 1).
    - `exact`: compute the exact value instead.

    **Returns:** `SpectralPenalty(value, vector)`.

    ```python
    def loss(params, batch, v):
        pen = jacobian_spectral_penalty(mlp_apply, params, batch["x"], v)
        ce = cross_entropy(mlp_apply(params, batch["x"]), batch["y"])
        return ce + lam * pen.value, pen.vector
    (loss_value, v), grads = jax.value_and_grad(loss, has_aux=True)(params, batch, v)
    ```

    Citation: Yoshida & Miyato, "Spectral Norm Regularization for Improving the
    Generalizability of Deep Learning", arXiv 1705.10941.

    Citation: Miyato, Kataoka, Koyama & Yoshida, "Spectral Normalization for Generative
    Adversarial Networks", arXiv 1802.05957.
    """
    what = "jacobian_spectral_penalty"
    jac = batch_jacobian(f, params, x, what)
    batch, d, m = jac.batch_size, jac.in_dim, jac.out_dim
    v = jnp.asarray(v)
    shared = v.ndim == 1
    check_vector_shape(v, (d,) if shared else (batch, d), f"{what}: v")
    check_start_vectors(v, f"{what}: v")
    check_count(num_iterations, "num_iterations", what)
    dtype = jac.op.primal_out.dtype
    start = jax.lax.stop_gradient(normalise_rows(jnp.broadcast_to(v.astype(dtype), (batch, d))))

    if exact:
        rows = jac.op.rmm(jnp.tile(jnp.eye(m, dtype=dtype), (batch, 1)))  # (B d, m)
        jac_t = rows.reshape(batch, d, m)  # J_b^T
        left, sing, _ = jnp.linalg.svd(jac_t, full_matrices=False)
        value = jnp.mean(sing[:, 0] ** 2)
        top = jax.lax.stop_gradient(left[:, :, 0])
        signs = jnp.where(jnp.sum(top * start, axis=1, keepdims=True) < 0, -1.0, 1.0)
        vectors = top * signs.astype(dtype)
    else:
        op = jac.op

        def left_vectors(right):
            return normalise_rows(op.mv(right.reshape(-1)).reshape(batch, m))

        def refine(_, right):
            return normalise_rows(op.rmv(left_vectors(right).reshape(-1)).reshape(batch, d))

        right = jax.lax.stop_gradient(jax.lax.fori_loop(0, num_iterations - 1, refine, start))
        left = jax.lax.stop_gradient(left_vectors(right))
        rows = op.rmv(left.reshape(-1)).reshape(batch, d)  # J_b^T u_b, differentiable
        value = jnp.mean(jnp.sum(rows**2, axis=1))
        vectors = jax.lax.stop_gradient(normalise_rows(rows))
    if shared:
        vectors = normalise_rows(jnp.mean(vectors, axis=0))
    return SpectralPenalty(value, vectors.astype(v.dtype))
