"""Minibatches in a fixed order, stacked along a leading step axis."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def make_batches(x, y, batch_size: int, epochs: int) -> dict[str, object]:
    """Stack `epochs` passes over `(x, y)` into `T` minibatches, in a fixed order.

    Each epoch visits the examples in their given order, without shuffling, so a
    training run over these batches is a deterministic function of its initial
    parameters (as in arXiv 2412.07003). A trailing partial batch is dropped, so
    `T = epochs * (N // batch_size)`.

    **Arguments:**

    - `x`: `(N, d)` features (any trailing shape).
    - `y`: `(N,)` labels.
    - `batch_size`: examples per step, `1 <= batch_size <= N`.
    - `epochs`: passes over the data, `>= 1`.

    **Returns:** `{"x": (T, batch_size, d), "y": (T, batch_size)}` as JAX arrays, the
    layout `jacscope.training.TrainingRun` expects.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape[:1] != y.shape[:1]:
        raise ValueError(
            f"x and y must have the same number of examples; x has shape {x.shape}, "
            f"y has shape {y.shape}"
        )
    num = x.shape[0]
    if not isinstance(batch_size, int | np.integer) or not 1 <= batch_size <= num:
        raise ValueError(f"batch_size must be an integer in [1, {num}], received {batch_size!r}")
    if not isinstance(epochs, int | np.integer) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, received {epochs!r}")
    per_epoch = num // batch_size
    used = per_epoch * batch_size
    xb = x[:used].reshape(per_epoch, batch_size, *x.shape[1:])
    yb = y[:used].reshape(per_epoch, batch_size, *y.shape[1:])
    reps_x = (epochs,) + (1,) * (xb.ndim - 1)
    reps_y = (epochs,) + (1,) * (yb.ndim - 1)
    return {"x": jnp.asarray(np.tile(xb, reps_x)), "y": jnp.asarray(np.tile(yb, reps_y))}
