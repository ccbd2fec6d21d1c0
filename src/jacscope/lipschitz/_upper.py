"""Upper bounds on the local Lipschitz constant of an MLP over a p-ball."""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp

from jacscope.lipschitz._activations import Activation, derivative_bounds, get_activation
from jacscope.lipschitz._norms import check_eps, check_norm, operator_norm
from jacscope.lipschitz._preactivation import Interval, check_mlp, crown_bounds, ibp_bounds

_METHODS = ("naive", "interval", "crown")


def jacobian_interval(params, derivatives: list[Interval]) -> Interval:
    """An elementwise enclosure of every Jacobian W_H^T D_{H-1} ... D_0 W_0^T whose
    diagonal D_j lies in `derivatives[j]`, by interval arithmetic from the input side.

    A diagonal interval times an interval matrix takes, entry by entry, the extremes of
    the four corner products; an exact matrix A times an interval matrix [C - R, C + R]
    is [A C - |A| R, A C + |A| R]. Both are the tightest boxes, and both are
    inclusion-monotone: smaller derivative intervals give a smaller enclosure.
    """
    lower = upper = params[0]["w"].T
    for layer, deriv in zip(params[1:], derivatives, strict=True):
        d_lo, d_hi = deriv.lower[:, None], deriv.upper[:, None]
        corners = jnp.stack([d_lo * lower, d_lo * upper, d_hi * lower, d_hi * upper])
        lower, upper = jnp.min(corners, axis=0), jnp.max(corners, axis=0)
        centre, radius = 0.5 * (lower + upper), 0.5 * (upper - lower)
        centre, radius = layer["w"].T @ centre, jnp.abs(layer["w"].T) @ radius
        lower, upper = centre - radius, centre + radius
    return Interval(lower, upper)


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


def lipschitz_upper(
    params: list,
    x0: jax.Array,
    eps: Any,
    norm: Literal["inf", 2] = "inf",
    method: Literal["naive", "interval", "crown"] = "crown",
    *,
    activation: str = "gelu",
) -> jax.Array:
    r"""A certified upper bound on the local Lipschitz constant of an MLP over a ball.

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

    Sound up to floating-point rounding. Pure and `jax.jit`-able (with `norm`,
    `method` and `activation` static).

    **Arguments:**

    - `params`: the MLP, a list of `{"w": (in, out), "b": (out,)}` layers
      (`jacscope.models.init_mlp`); activation after every layer but the last.
    - `x0`: the centre of the ball, `(in,)`.
    - `eps`: its radius, >= 0.
    - `norm`: `"inf"` or `2`.
    - `method`: `"naive"`, `"interval"` or `"crown"`.
    - `activation`: `"gelu"` (tanh approximation, as `jacscope.models.mlp_apply`),
      `"relu"` or `"tanh"`.

    **Returns:** the scalar bound.

    References: Z. Shi, Y. Wang, H. Zhang, J. Z. Kolter, C.-J. Hsieh, *Efficiently
    Computing Local Lipschitz Constants of Neural Networks via Bound Propagation*,
    NeurIPS 2022; H. Zhang et al., *Efficient Neural Network Robustness Certification
    with General Activation Functions* (CROWN), NeurIPS 2018; S. Gowal et al., *On the
    Effectiveness of Interval Bound Propagation*, arXiv 1810.12715 (2018).
    """
    what = "lipschitz_upper"
    norm = check_norm(norm, what)
    if method not in _METHODS:
        raise ValueError(f"{what}: method must be one of {_METHODS}, received {method!r}")
    act = get_activation(activation)
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
