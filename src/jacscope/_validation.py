"""Checks on user input that fail loudly and name the culprit.

Each check is a no-op on traced values (inside `jax.jit` the values are not known);
outside a trace it raises a `ValueError` that names the offending pytree leaf,
shape or argument.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_finite(tree: Any, name: str) -> None:
    """Raise `ValueError` naming the first leaf of `tree` that holds NaN or inf.

    **Arguments:**

    - `tree`: any pytree; leaves that are not floating-point arrays are skipped.
    - `name`: what the tree is, for the message (for instance `"params"`).
    """
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if not _is_concrete(leaf):
            continue
        if not hasattr(leaf, "dtype") or not jnp.issubdtype(leaf.dtype, jnp.inexact):
            continue
        arr = np.asarray(leaf)
        bad = ~np.isfinite(arr)
        if bad.any():
            leaf_name = name + jax.tree_util.keystr(path)
            first = tuple(int(i) for i in np.argwhere(bad)[0]) if arr.ndim else ()
            raise ValueError(
                f"{leaf_name} has {int(bad.sum())} non-finite value(s) of {arr.size}"
                f" (first at index {first}: {arr[first]})"
            )


def nonfinite_steps(losses: Any) -> np.ndarray:
    """Indices of the entries of a per-step loss array that are NaN or infinite."""
    return np.flatnonzero(~np.isfinite(np.asarray(losses)))


def check_x64(dtype: str) -> None:
    """Refuse `dtype="float64"` while JAX computes in float32 (`jax_enable_x64` off)."""
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError(
            "dtype='float64' needs jax_enable_x64: call "
            "jax.config.update('jax_enable_x64', True) first"
        )


def check_losses(losses: Any, advice: str) -> None:
    """`FloatingPointError` naming the first step of a run whose loss is NaN or
    infinite, how many are, and `advice` (what to do about it)."""
    values = np.asarray(losses)
    bad = nonfinite_steps(values)
    if bad.size:
        step = int(bad[0])
        raise FloatingPointError(
            f"training diverged: the loss is {values[step]} at step {step} (of {values.size}; "
            f"0-based, {bad.size} step(s) with a non-finite loss); {advice}"
        )


def _check_is_array(x: Any, length: int, what: str) -> None:
    """Refuse a pytree (a dict, list, Module) where a flat array is expected."""
    if not isinstance(x, jax.Array | np.ndarray):
        raise ValueError(
            f"{what} expects a flat array of length {length}, received a "
            f"{type(x).__name__}; flatten a pytree of parameters with "
            "jax.flatten_util.ravel_pytree (or the operator's ravel_input)"
        )


def check_vector_shape(x: Any, expected: tuple[int, ...], what: str) -> None:
    """Raise `ValueError` if `x` is not an array of shape `expected`, stating both."""
    _check_is_array(x, expected[0] if expected else 1, what)
    shape = tuple(jnp.shape(x))
    if shape != tuple(expected):
        raise ValueError(f"{what} expects shape {tuple(expected)}, received shape {shape}")


def check_batch_shape(x: Any, leading: int, what: str) -> None:
    """Raise `ValueError` unless `x` is a matrix whose first axis has length `leading`."""
    _check_is_array(x, leading, what)
    shape = tuple(jnp.shape(x))
    if len(shape) != 2 or shape[0] != leading:
        raise ValueError(f"{what} expects a matrix of shape ({leading}, k), received shape {shape}")


def check_count(
    value: Any, name: str, what: str | None = None, *, minimum: int = 1, maximum: int | None = None
) -> int:
    """`value` as an int, or `ValueError` for a count (steps, probes, chunk columns,
    Krylov depth) that is not an integer in [minimum, maximum]; `what` prefixes the
    message with the function it is an argument of."""
    prefix = f"{what}: " if what else ""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{prefix}{name} must be an integer >= {minimum}, received {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{prefix}{name}={value} exceeds its maximum {maximum}")
    return int(value)


def check_rank(k: int, shape: tuple[int, int], what: str) -> None:
    """Refuse a request for `k` singular or eigen pairs of an operator of `shape`."""
    if not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"{what}: k must be a positive integer, received {k!r}")
    if k > min(shape):
        raise ValueError(
            f"{what}: k={k} exceeds min(shape)={min(shape)} for an operator of shape {shape}"
        )


def check_number(value: Any, what: str, *, positive: bool = True) -> Any:
    """Refuse a concrete setting that is not a finite real number `> 0` (or `>= 0` when
    `positive=False`), with a message naming it; return it unchanged (traced values pass).

    **Arguments:**

    - `value`: the setting, a Python or array scalar.
    - `what`: its name for the message, e.g. `"spectral_density: bandwidth"`.
    - `positive`: whether zero is refused too.
    """
    if not _is_concrete(value):
        return value
    bound = "> 0" if positive else ">= 0"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a finite number {bound}, received {value!r}") from None
    if (
        isinstance(value, bool)
        or not np.isfinite(number)
        or number < 0
        or (positive and number == 0)
    ):
        raise ValueError(f"{what} must be a finite number {bound}, received {value!r}")
    return value


def check_start_vectors(v: Any, what: str) -> None:
    """Refuse starting vectors of an iteration that cannot start it: an integer dtype
    (the iterates would be rounded), non-finite entries, or a zero vector (in any row
    of a `(B, d)` batch), which power and Krylov iterations cannot leave."""
    dtype = jnp.result_type(v)
    if not jnp.issubdtype(dtype, jnp.inexact):
        raise ValueError(f"{what} must be a floating-point vector, received dtype {dtype}")
    if not _is_concrete(v):
        return
    check_finite(v, what)
    rows = np.asarray(v).reshape(-1, np.shape(v)[-1] if np.ndim(v) else 1)
    zero = np.flatnonzero(~np.any(rows != 0, axis=-1))
    if zero.size:
        where = "" if np.ndim(v) < 2 else f" (row {int(zero[0])} of {rows.shape[0]})"
        raise ValueError(f"{what} is a zero vector{where}; start from a random one")


def is_prng_key(leaf: Any) -> bool:
    """Whether `leaf` is an array of typed PRNG keys (`jax.random.key`)."""
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def check_step_batches(batches: Any) -> None:
    """Refuse batches a training run cannot take, naming why: an iterator (the run is
    replayed, so every batch is needed up front), a leaf that is not an array, leaves
    whose leading step axes differ."""
    if isinstance(batches, Iterator):
        raise TypeError(
            "batches is an iterator; a training run is replayed, so it needs every step's "
            "batch up front: jacscope.data.stack_batches(batches) stacks them along a "
            "leading step axis"
        )
    leaves = jax.tree_util.tree_leaves_with_path(batches)
    if not leaves:
        raise ValueError("batches holds no arrays")
    lengths = {}
    for path, leaf in leaves:
        if not hasattr(leaf, "shape") or len(leaf.shape) == 0:
            raise ValueError(
                f"batches{jax.tree_util.keystr(path)} is {type(leaf).__name__} "
                f"{getattr(leaf, 'shape', '')}, not an array with a leading step axis"
            )
        lengths[f"batches{jax.tree_util.keystr(path)}"] = leaf.shape[0]
    if len(set(lengths.values())) != 1:
        described = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"every leaf of batches must share the leading step axis; {described}")


def looks_like_step_list(batches: Any) -> bool:
    """Whether `batches` is a list or tuple of two or more batches of one structure,
    each a container (the layout `stack_batches` takes, not a stacked pytree)."""
    if not isinstance(batches, list | tuple) or len(batches) < 2:
        return False
    structures = {jax.tree.structure(item) for item in batches}
    return len(structures) == 1 and structures.pop().num_nodes > 1


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def eval_shape_explained(fn: Any, *args: Any, failure: str) -> Any:
    """`jax.eval_shape(fn, *args)`; if tracing fails on the arguments (a wrong shape, a
    missing key, an attribute a value lacks), a `ValueError` reading `failure` and the
    first line of the error, chained to it."""
    try:
        return jax.eval_shape(fn, *args)
    except (TypeError, ValueError, IndexError, KeyError, AttributeError) as err:
        raise ValueError(f"{failure}: {first_line(err)}") from err
