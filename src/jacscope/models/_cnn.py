"""A LeNet-5-like convolutional network, as a pytree of arrays."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp


def init_cnn(
    key: jax.Array,
    input_shape: Sequence[int] = (8, 8),
    num_classes: int = 10,
    *,
    channels: Sequence[int] = (6, 16),
    kernel_size: int = 5,
    hidden: Sequence[int] = (120, 84),
    canvas: int | None = None,
    in_channels: int = 1,
    dtype: Any = None,
) -> dict:
    """Initial parameters of a LeNet-5-like CNN on 2-D images or 1-D signals.

    The network (after LeNet-5, LeCun et al. 1998) resizes its input to a `canvas` (nearest
    neighbour), then applies
    two blocks of [valid convolution with `kernel_size` taps, GELU, 2 x 2 average
    pooling] with `channels` feature maps, flattens, and ends with dense GELU
    layers of widths `hidden` and a linear layer to `num_classes` logits. With the
    defaults on 8 x 8 digits the canvas is LeNet-5's 32 x 32 and the network has
    LeNet-5's 61,706 parameters (for 10 classes): 32 -> 28 -> 14 -> 10 -> 5, then
    400 -> 120 -> 84 -> 10. On a 1-D signal (e.g. MNIST-1D, length 40) the same
    layers are 1-D convolutions and the canvas is the signal length.

    Kernels are LeCun-normal (`jax.nn.initializers.lecun_normal()`, variance
    1 / fan_in with fan_in = taps x input channels); biases are normal with
    standard deviation fan_in^-1/2.

    **Arguments:**

    - `key`: a `jax.random` key.
    - `input_shape`: the spatial shape of one example, `(H, W)` (square) or `(L,)`;
      examples reach `cnn_apply` flattened, `H * W * in_channels` features.
    - `num_classes`: the number of logits.
    - `channels`: feature maps of the two convolutions.
    - `kernel_size`: taps per spatial axis.
    - `hidden`: widths of the dense hidden layers.
    - `canvas`: side (or length) the input is resized to, of the form
      4 m + 3 (kernel_size - 1); default 32 for 2-D input (LeNet-5), for 1-D input
      the shortest such length at least the signal's (40 for MNIST-1D).
    - `in_channels`: channels of the input.
    - `dtype`: float dtype (default: JAX's default float).

    **Returns:** `{"conv": [{"w": (k, [k,] c_in, c_out), "b": (c_out,)}, ...],
    "dense": [{"w": (in, out), "b": (out,)}, ...]}`; `cnn_apply` reads the
    architecture back from these shapes.

    Citation: LeCun et al., "Gradient-based learning applied to document recognition",
    Proceedings of the IEEE, 1998.
    """
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) not in (1, 2) or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (H, W) or (L,), received {input_shape}")
    if len(input_shape) == 2 and input_shape[0] != input_shape[1]:
        raise ValueError(f"2-D inputs must be square, received input_shape={input_shape}")
    channels = tuple(int(c) for c in channels)
    if len(channels) != 2 or min(channels) < 1:
        raise ValueError(f"channels must be two positive counts, received {channels}")
    rank = len(input_shape)
    if canvas is None and rank == 2:
        canvas = 32
    elif canvas is None:  # the shortest valid length that holds the signal
        shortfall = input_shape[0] - _canvas(0, kernel_size)
        canvas = _canvas(max(1, -(-shortfall // 4)), kernel_size)
    side = (int(canvas) - _canvas(0, kernel_size)) // 4
    if side < 1 or _canvas(side, kernel_size) != canvas:
        raise ValueError(
            f"canvas={canvas} does not fit two {kernel_size}-tap valid convolutions each "
            f"followed by 2 x 2 pooling exactly; use 4 m + {_canvas(0, kernel_size)} for "
            f"some m >= 1, e.g. {_canvas(max(side, 1), kernel_size)}"
        )
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    kernel_init = jax.nn.initializers.lecun_normal(in_axis=tuple(range(rank + 1)), out_axis=-1)
    dense_sizes = (side**rank * channels[-1], *(int(h) for h in hidden), int(num_classes))
    keys = iter(jax.random.split(key, 2 * (2 + len(dense_sizes) - 1)))
    conv = []
    for c_in, c_out in zip((in_channels, *channels[:-1]), channels, strict=True):
        shape = (kernel_size,) * rank + (c_in, c_out)
        fan_in = kernel_size**rank * c_in
        conv.append(
            {
                "w": kernel_init(next(keys), shape, dtype),
                "b": fan_in**-0.5 * jax.random.normal(next(keys), (c_out,), dtype),
            }
        )
    dense = []
    for fan_in, fan_out in zip(dense_sizes[:-1], dense_sizes[1:], strict=True):
        dense.append(
            {
                "w": jax.nn.initializers.lecun_normal()(next(keys), (fan_in, fan_out), dtype),
                "b": fan_in**-0.5 * jax.random.normal(next(keys), (fan_out,), dtype),
            }
        )
    return {"conv": conv, "dense": dense}


def _canvas(side: int, kernel_size: int) -> int:
    """The input side that two valid convolutions and 2 x 2 poolings reduce to `side`."""
    return 4 * side + 3 * (kernel_size - 1)


def cnn_apply(params: dict, x: jax.Array) -> jax.Array:
    """Logits of the CNN `params` (from `init_cnn`) at `x`.

    Each example is reshaped from its flat features to `(H, W, C)` (square, so
    H = W = sqrt(d / C)) or `(L, C)`, resized (nearest neighbour) to the canvas the
    parameters were built for, passed through valid convolution -> GELU -> 2 x 2
    average pool twice, flattened, and through the dense layers (GELU between them,
    none at the output). GELU is the tanh approximation, as in `mlp_apply`.

    **Arguments:**

    - `params`: from `init_cnn`.
    - `x`: one example `(d,)` or a batch `(B, d)` of flat features.

    **Returns:** logits `(k,)` or `(B, k)`.

    Citation: LeCun et al., "Gradient-based learning applied to document recognition",
    Proceedings of the IEEE, 1998.
    """
    if x.ndim == 1:
        return cnn_apply(params, x[None])[0]
    first = params["conv"][0]["w"]
    rank = first.ndim - 2
    kernel_size, c_in = first.shape[0], first.shape[-2]
    c_last = params["conv"][-1]["w"].shape[-1]
    side = round((params["dense"][0]["w"].shape[0] / c_last) ** (1 / rank))
    canvas = _canvas(side, kernel_size)
    batch, features = x.shape
    length = features // c_in
    width = math.isqrt(length) if rank == 2 else length
    if width**rank * c_in != features:
        raise ValueError(
            f"cnn_apply: {features} features per example do not form a "
            f"{'square image' if rank == 2 else 'signal'} with {c_in} channel(s)"
        )
    h = x.reshape(batch, *(width,) * rank, c_in)
    if width != canvas:
        h = _resize(h, canvas, rank)
    for layer in params["conv"]:
        h = jax.nn.gelu(_conv_valid(h, layer["w"], rank) + layer["b"], approximate=True)
        h = _average_pool(h, rank)
    h = h.reshape(batch, -1)
    for layer in params["dense"][:-1]:
        h = jax.nn.gelu(h @ layer["w"] + layer["b"], approximate=True)
    return h @ params["dense"][-1]["w"] + params["dense"][-1]["b"]


def _resize(h: jax.Array, canvas: int, rank: int) -> jax.Array:
    """Nearest-neighbour resize of the spatial axes (1 .. rank) to `canvas`."""
    width = h.shape[1]
    if canvas % width == 0:  # an integer factor: repeat each pixel
        for axis in range(1, rank + 1):
            h = jnp.repeat(h, canvas // width, axis=axis)
        return h
    return jax.image.resize(h, (h.shape[0], *(canvas,) * rank, h.shape[-1]), method="nearest")


def _conv_valid(h: jax.Array, kernel: jax.Array, rank: int) -> jax.Array:
    """Valid cross-correlation of `(B, *spatial, C_in)` with `(k, [k,] C_in, C_out)`."""
    spatial = "HW" if rank == 2 else "H"
    dims = ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")
    return jax.lax.conv_general_dilated(h, kernel, (1,) * rank, "VALID", dimension_numbers=dims)


def _average_pool(h: jax.Array, rank: int) -> jax.Array:
    """2 x 2 (or 2) average pooling with stride 2 of the spatial axes, dropping a last odd row."""
    batch, channels = h.shape[0], h.shape[-1]
    sizes = [size // 2 for size in h.shape[1 : rank + 1]]
    h = h[(slice(None), *(slice(0, 2 * n) for n in sizes))]
    split = [d for n in sizes for d in (n, 2)]
    return h.reshape(batch, *split, channels).mean(axis=tuple(range(2, 2 * rank + 1, 2)))
