"""The Jacobian nuclear norm of a composition f = g o h, by its Frobenius upper bound."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp

from jacscope._validation import check_count, check_number
from jacscope.penalties._frobenius import jacobian_frobenius_penalty
from jacscope.penalties._per_example import check_batch, example_fn


def _denoising(g, h, params, x, key, num_samples, sigma):
    """(1 / 2 sigma^2) mean_b E[||g(h_b + e) - g(h_b)||^2 + ||h(x_b + e') - h(x_b)||^2]."""
    batch = x.shape[0]
    z = jax.vmap(lambda xb: h(params, xb))(x)  # the codes h(x_b), (B, ...)
    h_flat = jax.vmap(example_fn(h, params, x.shape[1:]))
    g_flat = jax.vmap(example_fn(g, params, z.shape[1:]))
    x_flat, z_flat = x.reshape(batch, -1), z.reshape(batch, -1)
    key_g, key_h = jax.random.split(key)
    noise_z = sigma * jax.random.normal(key_g, (num_samples, *z_flat.shape), z_flat.dtype)
    noise_x = sigma * jax.random.normal(key_h, (num_samples, *x_flat.shape), x_flat.dtype)
    diff_g = jax.vmap(g_flat)(z_flat[None] + noise_z) - g_flat(z_flat)[None]
    diff_h = jax.vmap(h_flat)(x_flat[None] + noise_x) - z_flat[None]
    total = jnp.sum(diff_g**2) + jnp.sum(diff_h**2)
    return total / (2.0 * sigma**2 * num_samples * batch)


def nuclear_norm_penalty(
    g: Callable,
    h: Callable,
    params: Any,
    x: jax.Array,
    key: jax.Array | None = None,
    num_projections: int = 1,
    *,
    method: Literal["jacobian", "denoising"] = "jacobian",
    sigma: float | None = None,
    exact: bool = False,
) -> jax.Array:
    r"""A penalty on the Jacobian nuclear norm of `f = g o h` (Scarvelis & Solomon, 2024).

    For any factorisation `J_f = J_g J_h`, `||J_g J_h||_* <= 1/2 (||J_g||_F^2 +
    ||J_h||_F^2)`, with equality for balanced factors (`J_g = U S^(1/2) R`,
    `J_h = R^T S^(1/2) V^T` from the SVD `J_f = U S V^T`, R orthogonal), so minimising
    the right-hand side over the parameters of `g` and `h` penalises `||J_f||_*`
    without any SVD. This function returns, averaged over the batch,

    - `method="jacobian"`: `1/2 mean_b (||J_g(h(x_b))||_F^2 + ||J_h(x_b)||_F^2)`, each
      term by `jacobian_frobenius_penalty` (unbiased, `num_projections` random output
      directions per example; `exact=True` uses all of them);
    - `method="denoising"`: the Jacobian-free approximation
      `(1 / 2 sigma^2) mean_b E[||g(h(x_b) + e) - g(h(x_b))||^2 + ||h(x_b + e') - h(x_b)||^2]`
      with `e, e' ~ N(0, sigma^2 I)`, estimated with `num_projections` noise draws per
      example. By a first-order expansion it tends to the `"jacobian"` value as
      sigma -> 0; it equals it in expectation when `g` and `h` are affine.

    Both are unbiased estimates of their expectations, pure, `jax.jit`-able and
    differentiable with respect to `params` (gradients flow through `h(x_b)` too).

    **Arguments:**

    - `g`: `(params, z_b) -> output` for ONE code `z_b = h(params, x_b)`.
    - `h`: `(params, x_b) -> z_b` for ONE example; `f(params, x) = g(params, h(params, x))`.
      Both receive the whole `params` and use their own part of it.
    - `params`: the parameters (any pytree).
    - `x`: the batch `(B, ...)`.
    - `key`: a `jax.random` key (unused with `method="jacobian", exact=True`).
    - `num_projections`: random directions (or noise draws) per example.
    - `method`: `"jacobian"` or `"denoising"`.
    - `sigma`: the noise level, required with `method="denoising"`.
    - `exact`: exact Frobenius norms (`method="jacobian"` only).

    **Returns:** the scalar penalty.

    Citation: Scarvelis & Solomon, "Nuclear Norm Regularization for Deep Learning",
    arXiv 2405.14544.
    """
    what = "nuclear_norm_penalty"
    x = check_batch(x, what)
    if method == "jacobian":
        if sigma is not None:
            raise ValueError(f"{what}: sigma applies to method='denoising' only")
        if exact:
            key_g = key_h = None
        elif key is None:
            raise ValueError(f"{what}: a jax.random key is needed unless exact=True")
        else:
            key_g, key_h = jax.random.split(key)
        z = jax.vmap(lambda xb: h(params, xb))(x)
        outer = jacobian_frobenius_penalty(g, params, z, key_g, num_projections, exact=exact)
        inner = jacobian_frobenius_penalty(h, params, x, key_h, num_projections, exact=exact)
        return outer + inner
    if method == "denoising":
        if exact:
            raise ValueError(f"{what}: exact=True applies to method='jacobian' only")
        if sigma is None:
            raise ValueError(f"{what}: method='denoising' needs sigma > 0, received None")
        check_number(sigma, f"{what}: sigma")
        if key is None:
            raise ValueError(f"{what}: method='denoising' needs a jax.random key")
        num = check_count(num_projections, "num_projections", what)
        return _denoising(g, h, params, x, key, num, sigma)
    raise ValueError(f"{what}: method must be 'jacobian' or 'denoising', received {method!r}")
