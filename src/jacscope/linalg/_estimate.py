"""`Estimate`: a stochastic estimate with its standard error and its cost."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Estimate(NamedTuple):
    """A randomized estimate.

    **Fields:**

    - `value`: the estimate (a scalar, or an array for `diagonal`).
    - `stderr`: its standard error, same shape as `value`; each estimator's docstring
      says how it is computed. Zero when the result is exact.
    - `num_matvecs`: how many products with the operator it cost.
    """

    value: jax.Array
    stderr: jax.Array
    num_matvecs: int


def mean_estimate(samples: jax.Array, num_matvecs: int, offset=0.0) -> Estimate:
    """`offset + mean(samples)` with standard error `std(samples, ddof=1) / sqrt(N)`.

    `samples` holds N independent, identically distributed, unbiased estimates of
    `value - offset` along its first axis.
    """
    num = samples.shape[0]
    stderr = jnp.std(samples, axis=0, ddof=1) / jnp.sqrt(jnp.asarray(num, samples.dtype))
    return Estimate(offset + jnp.mean(samples, axis=0), stderr, num_matvecs)
