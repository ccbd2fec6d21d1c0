"""Certified local Lipschitz upper bounds of any JAX function, by abstract interpretation
of its jaxpr.

`jaxpr_lipschitz_upper` traces `f` with `jax.make_jaxpr` and carries, for every value v
that depends on the input x, an `Enclosure` valid for every x of the ball
B = {x : ||x - x0||_p <= eps}: a box on v(x) and an interval matrix holding the
(Clarke) Jacobian dv/dx(x), of shape (*v.shape, n) with n = x0.size; with the CROWN
method also affine lower and upper bounds of v in x. Values that do not depend on x
are evaluated as they are (their Jacobian is zero). The rules, equation by equation:

- **Linear primitives** (add, sub, neg, reshape, transpose, broadcast_in_dim, slice,
  concatenate, reduce_sum, select_n with a constant predicate, ...; mul, div,
  dot_general and conv_general_dilated with one constant factor): exact on the
  Jacobian and on the affine bounds, by the split A = A+ + A- into a part
  nondecreasing and a part nonincreasing in its operand, [A+ L + A- U, A+ U + A- L];
  on the box, interval bound propagation (Gowal et al. 2018), the same split.
- **Elementwise nonlinear** sigma (an activation of `ACTIVATIONS`, tanh, logistic,
  exp, expm1, erf, erfc, integer_pow, square, max or min with a constant): the exact
  range of sigma over the input's box, and the rows of the Jacobian times the exact
  range [min, max] of sigma' over the box (`derivative_bounds`; the Clarke interval
  [0, 1] at a ReLU kink), by interval products (`scale_rows`). Activations that JAX
  traces into several equations (tanh-GELU, softplus, ELU) are recognised by matching
  the jaxpr of their `fn` equation by equation, literals included.
- **Products** u v of two values that depend on x: the product rule
  d(uv) in [u] [dv] + [v] [du] and the interval product of the boxes.
- **Calls** (jit, closed_call, remat, custom_jvp_call, custom_vjp_call): the rules
  inside the primal jaxpr.

Anything else is refused with a `ValueError` naming the primitive. The result is the
largest p -> p norm over the output's interval Jacobian (`interval_norm`), a bound on
`sup_{x in B} ||J_f(x)||` for the flattened input and output.

**Boxes.** `"interval"`: IBP boxes, except that a value reached from x through linear
primitives only (an affine function of x) gets its exact range over the ball,
v(x0) +- eps ||dv_i/dx||_dual. `"crown"`: every value also carries affine bounds
L(x - x0) + l <= v(x) <= U(x - x0) + u, through each elementwise activation by its
CROWN linear relaxation on the box (Zhang et al. 2018; `linear_relaxation`; constant
lines for functions of unbounded derivative and for products), and its box is
intersected with their range over the ball. This is forward-mode linear bound
propagation (the forward mode of Xu et al. 2020): identical to CROWN's
back-substitution up to the second layer of activations of an MLP, looser beyond
(back-substitution picks the side of each earlier relaxation per target unit). Every
rule is inclusion-monotone, so the CROWN boxes lie inside the IBP ones and, for
l_inf, crown <= interval; for l_2, `"crown"` returns min(crown, interval).

Sound up to floating-point rounding; `jax.jit`-able (with `norm` and `method` static).

Citation: Gowal et al., "On the Effectiveness of Interval Bound Propagation for Training
Verifiably Robust Models", arXiv 1810.12715.

Citation: Zhang, Weng, Chen, Hsieh & Daniel, "Efficient Neural Network Robustness
Certification with General Activation Functions", arXiv 1811.00866.

Citation: Xu et al., "Automatic Perturbation Analysis for Scalable Certified Robustness
and Beyond", NeurIPS, 2020.

Citation: Shi, Wang, Zhang, Kolter & Hsieh, "Efficiently Computing Local Lipschitz
Constants of Neural Networks via Bound Propagation", NeurIPS, 2022.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from jacscope.lipschitz._activations import (
    ACTIVATIONS,
    Activation,
    derivative_bounds,
    linear_relaxation,
    value_bounds,
)
from jacscope.lipschitz._intervals import Interval, interval_norm, interval_product, scale_rows
from jacscope.lipschitz._norms import dual_norm

JAXPR_METHODS = ("interval", "crown")

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _power(y: int) -> Activation:
    """z -> z^y for an integer y >= 1: extremes of z^y and of y z^(y-1) at the ends or 0."""
    return Activation(
        f"integer_pow {y}",
        lambda z: z**y,
        lambda z: y * z ** (y - 1),
        (0.0,),
        (0.0,),
        math.inf,
        False,
    )


# elementwise primitives of one operand, as the activation whose bounds they need
_ELEMENTWISE = {
    "tanh": ACTIVATIONS["tanh"],
    "logistic": ACTIVATIONS["sigmoid"],
    "exp": Activation("exp", jnp.exp, jnp.exp, (), (), math.inf, False),
    "expm1": Activation("expm1", jnp.expm1, jnp.exp, (), (), math.inf, False),
    "erf": Activation(
        "erf",
        jax.lax.erf,
        lambda z: _TWO_OVER_SQRT_PI * jnp.exp(-(z**2)),
        (),
        (0.0,),
        _TWO_OVER_SQRT_PI,
        False,
    ),
    "erfc": Activation(
        "erfc",
        jax.lax.erfc,
        lambda z: -_TWO_OVER_SQRT_PI * jnp.exp(-(z**2)),
        (),
        (0.0,),
        _TWO_OVER_SQRT_PI,
        False,
    ),
    "square": _power(2),
}
# linear in every operand that depends on x (positions not in _FIXED_OPERANDS);
# neg and sub reverse the order of their (second) operand
_LINEAR = {
    "add": (1, 1),
    "add_any": (1, 1),
    "sub": (1, -1),
    "neg": (-1,),
    "copy": (1,),
    "copy_p": (1,),
    "convert_element_type": (1,),
    "reshape": (1,),
    "transpose": (1,),
    "squeeze": (1,),
    "expand_dims": (1,),
    "broadcast_in_dim": (1,),
    "reduce_sum": (1,),
    "slice": (1,),
    "rev": (1,),
    "pad": (1, 1),
    "concatenate": None,  # any number of operands, all nondecreasing
    "stack": None,
    "select_n": None,
    "dynamic_slice": None,
    "gather": None,
}
_FIXED_OPERANDS = {"select_n": (0,), "dynamic_slice": "indices", "gather": (1,)}
# bilinear: linear in one operand when the other is constant, which is split in two
_BILINEAR = ("mul", "dot_general", "conv_general_dilated", "div")
_CALLS = {
    "jit": "jaxpr",
    "pjit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "remat": "jaxpr",
    "remat2": "jaxpr",
    "checkpoint": "jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr",
}


class LinearBounds(NamedTuple):
    """Affine bounds of a value v in the input:
    `slopes.lower (x - x0) + offsets.lower <= v(x) <= slopes.upper (x - x0) + offsets.upper`
    over the ball; slopes of shape (*v.shape, n), offsets of v's shape."""

    slopes: Interval
    offsets: Interval


