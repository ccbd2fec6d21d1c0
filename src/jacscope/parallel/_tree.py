"""Pytree helpers for buffers whose leaves share a leading sequence axis."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def leading_length(tree: Any) -> int:
    """The length of the leading axis shared by every leaf of `tree`."""
    return jnp.shape(jax.tree.leaves(tree)[0])[0]


def leading_lengths(tree: Any, what: str) -> int:
    """The common leading-axis length of the leaves of `tree`, or a `ValueError` naming
    the leaves that disagree (or are scalars)."""
    lengths = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        shape = jnp.shape(leaf)
        if not shape:
            raise ValueError(
                f"{what}{jax.tree_util.keystr(path)} is a scalar; every leaf needs a leading "
                "sequence axis"
            )
        lengths.setdefault(shape[0], what + jax.tree_util.keystr(path))
    if len(lengths) != 1:
        found = ", ".join(f"{name}: {n}" for n, name in lengths.items())
        raise ValueError(f"every leaf of {what} must share the leading axis; found {found}")
    return next(iter(lengths))


def index(tree: Any, i: Any) -> Any:
    """Position `i` of every leaf."""
    return jax.tree.map(lambda a: a[i], tree)


def shift_right(buf: Any, first: Any) -> Any:
    """`[first, buf[0], ..., buf[T-2]]`: the predecessor of every position."""
    return jax.tree.map(lambda f, a: jnp.concatenate([f[None], a[:-1]], axis=0), first, buf)


def broadcast_leading(tree: Any, length: int) -> Any:
    """`tree` repeated `length` times along a new leading axis."""
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (length, *jnp.shape(a))), tree)


def pad_leading(tree: Any, extra: int) -> Any:
    """Append `extra` copies of the last position (values that are never read back)."""
    if extra == 0:
        return tree
    return jax.tree.map(
        lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)], axis=0), tree
    )


def slice_leading(tree: Any, start: Any, size: int) -> Any:
    """Positions `start, ..., start + size - 1` (a dynamic start, a static size)."""
    return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, size, axis=0), tree)


def update_leading(tree: Any, new: Any, start: Any) -> Any:
    """`tree` with positions from `start` on replaced by `new`."""
    return jax.tree.map(
        lambda a, b: jax.lax.dynamic_update_slice_in_dim(a, b.astype(a.dtype), start, axis=0),
        tree,
        new,
    )


def truncate(tree: Any, length: int) -> Any:
    """The first `length` positions."""
    return jax.tree.map(lambda a: a[:length], tree)


def dtype_of(x: Any) -> Any:
    """The dtype of an array, a `jax.ShapeDtypeStruct` or a Python scalar."""
    return x.dtype if hasattr(x, "dtype") else jnp.result_type(x)


def check_like(tree: Any, reference: Any, what: str, reference_name: str) -> None:
    """Raise `ValueError` unless `tree` has the structure, shapes and dtypes of `reference`
    (both may be `jax.ShapeDtypeStruct` trees), naming the first leaf that differs."""
    ref_leaves, ref_def = jax.tree_util.tree_flatten(reference)
    leaves_with_path, tree_def = jax.tree_util.tree_flatten_with_path(tree)
    if tree_def != ref_def:
        raise ValueError(
            f"{what} has pytree structure {tree_def}, but {reference_name} has {ref_def}"
        )
    for (path, leaf), ref in zip(leaves_with_path, ref_leaves, strict=True):
        shape, dtype = jnp.shape(leaf), dtype_of(leaf)
        ref_shape, ref_dtype = jnp.shape(ref), dtype_of(ref)
        if shape != ref_shape or dtype != ref_dtype:
            raise ValueError(
                f"{what}{jax.tree_util.keystr(path)} has shape {shape} and dtype {dtype}, but "
                f"{reference_name}{jax.tree_util.keystr(path)} has shape {ref_shape} and "
                f"dtype {ref_dtype}"
            )
