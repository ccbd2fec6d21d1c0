"""Activation functions with what the bounds need: value ranges, derivative ranges and
linear relaxations on an interval of pre-activations."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

# Approximate (tanh) GELU, 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))), as in
# jacscope.models: its second derivative vanishes only at +-_GELU_INFLECTION (where
# the derivative is extreme, -0.12899 and 1.12899) and its derivative only at
# _GELU_MINIMUM (value -0.17004). Found by bisection in float64; tests re-check them.
_GELU_INFLECTION = 1.4185040087908284
_GELU_MINIMUM = -0.7524614220710163
_BISECTION_STEPS = 64


class Activation(NamedTuple):
    """An elementwise activation sigma and the points that its bounds need.

    - `fn`: sigma.
    - `derivative`: sigma', in closed form (for ReLU the step 1[z > 0]).
    - `stationary`: the points where sigma' = 0 (interior extrema of sigma).
    - `inflections`: the points where sigma' has its local extrema (sigma'' = 0),
      or where sigma has a kink; sigma' is monotone between consecutive ones.
    - `lipschitz`: sup |sigma'|.
    - `piecewise_linear`: ReLU, whose derivative is a step (Clarke Jacobian [0, 1] at 0).
    """

    name: str
    fn: Callable
    derivative: Callable
    stationary: tuple[float, ...]
    inflections: tuple[float, ...]
    lipschitz: float
    piecewise_linear: bool


_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_B = 0.044715


def _gelu(z):
    return jax.nn.gelu(z, approximate=True)


def _gelu_derivative(z):
    t = jnp.tanh(_GELU_C * (z + _GELU_B * z**3))
    return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t**2) * _GELU_C * (1.0 + 3.0 * _GELU_B * z**2)


def _sigmoid_derivative(z):
    s = jax.nn.sigmoid(z)
    return s * (1.0 - s)


ACTIVATIONS = {
    "relu": Activation(
        "relu", jax.nn.relu, lambda z: (z > 0).astype(z.dtype), (), (0.0,), 1.0, True
    ),
    "tanh": Activation("tanh", jnp.tanh, lambda z: 1.0 - jnp.tanh(z) ** 2, (), (0.0,), 1.0, False),
    "gelu": Activation(
        "gelu",
        _gelu,
        _gelu_derivative,
        (_GELU_MINIMUM,),
        (-_GELU_INFLECTION, _GELU_INFLECTION),
        1.128993068658772,
        False,
    ),
    "sigmoid": Activation("sigmoid", jax.nn.sigmoid, _sigmoid_derivative, (), (0.0,), 0.25, False),
    "softplus": Activation("softplus", jax.nn.softplus, jax.nn.sigmoid, (), (), 1.0, False),
    # ELU with alpha = 1: continuously differentiable, sigma' = min(exp(z), 1) nondecreasing
    "elu": Activation(
        "elu", jax.nn.elu, lambda z: jnp.exp(jnp.minimum(z, 0.0)), (), (), 1.0, False
    ),
}


def get_activation(name: str) -> Activation:
    """The activation called `name`, or a `ValueError` listing the known ones."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, received {name!r}")
    return ACTIVATIONS[name]


def _in(lo, hi, point):
    return (lo <= point) & (point <= hi)


def value_bounds(act: Activation, lo: jax.Array, hi: jax.Array):
    """The exact range [min, max] of sigma over [lo, hi], elementwise."""
    f_lo, f_hi = act.fn(lo), act.fn(hi)
    out_lo, out_hi = jnp.minimum(f_lo, f_hi), jnp.maximum(f_lo, f_hi)
    for point in act.stationary:
        value = act.fn(jnp.asarray(point, lo.dtype))
        inside = _in(lo, hi, point)
        out_lo = jnp.where(inside, jnp.minimum(out_lo, value), out_lo)
        out_hi = jnp.where(inside, jnp.maximum(out_hi, value), out_hi)
    return out_lo, out_hi


