"""Minibatches in a fixed order, stacked along a leading step axis, and the checks on
such a stack."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jacscope._validation import check_count, is_prng_key


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
    check_count(batch_size, "batch_size", maximum=num)
    check_count(epochs, "epochs")
    per_epoch = num // batch_size
    used = per_epoch * batch_size
    xb = x[:used].reshape(per_epoch, batch_size, *x.shape[1:])
    yb = y[:used].reshape(per_epoch, batch_size, *y.shape[1:])
    reps_x = (epochs,) + (1,) * (xb.ndim - 1)
    reps_y = (epochs,) + (1,) * (yb.ndim - 1)
    return {"x": jnp.asarray(np.tile(xb, reps_x)), "y": jnp.asarray(np.tile(yb, reps_y))}


def stack_batches(batches: Iterable[Any]) -> Any:
    """One pytree with a leading step axis from a list or an iterator of per-step
    batches, the layout `jacscope.training.TrainingRun` takes.

    A training run is replayed (its Jacobian propagates through every step), so every
    batch is held at once: the result takes T times the bytes of one batch
    (`batch_bytes` of it says how many). Typed PRNG keys are stacked like arrays.

    **Raises:** `ValueError` naming the step and the leaf whose structure, shape or
    dtype differs from the first batch's (a last partial batch, say).
    """
    items = list(batches)
    if not items:
        raise ValueError("stack_batches needs at least one batch")
    first_leaves, structure = jax.tree.flatten(items[0])
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(items[0])]
    for index, item in enumerate(items[1:], start=1):
        leaves, item_structure = jax.tree.flatten(item)
        if item_structure != structure:
            raise ValueError(
                f"batch {index} has the structure {item_structure}, batch 0 {structure}"
            )
        for path, a, b in zip(paths, first_leaves, leaves, strict=True):
            if (jnp.shape(a), jnp.result_type(a)) != (jnp.shape(b), jnp.result_type(b)):
                raise ValueError(
                    f"batch {index}{path} has shape {jnp.shape(b)} and dtype "
                    f"{jnp.result_type(b)}, batch 0{path} {jnp.shape(a)} and "
                    f"{jnp.result_type(a)}; every step's batch must have the same shapes "
                    "(drop or pad a last partial batch)"
                )
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *items)


def batch_bytes(batches: Any) -> int:
    """The bytes the arrays of a pytree of batches take."""
    return sum(
        int(np.prod(jnp.shape(leaf))) * jnp.dtype(jnp.result_type(leaf)).itemsize
        if not is_prng_key(leaf)
        else int(jax.random.key_data(leaf).nbytes)
        for leaf in jax.tree.leaves(batches)
    )