class Enclosure(NamedTuple):
    """What holds for a value v(x) that depends on x, at every x of the ball.

    - `box`: v(x) lies in it, elementwise.
    - `jac`: the (Clarke) Jacobian dv/dx(x) lies in it, shape (*v.shape, n).
    - `linear`: `LinearBounds` of v, or None where they are not carried.
    """

    box: Interval
    jac: Interval
    linear: LinearBounds | None


class _Ball(NamedTuple):
    x0: jax.Array
    eps: jax.Array
    norm: str
    crown: bool


def _refuse(name: str, why: str = "") -> ValueError:
    return ValueError(f"lipschitz_upper cannot bound the primitive {name!r}{why}")


def _bind(eqn, operands) -> list:
    out = eqn.primitive.bind(*operands, **eqn.primitive.get_bind_params(eqn.params))
    return list(out) if eqn.primitive.multiple_results else [out]


def _monotone(fn: Callable, signs, intervals) -> Interval:
    """The interval image of a map nondecreasing in each operand of sign +1 and
    nonincreasing in each of sign -1: its values at the matching corners."""
    lows = [iv.lower if s > 0 else iv.upper for s, iv in zip(signs, intervals, strict=True)]
    highs = [iv.upper if s > 0 else iv.lower for s, iv in zip(signs, intervals, strict=True)]
    return Interval(fn(*lows), fn(*highs))


