"""Bounds on the pre-activations of an MLP over a p-ball of inputs: interval bound
propagation (IBP) and linear bound back-substitution (CROWN).

The MLP is the `jacscope.models` format: a list of `{"w": (in, out), "b": (out,)}`
layers, z_0 = x W_0 + b_0, z_j = sigma(z_{j-1}) W_j + b_j, output = sigma(z_{H-1}) W_H + b_H.
The bounds concern the H hidden pre-activations z_0 .. z_{H-1}.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from jacscope._validation import check_finite, check_vector_shape
from jacscope.lipschitz._activations import Activation, linear_relaxation, value_bounds
from jacscope.lipschitz._intervals import Interval
from jacscope.lipschitz._norms import dual_norm


def check_mlp(params: Any, x0: Any, what: str) -> None:
    """Refuse anything but a list of `{"w": (in, out), "b": (out,)}` layers that chain and
    start at `x0.shape == (in,)`, naming the offending layer."""
    if not isinstance(params, list | tuple) or len(params) < 1:
        raise ValueError(
            f"{what}: params must be a list of {{'w': (in, out), 'b': (out,)}} layers "
            f"(jacscope.models.init_mlp), received {type(params).__name__}"
        )
    width = None
    for index, layer in enumerate(params):
        if not isinstance(layer, dict) or set(layer) != {"w", "b"}:
            raise ValueError(f"{what}: params[{index}] must be a dict with keys 'w' and 'b'")
        w_shape, b_shape = jnp.shape(layer["w"]), jnp.shape(layer["b"])
        if len(w_shape) != 2 or b_shape != (w_shape[1],):
            raise ValueError(
                f"{what}: params[{index}] has w of shape {w_shape} and b of shape {b_shape}; "
                "expected w (in, out) and b (out,)"
            )
        if width is not None and w_shape[0] != width:
            raise ValueError(
                f"{what}: params[{index}]['w'] has {w_shape[0]} inputs but the previous "
                f"layer has {width} outputs"
            )
        width = w_shape[1]
    check_vector_shape(x0, (jnp.shape(params[0]["w"])[0],), f"{what}: x0")
    check_finite(params, f"{what}: params")
    check_finite(x0, f"{what}: x0")


def _first_layer(layer, x0, eps, norm) -> Interval:
    """z_0 = x W_0 + b_0 over the ball: exact, centre +- eps * (dual norm of each column)."""
    centre = x0 @ layer["w"] + layer["b"]
    radius = eps * dual_norm(layer["w"], norm, axis=0)
    return Interval(centre - radius, centre + radius)


def _affine(bounds: Interval, layer) -> Interval:
    """The interval hull of {a W + b : a in bounds} (centre-radius form, exact)."""
    centre = 0.5 * (bounds.lower + bounds.upper) @ layer["w"] + layer["b"]
    radius = 0.5 * (bounds.upper - bounds.lower) @ jnp.abs(layer["w"])
    return Interval(centre - radius, centre + radius)


def ibp_bounds(params, x0, eps, norm: str, act: Activation) -> list[Interval]:
    """Interval bound propagation (Gowal et al. 2018): each layer's box from the last."""
    if len(params) == 1:
        return []
    bounds = [_first_layer(params[0], x0, eps, norm)]
    for layer in params[1:-1]:
        bounds.append(_affine(Interval(*value_bounds(act, *bounds[-1])), layer))
    return bounds


def _back_substitute(params, target: int, relaxations, x0, eps, norm: str) -> Interval:
    """CROWN bounds on z_target from linear relaxations of every earlier activation.

    Upper bound: start from z_t = sigma(z_{t-1}) W_t + b_t, i.e. the rows of
    Lambda = W_t^T and the constant b_t. Going down, each sigma(z_i) is replaced by
    its upper line where Lambda is positive and its lower line where negative (the
    reverse for the lower bound), and each z_i by sigma(z_{i-1}) W_i + b_i, until
    Lambda x + c remains; its maximum over the ball is Lambda x0 + eps ||Lambda||_dual + c.
    """
    lam_up = lam_lo = params[target]["w"].T
    const_up = const_lo = params[target]["b"]
    for i in range(target - 1, -1, -1):
        rel = relaxations[i]
        pos_up, neg_up = jnp.maximum(lam_up, 0), jnp.minimum(lam_up, 0)
        pos_lo, neg_lo = jnp.maximum(lam_lo, 0), jnp.minimum(lam_lo, 0)
        const_up = const_up + pos_up @ rel.upper_icpt + neg_up @ rel.lower_icpt
        const_lo = const_lo + pos_lo @ rel.lower_icpt + neg_lo @ rel.upper_icpt
        lam_up = pos_up * rel.upper_slope + neg_up * rel.lower_slope
        lam_lo = pos_lo * rel.lower_slope + neg_lo * rel.upper_slope
        const_up = const_up + lam_up @ params[i]["b"]
        const_lo = const_lo + lam_lo @ params[i]["b"]
        lam_up = lam_up @ params[i]["w"].T
        lam_lo = lam_lo @ params[i]["w"].T
    upper = lam_up @ x0 + eps * dual_norm(lam_up, norm) + const_up
    lower = lam_lo @ x0 - eps * dual_norm(lam_lo, norm) + const_lo
    return Interval(lower, upper)


def crown_bounds(params, x0, eps, norm: str, act: Activation) -> list[Interval]:
    """CROWN pre-activation bounds (Zhang et al. 2018), intersected with IBP layer by layer.

    Layer j's box is the intersection of (a) the CROWN back-substitution through the
    relaxations of layers < j and (b) one IBP step from layer j-1's (already
    tightened) box. By induction every box lies inside the plain IBP box of
    `ibp_bounds`: (b) is inclusion-monotone and the intersection can only shrink.
    """
    if len(params) == 1:
        return []
    bounds = [_first_layer(params[0], x0, eps, norm)]
    relaxations = []
    for target in range(1, len(params) - 1):
        relaxations.append(linear_relaxation(act, *bounds[-1]))
        step = _affine(Interval(*value_bounds(act, *bounds[-1])), params[target])
        crown = _back_substitute(params, target, relaxations, x0, eps, norm)
        bounds.append(
            Interval(jnp.maximum(step.lower, crown.lower), jnp.minimum(step.upper, crown.upper))
        )
    return bounds
