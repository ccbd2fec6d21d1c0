r"""Normalised Taylor series through a function: Taylor-mode automatic differentiation.

A curve x(t) = x_0 + c_1 t + c_2 t^2 + ... + c_K t^K through the input is carried
through f to the coefficients of f(x(t)) = y_0 + y_1 t + ... + y_K t^K (truncated at
order K). The coefficients are *normalised*: y_k = (d^k/dt^k f(x(t)) at 0) / k!, never
the factorial-scaled derivatives, so that order 8 of a tanh network stays of the size of
its derivatives divided by 8! = 40320 instead of overflowing float32 through the
scaling. Along a straight line x_0 + v t, y_k = D^k f(x_0)[v, ..., v] / k!.

The primitives' rules are those of `jax.experimental.jet` (`jet_rules`, which work on
normalised coefficients), driven by jacscope's own interpreter of f's jaxpr rather
than by `jet` itself, because `jet` stops on what ordinary networks contain:

- `scan`, `while` and `cond` (jet has no rule: a `KeyError` naming the primitive):
  here the loop or branch runs on the primal and the series together, its body
  interpreted again;
- `jit` around a `custom_jvp` function (`jax.nn.softplus`: jet raises
  `UnexpectedTracerError`): calls are inlined here; and jet differentiates a
  `custom_jvp` function through its primal code, which is wrong where that code has a
  kink the rule smooths (softplus at 0: jet's `max` and `abs` rules give a first
  derivative of 0 instead of 1/2). Here y(t) = g(u(t)) is integrated from its
  derivative, y'(t) = jvp(g)(u(t), u'(t)), whose series (one order lower) the custom
  JVP rule gives: y_k = [t^{k-1}] y'(t) / k. The result agrees with `jax.jvp` nested;
- `checkpoint` (`remat`), `custom_vjp` (differentiated through its primal code, as
  forward mode must: the backward rule is not used).

Any other primitive without a rule is refused by `UnsupportedPrimitive`, naming it;
a derivative is never silently dropped.

**Directions and collapsing.** The interpreter carries R curves at once, sharing the
primal: every coefficient array has a leading axis of R directions, and the primal is
computed once. When only a weighted sum sum_r w_r y_{K,r} of the top coefficients is
wanted (a Laplacian, any linear differential operator), the top coefficient is
*collapsed*: it enters each primitive's rule linearly, y_K = J(u_K) + N(u_1, ...,
u_{K-1}) with J the primitive's linearisation, so sum_r w_r y_{K,r} = J(sum_r w_r
u_{K,r}) + sum_r w_r N_r, and only one summed top coefficient is carried instead of R
(Dangel, Siebert, Zeinhofer & Walther 2025). For K = 2 along unit vectors that is the
forward Laplacian's (value, Jacobian, Laplacian) triple.

Products with a factor that carries no series (a weight matrix times the activations)
cost one product per coefficient, not the K^2 / 2 of the Cauchy product jet's rule
computes; a first-order coefficient that is the identity (the directions e_1, ...,
e_d) is kept implicit until an operation needs it, so that x @ W costs no product with
I: its coefficients are the rows of W.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import jet as _jet
from jax.extend import core

__all__ = ["UnsupportedPrimitive", "jet"]


class UnsupportedPrimitive(NotImplementedError):
    """f uses a primitive that Taylor mode has no rule for (the message names it)."""


class _Eye:
    """The first-order coefficients e_1, ..., e_d of the input, not yet materialised."""

    def __repr__(self):
        return "EYE"


EYE = _Eye()

# Linear in their floating-point operands (the others are indices or predicates, used as
# they are): each coefficient maps through the primitive itself.
_LINEAR = frozenset(
    {
        "neg", "add", "sub", "add_any", "convert_element_type", "broadcast_in_dim",
        "concatenate", "pad", "reshape", "squeeze", "rev", "transpose", "slice",
        "reduce_sum", "cumsum", "copy", "copy_p", "select_n", "dynamic_slice",
        "dynamic_update_slice", "gather", "scatter-add", "scatter", "real", "imag",
        "conj", "complex", "reduce_window_sum", "split", "device_put", "reshard",
        "sharding_constraint", "mesh_cast",
    }
)  # fmt: skip
# Linear in each operand when the other is held fixed.
_BILINEAR = frozenset({"mul", "dot_general", "conv_general_dilated"})
# Piecewise constant: every coefficient of the output is zero.
_ZERO = frozenset({"floor", "ceil", "round", "sign", "stop_gradient", "is_finite", "nextafter"})
_CALLS = frozenset({"pjit", "jit", "closed_call", "core_call", "remat2", "checkpoint"})


@dataclasses.dataclass
class Context:
    """How the series are carried through one interpretation.

    - `order`: K, the highest coefficient.
    - `num_directions`: R, the leading axis of every batched coefficient.
    - `weights`: `None` (every coefficient batched), or the `(R,)` weights w_r of the
      collapsed top coefficient (then the top coefficient is one array, sum_r w_r y_K).
    - `caller`: the public function, for messages.
    - `rules`: extra rules tried first, `name -> rule(eqn, primals, series, ctx)`
      returning `(primals_out, series_out)` or `None` to decline.
    - `after_eqn`: called after each equation of the outermost jaxpr with
      `(index, env, last_use, ctx, jaxpr)` (the forward Laplacian's compression).
    """

    order: int
    num_directions: int
    weights: Any = None
    caller: str = "jet"
    rules: dict = dataclasses.field(default_factory=dict)
    after_eqn: Callable | None = None

    @property
    def collapsed(self) -> bool:
        return self.weights is not None

    def batched(self, k: int) -> bool:
        """Whether coefficient index k (order k + 1) has the leading direction axis."""
        return not (self.collapsed and k == self.order - 1)

    def inner(self) -> Context:
        """The same carrying for a nested jaxpr (a loop body, a branch)."""
        return dataclasses.replace(self, after_eqn=None)


def _is_float(aval) -> bool:
    return jnp.issubdtype(aval.dtype, jnp.inexact)


def _zeros(primal, ctx: Context, k: int):
    shape = jnp.shape(primal)
    if ctx.batched(k):
        shape = (ctx.num_directions, *shape)
    return jnp.zeros(shape, jnp.result_type(primal))


def _eye(primal, ctx: Context):
    d = jnp.shape(primal)[0]
    return jnp.eye(d, dtype=jnp.result_type(primal))


def materialize(series, primal, ctx: Context):
    """`series` with the implicit identity replaced by the `(d, d)` matrix."""
    if series is None or series[0] is not EYE:
        return series
    return [_eye(primal, ctx), *series[1:]]


def instantiate(series, primal, ctx: Context):
    """Every coefficient an array (zeros where the series is known to vanish)."""
    series = materialize(series, primal, ctx)
    if series is None:
        series = [None] * ctx.order
    return [_zeros(primal, ctx, k) if c is None else c for k, c in enumerate(series)]


def _clean(series, aval):
    """`None` for a series that is absent, all zero, or on a non-float value."""
    if series is None or not _is_float(aval):
        return None
    if all(c is None for c in series):
        return None
    return list(series)


def refuse(eqn, ctx: Context):
    raise UnsupportedPrimitive(
        f"{ctx.caller}: Taylor mode has no rule for the primitive {eqn.primitive.name!r} "
        "that f uses; rewrite f without it, or use method='hvp' or 'hessian'"
    )


def bind(eqn, args):
    """The primitive of `eqn` applied to `args` (a list of its outputs)."""
    params = eqn.primitive.get_bind_params(eqn.params)
    with eqn.ctx.manager:
        out = eqn.primitive.bind(*args, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _map_directions(fn, args, batched_mask):
    """`fn(*args)` with the arguments marked batched mapped over their leading axis."""
    if not any(batched_mask):
        return fn(*args)
    return jax.vmap(fn, in_axes=[0 if b else None for b in batched_mask])(*args)


# ------------------------------------------------------------------ linear rules


def _linear(eqn, primals, series, ctx: Context, fixed: Sequence[int] = ()):
    """Each coefficient through the primitive, linear in its series-carrying operands;
    operands in `fixed` (and non-float ones) enter as their primal, other float
    operands without a series as zeros."""
    outs_p = bind(eqn, primals)
    n_out = len(eqn.outvars)
    out_series = [[None] * ctx.order for _ in range(n_out)]
    for k in range(ctx.order):
        if all(s is None or s[k] is None for s in series):
            continue
        args, mask = [], []
        for i, (p, s) in enumerate(zip(primals, series, strict=True)):
            is_float = jnp.issubdtype(jnp.result_type(p), jnp.inexact)
            if s is not None and s[k] is not None:
                args.append(s[k])
                mask.append(ctx.batched(k))
            elif i in fixed or not is_float:
                args.append(p)
                mask.append(False)
            else:
                args.append(jnp.zeros(jnp.shape(p), jnp.result_type(p)))
                mask.append(False)
        out = _map_directions(lambda *a: bind(eqn, a), args, mask)
        for j in range(n_out):
            out_series[j][k] = out[j]
    return outs_p, [_clean(s, v.aval) for s, v in zip(out_series, eqn.outvars, strict=True)]


# ------------------------------------------------------------------ general rules


def _rule_for(eqn, ctx: Context):
    rule = _EXTRA_RULES.get(eqn.primitive.name) or _jet.jet_rules.get(eqn.primitive)
    if rule is None:
        refuse(eqn, ctx)
    return rule


def _general(eqn, primals, series, ctx: Context):
    """A primitive's jet rule applied per direction (and the collapsed top summed)."""
    rule = _rule_for(eqn, ctx)
    params = dict(eqn.params)
    multiple = eqn.primitive.multiple_results
    K = ctx.order
    outs_p = bind(eqn, primals)

    def per_direction(*flat):
        it = iter(flat)
        ser = [[next(it) for _ in range(K)] for _ in primals]
        _, out = rule(primals, ser, **params)
        return out

    flat, mask = [], []
    for p, s in zip(primals, series, strict=True):
        for k in range(K):
            c = None if s is None else s[k]
            top_zeroed = ctx.collapsed and k == K - 1
            if c is None or top_zeroed:
                flat.append(jnp.zeros(jnp.shape(p), jnp.result_type(p)))
                mask.append(False)
            else:
                flat.append(c)
                mask.append(True)
    # Without per-direction coefficients (only a collapsed top), the nonlinear part,
    # a function of the lower coefficients, vanishes.
    out = None
    if any(mask):
        out = jax.vmap(per_direction, in_axes=[0 if b else None for b in mask])(*flat)
    out_lists = (list(out) if multiple else [out]) if out is not None else [None] * len(outs_p)
    result = []
    for j in range(len(eqn.outvars)):
        coeffs = out_lists[j]
        if coeffs is None or coeffs is _jet.zero_series:
            coeffs = [None] * K
        coeffs = list(coeffs)
        if ctx.collapsed and coeffs[K - 1] is not None:
            w = jnp.asarray(ctx.weights, jnp.result_type(coeffs[K - 1]))
            coeffs[K - 1] = jnp.tensordot(w, coeffs[K - 1], axes=1)
        result.append(coeffs)
    if ctx.collapsed:
        tops = [None if s is None else s[K - 1] for s in series]
        if any(t is not None for t in tops):
            ser1 = [
                [jnp.zeros(jnp.shape(p), jnp.result_type(p)) if t is None else t]
                for p, t in zip(primals, tops, strict=True)
            ]
            _, lin = rule(primals, ser1, **params)
            lin = list(lin) if multiple else [lin]
            for j in range(len(result)):
                if lin[j] is _jet.zero_series:
                    continue
                term = lin[j][0]
                top = result[j][K - 1]
                result[j][K - 1] = term if top is None else top + term
    return outs_p, [_clean(s, v.aval) for s, v in zip(result, eqn.outvars, strict=True)]


# -------------------------------------------------------- rules jet does not have


def _composite(fn):
    """A rule for an elementwise primitive from a composition of primitives jet knows."""

    def rule(primals, series, **_):
        (x,), (terms,) = primals, series
        return _jet.jet(fn, (x,), (tuple(terms),), factorial_scaled=False)

    return rule


_EXTRA_RULES: dict[str, Callable] = {
    "tan": _composite(lambda x: lax.sin(x) / lax.cos(x)),
    "atan": _composite(lambda x: lax.atan2(x, lax.full_like(x, 1))),
    "asin": _composite(lambda x: lax.atan2(x, lax.sqrt(1 - x * x))),
    "acos": _composite(lambda x: lax.atan2(lax.sqrt(1 - x * x), x)),
    "exp2": _composite(lambda x: lax.exp(x * math.log(2.0))),
}


# ------------------------------------------------------------ the implicit identity


def _keep_identity(eqn, primals, series, ctx: Context):
    """Rules that keep the input's first-order coefficients e_1, ..., e_d implicit:
    `x @ W` (and `W @ x`) has the rows of W as its coefficients, no product with I;
    `x + b`, `x - b` and copies keep the identity. `None` where they do not apply."""
    name = eqn.primitive.name
    carrying = [j for j, s in enumerate(series) if s is not None]
    if len(carrying) != 1 or not ctx.batched(0):
        return None
    i = carrying[0]
    if series[i][0] is not EYE or any(c is not None for c in series[i][1:]):
        return None
    x = primals[i]
    keeps_shape = tuple(eqn.outvars[0].aval.shape) == tuple(jnp.shape(x))
    if (
        name == "copy"
        or (name == "add" and keeps_shape)
        or (name == "sub" and i == 0 and keeps_shape)
    ):
        return bind(eqn, primals), [[EYE] + [None] * (ctx.order - 1)]
    if name != "dot_general":
        return None
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    if lb or rb or jnp.ndim(x) != 1:
        return None
    w = primals[1 - i]
    contract_w = (rc if i == 0 else lc)[0]
    out = bind(eqn, primals)
    # The output's axes are the free axes of W in order (x has none): row r is
    # W with its contracted axis fixed at r.
    rows = jnp.moveaxis(w, contract_w, 0).astype(eqn.outvars[0].aval.dtype)
    return out, [[rows] + [None] * (ctx.order - 1)]


# ------------------------------------------------------------ calls and control flow


def _custom_jvp(eqn, primals, series, ctx: Context):
    """y = g(u) through g's own JVP rule: y'(t) = jvp(g)(u(t), u'(t)) is carried one
    order lower (per direction, since u'(t) starts at u_1), and y_k = [t^{k-1}] y' / k."""
    K = ctx.order
    outs_p = bind(eqn, primals)
    diff = [i for i, s in enumerate(series) if s is not None]
    float_out = [_is_float(v.aval) for v in eqn.outvars]

    def tangent_map(*args):
        """(all inputs, tangents of the inputs in `diff`) -> tangents of float outputs."""
        full, tangents = list(args[: len(primals)]), list(args[len(primals) :])

        def g(*diff_args):
            call = list(full)
            for i, a in zip(diff, diff_args, strict=True):
                call[i] = a
            return [o for o, fl in zip(bind(eqn, call), float_out, strict=True) if fl]

        return jax.jvp(g, [full[i] for i in diff], tangents)[1]

    avals = [jax.ShapeDtypeStruct(jnp.shape(p), jnp.result_type(p)) for p in primals]
    closed = jax.make_jaxpr(tangent_map)(*avals, *[avals[i] for i in diff])
    tangent_fn = core.jaxpr_as_fun(closed)
    inner = dataclasses.replace(ctx.inner(), order=K - 1, num_directions=1, weights=None)
    per_dir = K - 1 if ctx.collapsed else K  # u_1 .. u_{per_dir} vary per direction
    full = {i: instantiate(series[i], primals[i], ctx) for i in diff}

    def one_direction(*flat):
        u = {i: list(flat[j * per_dir : (j + 1) * per_dir]) for j, i in enumerate(diff)}
        u = {i: c + [jnp.zeros_like(c[0])] * (K - per_dir) for i, c in u.items()}  # u_1..u_K
        in_p = list(primals) + [u[i][0] for i in diff]  # v_0 = u_1
        if K == 1:
            return list(tangent_fn(*in_p)), None
        in_s = [None] * len(primals)
        for i in diff:
            in_s[i] = [c[None] for c in u[i][: K - 1]]
        in_s += [[((j + 1) * u[i][j])[None] for j in range(1, K)] for i in diff]
        out_p, out_s = eval_jaxpr(closed.jaxpr, closed.consts, in_p, in_s, inner)
        out_s = [
            [c[0] for c in instantiate(s, p, inner)] for s, p in zip(out_s, out_p, strict=True)
        ]
        return out_p, out_s

    n_float = sum(float_out)
    if per_dir > 0:
        flat = [c for i in diff for c in full[i][:per_dir]]
        d_p, d_s = jax.vmap(one_direction)(*flat)  # y'_0 and y'_1 .. y'_{K-1}
        coeffs = [[d_p[j]] + ([] if d_s is None else d_s[j]) for j in range(n_float)]
        coeffs = [[c if k == 0 else c / (k + 1) for k, c in enumerate(cs)] for cs in coeffs]
    else:
        coeffs = [[None] for _ in range(n_float)]
    if ctx.collapsed:
        for cs in coeffs:
            top = cs[K - 1]
            if top is not None:
                cs[K - 1] = jnp.tensordot(jnp.asarray(ctx.weights, top.dtype), top, axes=1)
        tops = [series[i][K - 1] for i in diff]
        if any(t is not None for t in tops):
            tops = [
                jnp.zeros_like(primals[i]) if t is None else t
                for i, t in zip(diff, tops, strict=True)
            ]
            for cs, term in zip(coeffs, tangent_fn(*primals, *tops), strict=True):
                cs[K - 1] = term if cs[K - 1] is None else cs[K - 1] + term
    it = iter(coeffs)
    out_s = [next(it) if fl else None for fl in float_out]
    return outs_p, [_clean(s, v.aval) for s, v in zip(out_s, eqn.outvars, strict=True)]


def _split(seq, sizes):
    out, start = [], 0
    for n in sizes:
        out.append(list(seq[start : start + n]))
        start += n
    out.append(list(seq[start:]))
    return out


def _scan(eqn, primals, series, ctx: Context):
    p = eqn.params
    body = p["jaxpr"]
    nc, ncar = p["num_consts"], p["num_carry"]
    inner = ctx.inner()
    series = [materialize(s, x, ctx) for s, x in zip(series, primals, strict=True)]
    c_p, init_p, xs_p = _split(primals, [nc, ncar])
    c_s, init_s, xs_s = _split(series, [nc, ncar])
    carry_float = [_is_float(v.aval) for v in body.jaxpr.invars[nc : nc + ncar]]
    init_s = [
        instantiate(s, x, ctx) if fl else None
        for s, x, fl in zip(init_s, init_p, carry_float, strict=True)
    ]

    def to_scan_axis(s, k):
        return s if s is None or not ctx.batched(k) else jnp.moveaxis(s, 0, 1)

    xs_s = [None if s is None else [to_scan_axis(c, k) for k, c in enumerate(s)] for s in xs_s]

    def step(carry, xs):
        cp, cs = carry
        xp, xsr = xs
        outs_p, outs_s = eval_jaxpr(body.jaxpr, body.consts, c_p + cp + xp, c_s + cs + xsr, inner)
        new_s = [
            instantiate(s, x, inner) if fl else None
            for s, x, fl in zip(outs_s[:ncar], outs_p[:ncar], carry_float, strict=True)
        ]
        return (outs_p[:ncar], new_s), (outs_p[ncar:], outs_s[ncar:])

    (fp, fs), (yp, ys) = lax.scan(
        step, (init_p, init_s), (xs_p, xs_s), length=p["length"], reverse=p["reverse"],
        unroll=p["unroll"],
    )  # fmt: skip
    ys = [None if s is None else [to_scan_axis(c, k) for k, c in enumerate(s)] for s in ys]
    outs = list(fp) + list(yp)
    out_s = list(fs) + list(ys)
    return outs, [_clean(s, v.aval) for s, v in zip(out_s, eqn.outvars, strict=True)]


def _while(eqn, primals, series, ctx: Context):
    p = eqn.params
    cond, body = p["cond_jaxpr"], p["body_jaxpr"]
    cn, bn = p["cond_nconsts"], p["body_nconsts"]
    inner = ctx.inner()
    series = [materialize(s, x, ctx) for s, x in zip(series, primals, strict=True)]
    cc_p, bc_p, init_p = _split(primals, [cn, bn])
    _, bc_s, init_s = _split(series, [cn, bn])
    carry_float = [_is_float(v.aval) for v in body.jaxpr.invars[bn:]]
    init_s = [
        instantiate(s, x, ctx) if fl else None
        for s, x, fl in zip(init_s, init_p, carry_float, strict=True)
    ]

    def cond_fun(carry):
        return core.jaxpr_as_fun(cond)(*cc_p, *carry[0])[0]

    def body_fun(carry):
        cp, cs = carry
        outs_p, outs_s = eval_jaxpr(
            body.jaxpr, body.consts, bc_p + list(cp), bc_s + list(cs), inner
        )
        new_s = [
            instantiate(s, x, inner) if fl else None
            for s, x, fl in zip(outs_s, outs_p, carry_float, strict=True)
        ]
        return outs_p, new_s

    fp, fs = lax.while_loop(cond_fun, body_fun, (init_p, init_s))
    return list(fp), [_clean(s, v.aval) for s, v in zip(fs, eqn.outvars, strict=True)]


def _cond(eqn, primals, series, ctx: Context):
    branches = eqn.params["branches"]
    inner = ctx.inner()
    index, ops_p = primals[0], primals[1:]
    ops_s = [materialize(s, x, ctx) for s, x in zip(series[1:], ops_p, strict=True)]
    float_out = [_is_float(v.aval) for v in eqn.outvars]

    def branch(closed):
        def run(ops_p, ops_s):
            outs_p, outs_s = eval_jaxpr(
                closed.jaxpr, closed.consts, list(ops_p), list(ops_s), inner
            )
            return outs_p, [
                instantiate(s, x, inner) if fl else None
                for s, x, fl in zip(outs_s, outs_p, float_out, strict=True)
            ]

        return run

    outs_p, outs_s = lax.switch(index, [branch(b) for b in branches], ops_p, ops_s)
    return list(outs_p), [_clean(s, v.aval) for s, v in zip(outs_s, eqn.outvars, strict=True)]


def _call(eqn, primals, series, ctx: Context):
    params = eqn.params
    if "call_jaxpr" in params:
        closed = params["call_jaxpr"]
    else:
        closed = params["jaxpr"]
    if isinstance(closed, core.ClosedJaxpr):
        jaxpr, consts = closed.jaxpr, closed.consts
    else:
        jaxpr, consts = closed, ()
    return eval_jaxpr(jaxpr, consts, primals, series, ctx.inner())


# ------------------------------------------------------------------ interpreter


def _equation(eqn, primals, series, ctx: Context):
    name = eqn.primitive.name
    if all(s is None for s in series) or not any(_is_float(v.aval) for v in eqn.outvars):
        return bind(eqn, primals), [None] * len(eqn.outvars)
    special = ctx.rules.get(name)
    if special is not None:
        out = special(eqn, primals, series, ctx)
        if out is not None:
            return out
    if any(s is not None and s[0] is EYE for s in series):
        out = _keep_identity(eqn, primals, series, ctx)
        if out is not None:
            return out
    if name in _CALLS or name == "custom_vjp_call":
        return _call(eqn, primals, series, ctx)
    if name == "custom_jvp_call":
        series = [materialize(s, x, ctx) for s, x in zip(series, primals, strict=True)]
        return _custom_jvp(eqn, primals, series, ctx)
    if name == "scan":
        return _scan(eqn, primals, series, ctx)
    if name == "while":
        return _while(eqn, primals, series, ctx)
    if name == "cond":
        return _cond(eqn, primals, series, ctx)
    if name in _ZERO:
        return bind(eqn, primals), [None] * len(eqn.outvars)
    series = [materialize(s, x, ctx) for s, x in zip(series, primals, strict=True)]
    if name in _LINEAR:
        return _linear(eqn, primals, series, ctx)
    carrying = [i for i, s in enumerate(series) if s is not None]
    if name in _BILINEAR and len(carrying) == 1:
        return _linear(eqn, primals, series, ctx, fixed=[1 - carrying[0]])
    if name == "div" and carrying == [0]:
        return _linear(eqn, primals, series, ctx, fixed=[1])
    return _general(eqn, primals, series, ctx)


def last_uses(jaxpr) -> dict:
    """The index of the last equation reading each variable (outputs: past the end)."""
    last = {}
    for i, eqn in enumerate(jaxpr.eqns):
        for v in eqn.invars:
            if not isinstance(v, core.Literal):
                last[v] = i
    for v in jaxpr.outvars:
        if not isinstance(v, core.Literal):
            last[v] = len(jaxpr.eqns)
    return last


def eval_jaxpr(jaxpr, consts, primals, series, ctx: Context):
    """Interpret `jaxpr` on primal inputs with their series (`None`: no series)."""
    env: dict = {}

    def read(v):
        if isinstance(v, core.Literal):
            return jnp.asarray(v.val, v.aval.dtype), None
        return env[v]

    for v, c in zip(jaxpr.constvars, consts, strict=True):
        env[v] = (c, None)
    for v, p, s in zip(jaxpr.invars, primals, series, strict=True):
        env[v] = (p, s)
    last = last_uses(jaxpr) if ctx.after_eqn is not None else None
    for i, eqn in enumerate(jaxpr.eqns):
        ins = [read(v) for v in eqn.invars]
        outs_p, outs_s = _equation(eqn, [p for p, _ in ins], [s for _, s in ins], ctx)
        for v, p, s in zip(eqn.outvars, outs_p, outs_s, strict=True):
            if not isinstance(v, core.DropVar):
                env[v] = (p, s)
        if ctx.after_eqn is not None:
            ctx.after_eqn(i, env, last, ctx, jaxpr)
    outs = [read(v) for v in jaxpr.outvars]
    return [p for p, _ in outs], [s for _, s in outs]


def _inline(closed):
    """`closed` re-traced with every `jit`, `closed_call` and `checkpoint` inlined, so
    that the outermost jaxpr shows the whole computation (for liveness)."""

    def run(jaxpr, consts, args):
        env = {}

        def read(v):
            return v.val if isinstance(v, core.Literal) else env[v]

        for v, c in zip(jaxpr.constvars, consts, strict=True):
            env[v] = c
        for v, a in zip(jaxpr.invars, args, strict=True):
            env[v] = a
        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            if eqn.primitive.name in _CALLS:
                inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
                if isinstance(inner, core.ClosedJaxpr):
                    outs = run(inner.jaxpr, inner.consts, ins)
                else:
                    outs = run(inner, (), ins)
            else:
                outs = bind(eqn, ins)
            for v, o in zip(eqn.outvars, outs, strict=True):
                if not isinstance(v, core.DropVar):
                    env[v] = o
        return [read(v) for v in jaxpr.outvars]

    avals = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in closed.jaxpr.invars]
    return jax.make_jaxpr(lambda *a: run(closed.jaxpr, closed.consts, a))(*avals)