def _tightened(enc: Enclosure, ball: _Ball) -> Enclosure:
    """The box intersected with the range of the affine bounds over the ball,
    offset -+ eps ||slope row||_dual."""
    if enc.linear is None:
        return enc
    slopes, offsets = enc.linear
    lower = offsets.lower - ball.eps * dual_norm(slopes.lower, ball.norm)
    upper = offsets.upper + ball.eps * dual_norm(slopes.upper, ball.norm)
    box = Interval(jnp.maximum(enc.box.lower, lower), jnp.minimum(enc.box.upper, upper))
    return enc._replace(box=box)


def _constant_lines(box: Interval, ball: _Ball) -> LinearBounds | None:
    """The affine bounds box.lower <= v <= box.upper (zero slopes), for crown; else None."""
    if not ball.crown:
        return None
    zeros = jnp.zeros((*box.lower.shape, ball.x0.size), box.lower.dtype)
    return LinearBounds(Interval(zeros, zeros), box)


def _linear_image(value_fn, tangent_fn, signs, encs: list[Enclosure], ball) -> Enclosure:
    """A map affine in the enclosed operands: `value_fn` on boxes and offsets,
    `tangent_fn` (its linear part, column by column) on Jacobians and slopes."""
    box = _monotone(value_fn, signs, [e.box for e in encs])
    jac = _monotone(tangent_fn, signs, [e.jac for e in encs])
    linear = None
    if all(e.linear is not None for e in encs):
        slopes = _monotone(tangent_fn, signs, [e.linear.slopes for e in encs])
        offsets = _monotone(value_fn, signs, [e.linear.offsets for e in encs])
        linear = LinearBounds(slopes, offsets)
    return _tightened(Enclosure(box, jac, linear), ball)


def _columns(fn: Callable, count: int) -> Callable:
    """fn applied to every trailing column of its `count` arguments."""
    return jax.vmap(fn, in_axes=(-1,) * count, out_axes=-1)


def _linear(eqn, operands, ball) -> Enclosure:
    name = eqn.primitive.name
    moving = [i for i, op in enumerate(operands) if isinstance(op, Enclosure)]
    fixed = _FIXED_OPERANDS.get(name, ())
    fixed = range(1, len(operands)) if fixed == "indices" else fixed
    if any(i in fixed for i in moving):
        raise _refuse(name, " with an index or predicate operand that depends on x")
    signs = _LINEAR[name] or (1,) * len(operands)
    # the linear part: constants that are summands become zero, fixed operands stay
    zeroed = [
        op if i in fixed or i in moving else jnp.zeros_like(op) for i, op in enumerate(operands)
    ]

    def with_moving(base, values):
        args = list(base)
        for i, value in zip(moving, values, strict=True):
            args[i] = value
        return _bind(eqn, args)[0]

    return _linear_image(
        lambda *v: with_moving(operands, v),
        _columns(lambda *v: with_moving(zeroed, v), len(moving)),
        [signs[i] for i in moving],
        [operands[i] for i in moving],
        ball,
    )


