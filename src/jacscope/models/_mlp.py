"""A multilayer perceptron with GELU activations, as a pytree of arrays."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp


def init_mlp(key: jax.Array, sizes: Sequence[int] = (64, 64, 10), *, dtype: Any = None) -> list:
    """Initial parameters of an MLP with layer widths `sizes`.

    Layer l maps `sizes[l]` to `sizes[l+1]` features. Its kernel `w` of shape
    `(sizes[l], sizes[l+1])` is LeCun-normal, `jax.nn.initializers.lecun_normal()`:
    a normal truncated to two standard deviations, rescaled to variance
    1 / sizes[l]. Its bias `b` of shape `(sizes[l+1],)` is normal with standard
    deviation `sizes[1] ** -0.5` (the first hidden width) in every layer, the output
    layer included; this is the initialisation of Belrose & Scherlis
    (arXiv 2412.07003), whose default network is 64 -> 64 -> 10.

    **Arguments:**

    - `key`: a `jax.random` key.
    - `sizes`: input width, hidden widths, output width (at least two entries; any
      depth).
    - `dtype`: float dtype of the parameters (default: JAX's default float).

    **Returns:** a list with one `{"w": (in, out), "b": (out,)}` dict per layer.
    """
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(
            f"sizes must list at least an input and an output width, all >= 1; received {sizes}"
        )
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    return _init_mlp(key, sizes, dtype)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _init_mlp(key: jax.Array, sizes: tuple[int, ...], dtype: Any) -> list:
    fans = list(zip(sizes[:-1], sizes[1:], strict=True))
    w_key, b_key = jax.random.split(key)
    # One draw for all kernels (a single truncated-normal sampler to compile): with
    # fan_in = 1, `lecun_normal` gives the unit-variance truncated normal, which each
    # layer's block scales by fan_in ** -0.5, as `lecun_normal` does per layer.
    total = sum(fan_in * fan_out for fan_in, fan_out in fans)
    unit = jax.nn.initializers.lecun_normal()(w_key, (1, total), dtype)[0]
    biases = sizes[1] ** -0.5 * jax.random.normal(b_key, (sum(sizes[1:]),), dtype)
    params, w_at, b_at = [], 0, 0
    for fan_in, fan_out in fans:
        block = unit[w_at : w_at + fan_in * fan_out].reshape(fan_in, fan_out)
        params.append({"w": block * fan_in**-0.5, "b": biases[b_at : b_at + fan_out]})
        w_at += fan_in * fan_out
        b_at += fan_out
    return params


@jax.jit
def mlp_apply(params: list, x: jax.Array) -> jax.Array:
    """Logits of the MLP `params` (from `init_mlp`) at `x`.

    h_0 = x, h_{l+1} = gelu(h_l W_l + b_l) for every layer but the last, which is
    affine: logits = h_{L-1} W_{L-1} + b_{L-1}. GELU is the tanh approximation
    (`jax.nn.gelu(approximate=True)`), 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))).

    **Arguments:**

    - `params`: list of `{"w", "b"}` layers.
    - `x`: one example `(d,)` or a batch `(B, d)`.

    **Returns:** logits `(k,)` or `(B, k)`.
    """
    h = x
    for layer in params[:-1]:
        h = jax.nn.gelu(h @ layer["w"] + layer["b"], approximate=True)
    return h @ params[-1]["w"] + params[-1]["b"]
