"""The data a curvature operator sums over: one batch in memory, or a stream of batches.

A curvature matrix of a data set of N examples is a sum over its examples,
C = c sum_n C_n with c = 1/N (`reduction="mean"`) or 1 (`"sum"`). Split into
batches b of N_b examples, C = c sum_b sum_{n in b} C_n, so a product C v is one
pass over the batches that adds up the batches' products, and then scales by c; N is
counted during the pass, so nothing is read ahead of the first product.

`data` is either one batch (a pytree of arrays, in memory, held by the operator) or
a zero-argument function returning an iterable of batches (a data set larger than
memory, read again at every product: `lambda: loader.epoch()`). An iterator is
refused: the first product would consume it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import numpy as np

from jacscope._parameters import describe_shapes

_EMPTY = object()


class Source(NamedTuple):
    """Where an operator's batches come from.

    **Fields:**

    - `batch`: the one batch in memory, or `None` when the batches are streamed.
    - `batches`: the zero-argument function returning the batches, or `None`.
    - `first`: the first batch (the batch itself when in memory), for the checks made
      when the operator is built.
    """

    batch: Any
    batches: Callable[[], Any] | None
    first: Any


def batch_source(data: Any, what: str) -> Source:
    """`data` as a `Source`, or a one-line error naming what is wrong with it.

    **Arguments:**

    - `data`: one batch (a pytree of arrays), or a zero-argument function returning an
      iterable of batches.
    - `what`: the function `data` was given to, for messages.

    **Returns:** a `Source`; for a function, `first` is the first batch of one call
    (only that batch is read).

    **Raises:** `TypeError` for an iterator or a function whose result is not
    iterable; `ValueError` for a function that yields no batch.
    """
    if isinstance(data, Iterator):
        raise TypeError(
            f"{what}: data is an iterator, which the first product would consume; pass "
            "one batch, or a zero-argument function returning a fresh iterable of batches "
            "(e.g. lambda: iter(batches))"
        )
    if not callable(data) or isinstance(data, jax.Array | np.ndarray):
        return Source(batch=data, batches=None, first=data)
    try:
        first = next(iter(data()), _EMPTY)
    except TypeError as err:
        raise TypeError(
            f"{what}: data() must return an iterable of batches ({type(err).__name__}: {err})"
        ) from None
    if first is _EMPTY:
        raise ValueError(f"{what}: data() yielded no batches")
    return Source(batch=None, batches=data, first=first)


def batch_size(tree: Any, what: str) -> int:
    """The number of examples in a batch: the common leading axis of its array leaves.

    **Raises:** `ValueError` naming the leaves if they have no leading axis or their
    leading axes differ.
    """
    sizes = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        shape = getattr(leaf, "shape", None)
        name = jax.tree_util.keystr(path) or "(root)"
        if shape is None or len(shape) == 0:
            raise ValueError(
                f"{what}: batch leaf {name} has no leading example axis; a batch holds "
                f"arrays of shape (examples, ...), received {describe_shapes(tree)}"
            )
        sizes[name] = int(shape[0])
    if not sizes:
        raise ValueError(f"{what}: the batch holds no arrays")
    if len(set(sizes.values())) != 1:
        described = ", ".join(f"{name} has {n}" for name, n in sizes.items())
        raise ValueError(f"{what}: the batch's leaves differ in their example axis: {described}")
    return next(iter(sizes.values()))


def split_pair(batch: Any, what: str) -> tuple[Any, Any]:
    """`(inputs, targets)` of a batch of a model-and-loss operator, or a one-line error."""
    if not isinstance(batch, tuple | list) or len(batch) != 2:
        kind = f"a {type(batch).__name__}" + (
            f" of length {len(batch)}" if isinstance(batch, tuple | list) else ""
        )
        raise ValueError(f"{what}: each batch must be a pair (inputs, targets), received {kind}")
    return batch[0], batch[1]