def derivative_bounds(act: Activation, lo: jax.Array, hi: jax.Array):
    """The range [min, max] of sigma' over [lo, hi] (Clarke generalised derivative at kinks).

    For ReLU: [0, 0] if hi < 0, [1, 1] if lo > 0, else [0, 1]. For smooth sigma the
    extremes lie at the ends or at an inflection point inside, so the range is exact.
    """
    if act.piecewise_linear:
        return (lo > 0).astype(lo.dtype), (hi >= 0).astype(lo.dtype)
    d_lo, d_hi = act.derivative(lo), act.derivative(hi)
    out_lo, out_hi = jnp.minimum(d_lo, d_hi), jnp.maximum(d_lo, d_hi)
    for point in act.inflections:
        value = act.derivative(jnp.asarray(point, lo.dtype))
        inside = _in(lo, hi, point)
        out_lo = jnp.where(inside, jnp.minimum(out_lo, value), out_lo)
        out_hi = jnp.where(inside, jnp.maximum(out_hi, value), out_hi)
    return out_lo, out_hi


class Relaxation(NamedTuple):
    """Lines with `lower_slope z + lower_icpt <= sigma(z) <= upper_slope z + upper_icpt`
    for every z in [lo, hi], elementwise."""

    lower_slope: jax.Array
    lower_icpt: jax.Array
    upper_slope: jax.Array
    upper_icpt: jax.Array


def _relu_relaxation(lo, hi) -> Relaxation:
    # CROWN (Zhang et al. 2018): the chord above; below, slope 1 or 0, whichever is
    # the smaller-area choice (1 if hi > -lo).
    active, inactive = lo >= 0, hi <= 0
    width = jnp.where(active | inactive, 1.0, hi - lo)
    chord = jnp.where(active, 1.0, jnp.where(inactive, 0.0, hi / width))
    upper_icpt = jnp.where(active | inactive, 0.0, -chord * lo)
    lower_slope = jnp.where(active, 1.0, jnp.where(inactive, 0.0, (hi > -lo).astype(lo.dtype)))
    zero = jnp.zeros_like(lo)
    return Relaxation(lower_slope.astype(lo.dtype), zero, chord.astype(lo.dtype), upper_icpt)


def _smooth_relaxation(act: Activation, lo, hi) -> Relaxation:
    """Two parallel lines of the chord's slope k through the extremes of sigma(z) - k z.

    psi(z) = sigma(z) - k z has its extremes on [lo, hi] at the ends or where
    sigma'(z) = k. sigma' is monotone between the inflection points, so each piece
    holds at most one such root, found by bisection; the bisection's final bracket
    width times sup|psi'| is added as a margin, which keeps the lines sound.
    """
    width = hi - lo
    tiny = jnp.finfo(lo.dtype).eps * (1.0 + jnp.abs(lo) + jnp.abs(hi))
    degenerate = width <= tiny
    safe_width = jnp.where(degenerate, 1.0, width)
    slope = jnp.where(
        degenerate, act.derivative(0.5 * (lo + hi)), (act.fn(hi) - act.fn(lo)) / safe_width
    )

    def psi(z):
        return act.fn(z) - slope * z

    # the monotone pieces of sigma' met by [lo, hi], one row each: [a_i, b_i]
    edges = jnp.asarray((-jnp.inf, *act.inflections, jnp.inf), lo.dtype)[:, None]
    a = jnp.clip(lo[None], edges[:-1], edges[1:])
    b = jnp.clip(hi[None], edges[:-1], edges[1:])
    g_a, g_b = act.derivative(a) - slope, act.derivative(b) - slope
    has_root = (a < b) & (g_a * g_b < 0)

    def halve(_, bracket):
        left, right = bracket
        mid = 0.5 * (left + right)
        same = (act.derivative(mid) - slope) * g_a > 0
        return jnp.where(same, mid, left), jnp.where(same, right, mid)

    left, right = jax.lax.fori_loop(0, _BISECTION_STEPS, halve, (a, b))
    root = 0.5 * (left + right)
    at_root = jnp.where(has_root, psi(root), psi(lo)[None])
    psi_min = jnp.minimum(jnp.minimum(psi(lo), psi(hi)), jnp.min(at_root, axis=0))
    psi_max = jnp.maximum(jnp.maximum(psi(lo), psi(hi)), jnp.max(at_root, axis=0))
    bracket = jnp.where(has_root, right - left, 0.0)
    margin = (act.lipschitz + jnp.abs(slope)) * jnp.max(bracket, axis=0)
    return Relaxation(slope, psi_min - margin, slope, psi_max + margin)


def linear_relaxation(act: Activation, lo: jax.Array, hi: jax.Array) -> Relaxation:
    """Sound linear lower and upper bounds of sigma on [lo, hi], elementwise."""
    if act.piecewise_linear:
        return _relu_relaxation(lo, hi)
    return _smooth_relaxation(act, lo, hi)