def _bilinear(eqn, operands, ball) -> Enclosure:
    """op(u, K) for a constant K = K+ + K-: [op(L, K+) + op(U, K-), op(U, K+) + op(L, K-)].
    For div (u / K), the parts are u / K where K > 0 and u / K where K < 0."""
    name = eqn.primitive.name
    moving = [i for i, op in enumerate(operands) if isinstance(op, Enclosure)]
    if len(moving) != 1 or (name == "div" and moving != [0]):
        raise _refuse(name, " of two operands that depend on x" if name != "div" else " 1 / x")
    (m,) = moving
    const = operands[1 - m]
    if name == "div":
        parts = (jnp.where(const > 0, const, jnp.inf), jnp.where(const < 0, const, jnp.inf))
    else:
        parts = (jnp.maximum(const, 0), jnp.minimum(const, 0))

    def split(a, b):
        args_a, args_b = list(operands), list(operands)
        args_a[m], args_a[1 - m] = a, parts[0]
        args_b[m], args_b[1 - m] = b, parts[1]
        return _bind(eqn, args_a)[0] + _bind(eqn, args_b)[0]

    enc = operands[m]
    return _linear_image(split, _columns(split, 2), (1, -1), [enc, enc], ball)


def _product(u: Enclosure, v: Enclosure, ball) -> Enclosure:
    """u v of two enclosed values: the product rule on the Jacobians, interval products."""
    box = interval_product(u.box, v.box)
    first, second = scale_rows(u.box, v.jac), scale_rows(v.box, u.jac)
    jac = Interval(first.lower + second.lower, first.upper + second.upper)
    return Enclosure(box, jac, _constant_lines(box, ball))


def _elementwise(act: Activation, u: Enclosure, ball) -> Enclosure:
    """sigma(u): exact ranges of sigma and sigma' on u's box; for crown the CROWN
    relaxation of sigma composed with u's affine bounds (constant lines if sup|sigma'|
    is infinite)."""
    box = Interval(*value_bounds(act, *u.box))
    jac = scale_rows(Interval(*derivative_bounds(act, *u.box)), u.jac)
    if not ball.crown or not math.isfinite(act.lipschitz):
        return Enclosure(box, jac, _constant_lines(box, ball))
    shape = u.box.lower.shape  # linear_relaxation takes vectors
    rel = linear_relaxation(act, u.box.lower.ravel(), u.box.upper.ravel())
    rel = type(rel)(*(part.reshape(shape) for part in rel))
    (slope_lo, slope_hi), (off_lo, off_hi) = u.linear

    def line(slope, icpt, rising, falling):
        pos, neg = jnp.maximum(slope, 0), jnp.minimum(slope, 0)
        slopes = pos[..., None] * rising[0] + neg[..., None] * falling[0]
        return slopes, pos * rising[1] + neg * falling[1] + icpt

    low = line(rel.lower_slope, rel.lower_icpt, (slope_lo, off_lo), (slope_hi, off_hi))
    high = line(rel.upper_slope, rel.upper_icpt, (slope_hi, off_hi), (slope_lo, off_lo))
    linear = LinearBounds(Interval(low[0], high[0]), Interval(low[1], high[1]))
    return _tightened(Enclosure(box, jac, linear), ball)


def _shifted(enc: Enclosure, shift) -> Enclosure:
    """enc + shift for a constant shift (exact)."""
    box = Interval(enc.box.lower + shift, enc.box.upper + shift)
    linear = enc.linear
    if linear is not None:
        offsets = Interval(linear.offsets.lower + shift, linear.offsets.upper + shift)
        linear = linear._replace(offsets=offsets)
    return enc._replace(box=box, linear=linear)


def _negated(enc: Enclosure) -> Enclosure:
    def flip(iv):
        return Interval(-iv.upper, -iv.lower)

    linear = None if enc.linear is None else LinearBounds(*map(flip, enc.linear))
    return Enclosure(flip(enc.box), flip(enc.jac), linear)


