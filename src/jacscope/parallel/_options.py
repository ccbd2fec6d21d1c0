"""The static options of one parallel solve, checked and resolved once."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax

from jacscope._validation import check_count, check_number
from jacscope.parallel._iterate import default_tolerance, resolve_max_iter

DEFAULT_WINDOW = 64


@dataclasses.dataclass(frozen=True)
class Options:
    """What `solve_sequence` and `solve_autoregressive` resolved from their arguments.

    `cap` is the iteration count at which the method is exact whatever the stopping
    rule says: T, or ceil(T / block_size) for block Gauss-Seidel.
    """

    method: str
    length: int
    tol: float
    max_iter: int
    cap: int
    block_size: int
    window: int
    record: bool

    def depth(self, iterations: jax.Array) -> jax.Array:
        """Step evaluations on the critical path for `iterations` iterations."""
        if self.method == "block_gauss_seidel":
            return iterations * self.block_size
        return iterations


def _positive(name: str, value: int | None, default: int) -> int:
    if value is None:
        return default
    return check_count(value, name)


def make_options(
    method: str,
    length: int,
    like: Any,
    *,
    tol: float | None,
    max_iter: int | None,
    block_size: int | None,
    window: int | None,
    record: bool,
) -> Options:
    """Resolve the defaults: `tol` from the dtype of `like` (see `default_tolerance`),
    `block_size` ceil(sqrt(T)), `window` min(T, 64), `max_iter` the cap."""
    block = _positive("block_size", block_size, math.isqrt(length - 1) + 1)
    cap = -(-length // block) if method == "block_gauss_seidel" else length
    return Options(
        method=method,
        length=length,
        tol=default_tolerance(like) if tol is None else float(check_number(tol, "tol")),
        max_iter=resolve_max_iter(max_iter, cap),
        cap=cap,
        block_size=block,
        window=min(_positive("window", window, DEFAULT_WINDOW), length),
        record=bool(record),
    )
