"""Parameters as users bring them: equinox Modules, flax variables, plain pytrees.

The differentiated parameters are the floating-point array leaves; every other leaf
(an `eqx.nn.MLP`'s activation functions, integer counters, typed PRNG keys, Python
numbers, strings) is static, held fixed and passed through unchanged. This is
equinox's convention (`equinox.is_inexact_array`, as in `equinox.filter_grad`),
applied wherever jacscope differentiates with respect to a pytree, so that no user
partitions a model by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
from jax.flatten_util import ravel_pytree


def split_parameters(tree: Any) -> tuple[Any, Any]:
    """`(arrays, static)`: the floating-point array leaves of `tree` and the rest, as
    two pytrees of its structure with `None` in the other's places; `eqx.combine`
    joins them again."""
    return eqx.partition(tree, eqx.is_inexact_array)


def ravel_parameters(tree: Any) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
    """`(flat, unravel)`: the floating-point array leaves of `tree` as one vector, in
    `ravel_pytree` order, and the map from such a vector back to the whole pytree, its
    static leaves restored."""
    arrays, static = split_parameters(tree)
    flat, unravel_arrays = ravel_pytree(arrays)
    return flat, lambda x: eqx.combine(unravel_arrays(x), static)


def describe_shapes(tree: Any, limit: int = 6) -> str:
    """The paths, dtypes and shapes of a pytree's array leaves on one line, for an error
    message: `['w'] float32(3, 2), ['b'] float32(2,)` (the first `limit` of them)."""
    leaves = [
        f"{jax.tree_util.keystr(path) or '(root)'} {leaf.dtype}{tuple(leaf.shape)}"
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype")
    ]
    more = f", ... ({len(leaves) - limit} more)" if len(leaves) > limit else ""
    return ", ".join(leaves[:limit]) + more if leaves else "no array leaves"
