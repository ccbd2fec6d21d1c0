"""The spectral norm ||A||_2 of an operator, with the residual that certifies it."""

from __future__ import annotations

from typing import NamedTuple

import jax

from jacscope.linalg._checks import check_operator
from jacscope.linalg._svd import svd_topk
from jacscope.operators import AbstractLinearOperator


class NormEstimate(NamedTuple):
    """A norm computed by a Krylov method.

    **Fields:**

    - `value`: the largest Ritz singular value, a lower bound on `||A||_2`.
    - `residual`: `||A v - value u||` for the Ritz vectors `u`, `v`.
    - `num_matvecs`: products with the operator spent (`mv` and `rmv` together).
    """

    value: jax.Array
    residual: jax.Array
    num_matvecs: int


def spectral_norm(
    op: AbstractLinearOperator, *, key: jax.Array, depth: int | None = None
) -> NormEstimate:
    r"""`||A||_2`, the largest singular value, by Golub-Kahan-Lanczos.

    The top Ritz value `s` of `depth` Lanczos bidiagonalisation steps (see
    `svd_topk(method="lanczos")`) never exceeds `||A||_2` (interlacing), and some
    singular value of `A` lies within `residual / sqrt(2)` of it; when the top
    singular value is separated from the rest by `gap`, `||A||_2 - s` is at most
    `residual^2 / (2 gap)` as well. Krylov methods converge fastest at the ends of the
    spectrum, so a modest `depth` (default `min(min(m, n), 23)`) usually gives
    `||A||_2` to many digits; `residual` tells.

    **Arguments:** `op` (any operator), `key` (a `jax.random` key), `depth`
    (`1 <= depth <= min(m, n)`). Works under `jax.jit`.

    Citation: Golub & Kahan, "Calculating the singular values and pseudo-inverse of a
    matrix", SIAM Journal on Numerical Analysis, 1965.
    """
    check_operator(op, "spectral_norm")
    _, s, _, info = svd_topk(op, 1, key=key, method="lanczos", depth=depth)
    return NormEstimate(s[0], info.residuals[0], info.num_matvecs)