def _max(eqn, operands, ball) -> Enclosure:
    """max(u, c) = c + relu(u - c); min(u, c) = -max(-u, -c), for a constant c."""
    moving = [i for i, op in enumerate(operands) if isinstance(op, Enclosure)]
    if len(moving) != 1:
        raise _refuse(eqn.primitive.name, " of two operands that depend on x")
    u, c = operands[moving[0]], operands[1 - moving[0]]
    if eqn.primitive.name == "min":
        return _negated(
            _shifted(_elementwise(ACTIVATIONS["relu"], _shifted(_negated(u), c), ball), -c)
        )
    return _shifted(_elementwise(ACTIVATIONS["relu"], _shifted(u, -c), ball), c)


@functools.cache
def _template(name: str, shape: tuple, dtype) -> Any:
    """The jaxpr of activation `name` on one array of `shape`, or None if it has consts."""
    closed = jax.make_jaxpr(ACTIVATIONS[name].fn)(jax.ShapeDtypeStruct(shape, dtype))
    return None if closed.consts else closed.jaxpr


def _same_param(a, b) -> bool:
    if isinstance(a, jcore.ClosedJaxpr) and isinstance(b, jcore.ClosedJaxpr):
        consts = len(a.consts) == len(b.consts) and all(
            np.array_equal(x, y) for x, y in zip(a.consts, b.consts, strict=True)
        )
        return consts and str(a.jaxpr) == str(b.jaxpr)
    if isinstance(a, jcore.Jaxpr) and isinstance(b, jcore.Jaxpr):
        return str(a) == str(b)
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 (incomparable parameters do not match)
        return False


class _ActivationMatcher:
    """Finds equations whose value is an activation of `ACTIVATIONS` of one atom: the
    equations that produce it have the primitives, parameters, literals and wiring of
    the jaxpr of the activation's `fn`."""

    def __init__(self, jaxpr):
        self.producers = {v: (eqn, k) for eqn in jaxpr.eqns for k, v in enumerate(eqn.outvars)}

    def match(self, eqn) -> tuple[Activation, Any] | None:
        if len(eqn.outvars) != 1 or not jnp.issubdtype(eqn.outvars[0].aval.dtype, jnp.inexact):
            return None
        aval = eqn.outvars[0].aval
        for name, act in ACTIVATIONS.items():
            template = _template(name, aval.shape, aval.dtype)
            if template is None or template.eqns[-1].primitive != eqn.primitive:
                continue
            producers = {v: (e, k) for e in template.eqns for k, v in enumerate(e.outvars)}
            binding = {template.invars[0]: None}
            if self._same(template.outvars[0], eqn.outvars[0], producers, binding):
                return act, binding[template.invars[0]]
        return None

    def _same(self, t_atom, p_atom, producers, binding) -> bool:
        if getattr(t_atom, "aval", None) != getattr(p_atom, "aval", None):
            return False
        if isinstance(t_atom, jcore.Literal):
            return isinstance(p_atom, jcore.Literal) and np.array_equal(t_atom.val, p_atom.val)
        if isinstance(p_atom, jcore.Literal):
            return False
        if binding.get(t_atom) is not None:
            return binding[t_atom] is p_atom
        if t_atom in binding:  # the template's input
            binding[t_atom] = p_atom
            return True
        t_eqn, t_index = producers[t_atom]
        if p_atom not in self.producers:
            return False
        p_eqn, p_index = self.producers[p_atom]
        same = (
            t_index == p_index
            and t_eqn.primitive == p_eqn.primitive
            and len(t_eqn.invars) == len(p_eqn.invars)
            and t_eqn.params.keys() == p_eqn.params.keys()
            and all(_same_param(t_eqn.params[k], p_eqn.params[k]) for k in t_eqn.params)
            and all(
                self._same(t, p, producers, binding)
                for t, p in zip(t_eqn.invars, p_eqn.invars, strict=True)
            )
        )
        if same:
            binding[t_atom] = p_atom
        return same


