"""Interval arithmetic on arrays: elementwise bounds, their products, and the largest
operator norm over an interval matrix."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jacscope.lipschitz._norms import operator_norm


class Interval(NamedTuple):
    """Elementwise bounds `lower <= value <= upper`."""

    lower: jax.Array
    upper: jax.Array


def interval_product(a: Interval, b: Interval) -> Interval:
    """The elementwise product of two interval arrays (broadcasting): entry by entry the
    extremes of the four corner products, the tightest box. Inclusion-monotone."""
    corners = jnp.stack(
        jnp.broadcast_arrays(
            a.lower * b.lower, a.lower * b.upper, a.upper * b.lower, a.upper * b.upper
        )
    )
    return Interval(jnp.min(corners, axis=0), jnp.max(corners, axis=0))


def scale_rows(scale: Interval, mat: Interval) -> Interval:
    """diag(scale) mat for an interval vector (or array) `scale` and an interval matrix
    (or array with one more, trailing, axis) `mat`: `interval_product` row by row."""
    return interval_product(Interval(scale.lower[..., None], scale.upper[..., None]), mat)


def interval_norm(jac: Interval, norm: str) -> jax.Array:
    """The largest p -> p norm over an interval matrix, or an upper bound on it.

    l_inf: max_i sum_j max(|lower_ij|, |upper_ij|), exact (each row's l_1 norm is
    maximised entry by entry). l_2: min(||C||_2 + ||R||_2, || max(|lower|, |upper|) ||_2)
    with C, R the centre and radius; both bound every member (triangle inequality;
    ||A||_2 <= ||B||_2 when |A| <= B entrywise) and the first is exact when R = 0.
    """
    magnitude = jnp.maximum(jnp.abs(jac.lower), jnp.abs(jac.upper))
    if norm == "inf":
        return operator_norm(magnitude, "inf")
    centre, radius = 0.5 * (jac.lower + jac.upper), 0.5 * (jac.upper - jac.lower)
    return jnp.minimum(
        operator_norm(centre, "2") + operator_norm(radius, "2"), operator_norm(magnitude, "2")
    )
