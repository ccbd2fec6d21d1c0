"""Argument checks shared by the linalg functions (static: shapes and counts, never values)."""

from __future__ import annotations

from typing import Any

from jacscope.operators import AbstractLinearOperator


def check_operator(op: Any, what: str) -> None:
    """Refuse anything that is not a jacscope linear operator."""
    if not isinstance(op, AbstractLinearOperator):
        raise TypeError(
            f"{what} expects a jacscope linear operator (AbstractLinearOperator), "
            f"received {type(op).__name__}; wrap a matrix or function with "
            "jacscope.LinearOperator(mv, rmv, shape, dtype)"
        )


def check_square(op: AbstractLinearOperator, what: str) -> None:
    """Refuse a non-square operator, naming the expected and received shapes."""
    check_operator(op, what)
    m, n = op.shape
    if m != n:
        raise ValueError(
            f"{what} expects a square operator of shape (n, n), received shape {op.shape}"
        )
