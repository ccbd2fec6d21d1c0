"""Upper bounds on the local Lipschitz constant of an MLP, or of any JAX function, over a
p-ball."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp

from jacscope._validation import check_finite
from jacscope.lipschitz._activations import Activation, derivative_bounds, get_activation
from jacscope.lipschitz._intervals import Interval, interval_norm, scale_rows
from jacscope.lipschitz._jaxpr import JAXPR_METHODS, jaxpr_lipschitz_upper
from jacscope.lipschitz._norms import check_eps, check_norm, operator_norm
from jacscope.lipschitz._preactivation import check_mlp, crown_bounds, ibp_bounds

_METHODS = ("naive", "interval", "crown")


def jacobian_interval(params, derivatives: list[Interval]) -> Interval:
    """An elementwise enclosure of every Jacobian W_H^T D_{H-1} ... D_0 W_0^T whose
    diagonal D_j lies in `derivatives[j]`, by interval arithmetic from the input side.

    A diagonal interval times an interval matrix takes, entry by entry, the extremes of
    the four corner products (`scale_rows`); an exact matrix A times an interval matrix
    [C - R, C + R] is [A C - |A| R, A C + |A| R]. Both are the tightest boxes, and both
    are inclusion-monotone: smaller derivative intervals give a smaller enclosure.
    """
    jac = Interval(params[0]["w"].T, params[0]["w"].T)
    for layer, deriv in zip(params[1:], derivatives, strict=True):
        lower, upper = scale_rows(deriv, jac)
        centre, radius = 0.5 * (lower + upper), 0.5 * (upper - lower)
        centre, radius = layer["w"].T @ centre, jnp.abs(layer["w"].T) @ radius
        jac = Interval(centre - radius, centre + radius)
    return jac


def lipschitz_upper(
    params: list | Callable,
    x0: jax.Array,
    eps: Any,
    norm: Literal["inf", 2] = "inf",
    method: Literal["naive", "interval", "crown"] = "crown",
    *,
    activation: str | None = None,
) -> jax.Array:
    r"""A certified upper bound on the local Lipschitz constant of an MLP, or of any JAX
    function, over a ball.

    The constant is `L = sup_{x in B} ||J(x)||_{p->p}` over the ball
    `B = {x : ||x - x0||_p <= eps}`, with J the (Clarke) Jacobian of the logits;
    `||f(x) - f(y)||_p <= L ||x - y||_p` for x, y in B. `p = inf` gives the l_inf
    operator norm, the largest l_1 norm of a row of J (Shi et al. 2022); `p = 2` the
    spectral norm. With J = W_H^T D_{H-1} W_{H-1}^T ... D_0 W_0^T and
    D_j = diag(sigma'(z_j)), the methods are:

    - `"naive"`: `prod_j ||W_j^T||_p * prod_j max_i |sigma'|` over the IBP box of
      each pre-activation z_j (the product of the layers' operator norms, the
      activations' taken over the ball rather than globally).
    - `"interval"`: interval bound propagation (IBP) boxes on the pre-activations,
      intervals [min, max] of sigma' on them (Clarke interval [0, 1] at a ReLU kink),
      then interval arithmetic through the Jacobian product (`jacobian_interval`)
      and the largest norm over the resulting interval matrix (`interval_norm`).
    - `"crown"`: the same Jacobian interval propagation, from tighter boxes on the
      pre-activations: CROWN's linear relaxations of every activation, propagated
      backwards to the input ball (Zhang et al. 2018), intersected with IBP layer by
      layer. This is the linear-relaxation step of Shi et al. (2022) applied to the
      forward network; the Jacobian's own products are then enclosed by interval
      arithmetic, not by their further linear relaxations.

    **Ordering, by construction.** The CROWN boxes lie inside the IBP boxes (see
    `crown_bounds`); derivative ranges, interval products and the l_inf norm of an
    interval matrix are all inclusion-monotone, so crown <= interval. For l_inf,
    interval <= naive as well: the magnitudes obey
    `|J| <= |W_H^T| Dmax_{H-1} ... Dmax_0 |W_0^T|` entrywise and the l_inf norm is
    submultiplicative with `|| |A| ||_inf = ||A||_inf`. For l_2 neither holds in
    general (entrywise magnitudes forget cancellations, `|| |A| ||_2 >= ||A||_2`),
    so there `"interval"` returns min(interval, naive) and `"crown"` returns
    min(crown, interval): each a minimum of sound bounds, hence sound.
    At eps = 0 the interval and CROWN bounds equal `||J(x0)||_p` exactly (away from
    ReLU kinks; at a kink they bound the Clarke Jacobian).

    **Any function.** When `params` is a callable `f` (of one array, the shape of
    `x0`, returning arrays), the bound is for `f` with input and output flattened,
    computed from its jaxpr (`jacscope.lipschitz._jaxpr`): interval enclosures of
    every intermediate value and of its Jacobian, composed primitive by primitive
    (linear primitives exactly, elementwise activations by the ranges of sigma and
    sigma' on IBP boxes), with `"interval"` (IBP boxes) or `"crown"` (boxes tightened
    by forward linear bounds through CROWN's relaxations; identical to the MLP path's
    on MLPs of up to two hidden layers, looser beyond). `"naive"` is not offered
    there, and a primitive it cannot bound (e.g. `sort`) is refused by name. On an MLP
    the `"interval"` bound is the MLP path's, without its l_2 minimum with `"naive"`.

    Sound up to floating-point rounding. Pure and `jax.jit`-able (with `params` if a
    function, `norm`, `method` and `activation` static).

    **Arguments:**

    - `params`: the MLP, a list of `{"w": (in, out), "b": (out,)}` layers
      (`jacscope.models.init_mlp`); activation after every layer but the last. Or
      a function `f(x)` of any JAX primitives that the jaxpr path can bound.
    - `x0`: the centre of the ball, `(in,)` (any shape for a function).
    - `eps`: its radius, >= 0.
    - `norm`: `"inf"` or `2`.
    - `method`: `"naive"`, `"interval"` or `"crown"`.
    - `activation`: for an MLP, `"gelu"` (the default; tanh approximation, as
      `jacscope.models.mlp_apply`), `"relu"`, `"tanh"`, `"sigmoid"`, `"softplus"` or
      `"elu"`; not given for a function (its activations are read from its jaxpr).

    **Returns:** the scalar bound.

    Citation: Shi, Wang, Zhang, Kolter & Hsieh, "Efficiently Computing Local Lipschitz
    Constants of Neural Networks via Bound Propagation", NeurIPS, 2022.

    Citation: Zhang, Weng, Chen, Hsieh & Daniel, "Efficient Neural Network Robustness
    Certification with General Activation Functions", arXiv 1811.00866.

    Citation: Gowal et al., "On the Effectiveness of Interval Bound Propagation for
    Training Verifiably Robust Models", arXiv 1810.12715.
    """
    what = "lipschitz_upper"
    norm = check_norm(norm, what)
    if callable(params):
        if method not in JAXPR_METHODS:
            raise ValueError(
                f"{what}: method must be one of {JAXPR_METHODS} for a function, received {method!r}"
            )
        if activation is not None:
            raise ValueError(f"{what}: activation is read from the function, do not pass it")
        x0 = jnp.asarray(x0)
        if not jnp.issubdtype(x0.dtype, jnp.inexact):
            raise ValueError(f"{what}: x0 must hold floating-point values, received {x0.dtype}")
        check_finite(x0, f"{what}: x0")
        check_eps(eps, what)
        return jaxpr_lipschitz_upper(params, x0, eps, norm, method)
    if method not in _METHODS:
        raise ValueError(f"{what}: method must be one of {_METHODS}, received {method!r}")
    act = get_activation("gelu" if activation is None else activation)
    check_mlp(params, x0, what)
    check_eps(eps, what)
    return upper_bounds(params, jnp.asarray(x0), eps, norm, act, method)[method]


def upper_bounds(params, x0, eps, norm: str, act: Activation, last: str) -> dict:
    """The bounds of `lipschitz_upper` in the order naive, interval, crown, up to `last`
    (each method reuses the work of the previous ones)."""
    ibp = ibp_bounds(params, x0, eps, norm, act)
    ibp_derivatives = [Interval(*derivative_bounds(act, *box)) for box in ibp]
    naive = jnp.prod(jnp.stack([operator_norm(layer["w"].T, norm) for layer in params]))
    for deriv in ibp_derivatives:
        naive = naive * jnp.max(jnp.maximum(jnp.abs(deriv.lower), jnp.abs(deriv.upper)))
    bounds = {"naive": naive}
    if last == "naive":
        return bounds
    interval = interval_norm(jacobian_interval(params, ibp_derivatives), norm)
    bounds["interval"] = jnp.minimum(interval, naive) if norm == "2" else interval
    if last == "interval":
        return bounds
    crown = crown_bounds(params, x0, eps, norm, act)
    derivatives = [Interval(*derivative_bounds(act, *box)) for box in crown]
    bound = interval_norm(jacobian_interval(params, derivatives), norm)
    bounds["crown"] = jnp.minimum(bound, bounds["interval"]) if norm == "2" else bound
    return bounds
