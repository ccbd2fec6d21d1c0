"""The distributions that `propagate_gaussian` and `propagate_cauchy` return."""

from __future__ import annotations

from typing import NamedTuple

import jax


class Gaussian(NamedTuple):
    """A multivariate normal distribution N(mean, cov).

    **Fields:**

    - `mean`: `(m,)`.
    - `cov`: `(m, m)`, symmetric positive semi-definite (diagonal from the marginal
      form).
    """

    mean: jax.Array
    cov: jax.Array


class Cauchy(NamedTuple):
    """Cauchy marginals: component i is Cauchy(loc_i, scale_i), density
    `1 / (pi scale_i (1 + ((y - loc_i) / scale_i)^2))`.

    **Fields:**

    - `loc`: `(m,)` locations (medians).
    - `scale`: `(m,)` scales (half the interquartile range).
    """

    loc: jax.Array
    scale: jax.Array