def trace(f, x):
    """The jaxpr of f at x's shape, calls inlined; f's output shape."""
    spec = jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))
    closed, out_shape = jax.make_jaxpr(f, return_shape=True)(spec)
    return _inline(closed), out_shape


def propagate(f, x, first, ctx: Context, closed=None):
    """f(x) and the coefficients of f(x + t v_r) for the R directions whose first-order
    coefficients are `first` (`(R, d)` or `EYE`); higher input coefficients are zero.
    Returns `(primal, series)` with `series` a list of K arrays (zeros where they
    vanish), each `(R, *out)`, or `(*out)` for the collapsed top."""
    if closed is None:
        closed, _ = trace(f, x)
    (out_var,) = closed.jaxpr.outvars
    series = [first] + [None] * (ctx.order - 1)
    if ctx.collapsed and ctx.order == 1:  # the top is the first coefficient itself
        rows = jnp.eye(x.shape[0], dtype=x.dtype) if first is EYE else first
        series = [jnp.tensordot(jnp.asarray(ctx.weights, x.dtype), rows, axes=1)]
    (primal,), (out,) = eval_jaxpr(closed.jaxpr, closed.consts, [x], [series], ctx)
    return primal, instantiate(out, primal, ctx)


def jet(
    f: Callable[[jax.Array], jax.Array], x: jax.Array, series: Sequence[jax.Array]
) -> tuple[jax.Array, list[jax.Array]]:
    r"""Taylor coefficients of f along a curve, normalised (no factorials).

    For x(t) = x + c_1 t + ... + c_K t^K, returns y_0 = f(x) and y_1, ..., y_K with
    f(x(t)) = y_0 + y_1 t + ... + y_K t^K + O(t^{K+1}). Along a line (`series = [v]`
    followed by zeros), y_k = D^k f(x)[v, ..., v] / k!. The same as
    `jax.experimental.jet.jet(f, (x,), (series,), factorial_scaled=False)` where that
    works, and also through `scan`, `while`, `cond`, `checkpoint` and `custom_jvp`
    functions (whose JVP rule is used, as `jax.jvp` does).

    **Arguments:**

    - `f`: a function of one flat array, returning one array (any shape).
    - `x`: the point, `(d,)`.
    - `series`: the input coefficients c_1, ..., c_K, each `(d,)`.

    **Returns:** `(f(x), [y_1, ..., y_K])`, each of f's output shape.

    **Raises:** `ValueError` for coefficients of the wrong shape; `UnsupportedPrimitive`
    naming a primitive of f without a Taylor rule.

    Citation: Griewank, Utke & Walther, "Evaluating higher derivative tensors by forward propagation of univariate Taylor series", Mathematics of Computation 2000.
    """  # noqa: E501
    x = jnp.asarray(x)
    series = [jnp.asarray(c, x.dtype) for c in series]
    if not series:
        raise ValueError("jet: series must hold at least one coefficient")
    for k, c in enumerate(series):
        if c.shape != x.shape:
            raise ValueError(f"jet: series[{k}] must have x's shape {x.shape}, got shape {c.shape}")
    ctx = Context(order=len(series), num_directions=1, caller="jet")
    closed, _ = trace(f, x)
    (primal,), (out,) = eval_jaxpr(
        closed.jaxpr, closed.consts, [x], [[c[None] for c in series]], ctx
    )
    out = instantiate(out, primal, ctx)
    return primal, [c[0] for c in out]


def validate_point(x, caller: str) -> jax.Array:
    """`x` as a flat floating-point array, or a `ValueError` naming its shape or dtype."""
    x = jnp.asarray(x)
    if x.ndim != 1:
        raise ValueError(
            f"{caller}: x must be one flat point (d,), got shape {x.shape}; jax.vmap over a batch"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{caller}: x must be floating point, got dtype {x.dtype}")
    return x


def validate_output(f, x, caller: str):
    """f's output shape at x: a scalar or a vector, else a `ValueError`."""
    out = jax.eval_shape(f, jax.ShapeDtypeStruct(x.shape, x.dtype))
    if not isinstance(out, jax.ShapeDtypeStruct) or len(out.shape) > 1:
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"{caller}: f must return a scalar or a vector (m,), got {shape}; "
            "flatten a structured output first"
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(f"{caller}: f must return floating point, got dtype {out.dtype}")
    return out