def _rule(eqn, operands, ball) -> list:
    """The enclosures of `eqn`'s outputs from those of its operands (some enclosed)."""
    name = eqn.primitive.name
    if name in _CALLS:
        inner = eqn.params[_CALLS[name]]
        if isinstance(inner, jcore.ClosedJaxpr):
            return _interpret(inner.jaxpr, inner.consts, operands, ball)
        return _interpret(inner, (), operands, ball)
    if any(not jnp.issubdtype(v.aval.dtype, jnp.inexact) for v in eqn.outvars):
        raise _refuse(name, " with a non-float value that depends on x")
    if name in _ELEMENTWISE or name == "integer_pow":
        act = _ELEMENTWISE.get(name) or _power_or_refuse(eqn.params["y"])
        return [_elementwise(act, operands[0], ball)]
    if name in ("max", "min"):
        return [_max(eqn, operands, ball)]
    if name == "mul" and all(isinstance(op, Enclosure) for op in operands):
        return [_product(*operands, ball)]
    if name in _BILINEAR:
        return [_bilinear(eqn, operands, ball)]
    if name in _LINEAR:
        return [_linear(eqn, operands, ball)]
    raise _refuse(name)


def _power_or_refuse(y: int) -> Activation:
    if y < 1:
        raise _refuse("integer_pow", f" with exponent {y}")
    return _power(y)


def _interpret(jaxpr, consts, args, ball) -> list:
    """The jaxpr's outputs: arrays where they do not depend on x, else `Enclosure`s."""
    env: dict = dict(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))

    def read(atom):
        return atom.val if isinstance(atom, jcore.Literal) else env[atom]

    activations = _ActivationMatcher(jaxpr)
    for eqn in jaxpr.eqns:
        operands = [read(atom) for atom in eqn.invars]
        if not any(isinstance(op, Enclosure) for op in operands):
            outs = _bind(eqn, operands)
        elif matched := activations.match(eqn):
            act, atom = matched
            outs = [_elementwise(act, read(atom), ball)]
        else:
            outs = _rule(eqn, operands, ball)
        env.update(zip(eqn.outvars, outs, strict=True))
    return [read(atom) for atom in jaxpr.outvars]


def jacobian_enclosure(f: Callable, x0: jax.Array, eps: Any, norm: str, crown: bool) -> Interval:
    """An interval matrix (m, n) holding the Jacobian of the flattened output of `f` at
    every x of the ball, by the rules of this module (`crown`: with affine bounds)."""
    ball = _Ball(x0, jnp.asarray(eps, x0.dtype), norm, crown)
    n = x0.size
    eye = jnp.eye(n, dtype=x0.dtype).reshape(*x0.shape, n)
    start = Enclosure(
        Interval(x0 - ball.eps, x0 + ball.eps),
        Interval(eye, eye),
        LinearBounds(Interval(eye, eye), Interval(x0, x0)),
    )
    closed = jax.make_jaxpr(f)(x0)
    outs = _interpret(closed.jaxpr, closed.consts, [start], ball)
    rows = []
    for out in outs:
        if isinstance(out, Enclosure):
            rows.append(Interval(*(part.reshape(-1, n) for part in out.jac)))
        else:
            zeros = jnp.zeros((jnp.size(out), n), x0.dtype)
            rows.append(Interval(zeros, zeros))
    return Interval(*(jnp.concatenate(parts) for parts in zip(*rows, strict=True)))


def jaxpr_lipschitz_upper(f: Callable, x0: jax.Array, eps: Any, norm: str, method: str):
    """The bound of `lipschitz_upper` for a function `f` (see the module docstring)."""
    bound = interval_norm(jacobian_enclosure(f, x0, eps, norm, method == "crown"), norm)
    if method == "crown" and norm == "2":
        bound = jnp.minimum(bound, interval_norm(jacobian_enclosure(f, x0, eps, norm, False), norm))
    return bound
