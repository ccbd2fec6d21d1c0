"""One training step's Jacobian, compiled to act on blocks of tangents at once.

`jax.linearize` of a step gives a jaxpr that is linear in the tangents and reads
residuals of the primal computation. Running that jaxpr under `jax.vmap` for K
tangents is exact but wastes most of a CPU's time: XLA re-derives residual
expressions inside every K-wide loop, each link of an elementwise chain (the
derivative of GELU, of a softmax, of Adam's normalisation) becomes its own pass over
a K-wide array, and `vmap` puts the tangent axis in front of every array, which
costs large transposes around each matrix product.

`TangentProgram` rewrites the linear jaxpr once, at trace time:

1. **Known work is hoisted.** Every operation that reads residuals only runs in
   `prepare`, once per step and not once per tangent (in the training Jacobian it
   runs in a separate pass over the run, so XLA cannot fuse it into the K-wide loops).
2. **Elementwise chains are collapsed.** A tangent value built by elementwise linear
   operations is kept as a sum `sum_i c_i * x_i + c_0` of materialised tangent
   buffers `x_i` (possibly broadcast) with known coefficients `c_i`; the products of
   coefficients are formed in `prepare`. A chain of twenty multiplications and sums
   costs one fused pass.
3. **The tangent axis is placed, not pushed to the front.** Each buffer carries the
   position of its tangent axis. Around a `dot_general` the axis is put among the
   free dimensions of the tangent operand, where the product is one wide GEMM with the
   K tangents folded into a matrix dimension; elsewhere it stays where it is.

Anything else (convolutions, gathers, loops, ...) runs under `jax.vmap` of that one
equation, so every linear jaxpr is supported and the result is the same linear map up
to floating-point reassociation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore
from jax.extend.core import primitives as prims


def canonical_axis(ndim: int) -> int:
    """Where the tangent axis sits in a buffer with `ndim` dimensions of its own:
    after the first dimension (rows of a matrix, examples of a batch), or in front of
    a vector or scalar. This puts K inside the wide side of most products."""
    return 1 if ndim >= 2 else 0


class _Slot:
    """A known (tangent-independent) array, computed in `prepare`."""

    __slots__ = ("index", "shape")

    def __init__(self, index: int, shape: tuple[int, ...]):
        self.index = index
        self.shape = shape

    def __repr__(self) -> str:
        return f"_Slot({self.index})"


class _Buf:
    """A materialised tangent buffer: logical `shape` plus a K axis at `axis`."""

    __slots__ = ("index", "shape", "dtype", "axis")

    def __init__(self, index: int, shape: tuple[int, ...], dtype: Any, axis: int):
        self.index = index
        self.shape = shape
        self.dtype = dtype
        self.axis = axis

    @property
    def size(self) -> int:
        return math.prod(self.shape)


# A coefficient is a Python/numpy scalar or a _Slot; a term key is (buffer index, spec)
# where spec maps the buffer's logical dimensions to the value's dimensions.
Coef = Any


class _Lazy:
    """A tangent value `sum_terms coef * broadcast(buf, spec) + const` (const known)."""

    __slots__ = ("shape", "dtype", "terms", "const")

    def __init__(self, shape, dtype, terms: dict, const: Coef | None):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.terms = terms
        self.const = const


def _is_scalar(c: Coef) -> bool:
    return not isinstance(c, _Slot)


def _coef_shape(c: Coef) -> tuple[int, ...]:
    return c.shape if isinstance(c, _Slot) else ()


def _bind(primitive, params, args):
    out = primitive.bind(*args, **primitive.get_bind_params(params))
    return list(out) if primitive.multiple_results else [out]


_INLINE = {prims.jit_p, prims.closed_call_p, prims.custom_jvp_call_p}
_IDENTITY = {prims.copy_p}


class TangentProgram:
    """The linear map of a jaxpr, compiled for batches of tangents (see module doc).

    **Arguments:**

    - `jaxpr`: a `jax.extend.core.Jaxpr` whose `constvars` are the residuals and whose
      `invars` are the tangents; linear in the tangents.
    - `in_axes`: for each tangent input, where its K axis sits.
    - `out_axes`: for each output, where its K axis must sit.

    `prepare(residuals)` returns the known arrays the program reads (a list);
    `apply(tangents, prepared)` maps tangent buffers (input i with its K axis at
    `in_axes[i]`) to the output buffers (output j with its K axis at `out_axes[j]`).
    A buffer is the logical array with the K tangents stacked along that axis.
    """

    def __init__(self, jaxpr: Any, in_axes: Sequence[int], out_axes: Sequence[int]):
        self._known_ops: list[tuple[Callable, list, list[int]]] = []
        self._num_slots = 0
        self._instructions: list[tuple[list[int], Callable, list[int], list[int]]] = []
        self._fetch: list[int] = []
        self._fetch_pos: dict[int, int] = {}
        self._bufs: list[_Buf] = []
        self._materialized: dict[tuple[int, int | None], _Buf] = {}
        self._keepalive: list[Any] = []
        self._dots: dict[int, tuple] = {}
        self._coef_cache: dict[tuple, _Slot] = {}

        self.num_consts = len(jaxpr.constvars)
        consts = [self._new_slot(tuple(v.aval.shape)) for v in jaxpr.constvars]
        self._in_bufs = []
        inputs = []
        for var, axis in zip(jaxpr.invars, in_axes, strict=True):
            buf = self._new_buf(tuple(var.aval.shape), var.aval.dtype, axis)
            self._in_bufs.append(buf.index)
            inputs.append(self._lazy_of(buf))
        outs = self._walk(jaxpr, consts, inputs)
        self._out_bufs = []
        for var, value, axis in zip(jaxpr.outvars, outs, out_axes, strict=True):
            lazy = self._as_lazy(value, tuple(var.aval.shape), var.aval.dtype)
            self._out_bufs.append(self._materialize(lazy, axis).index)
        self._prune()

    def _prune(self) -> None:
        """Drop instructions whose outputs nothing reads, and the known arrays only they
        read (the layout rules may replace an instruction after emitting it)."""
        live = set(self._out_bufs)
        kept = []
        for instruction in reversed(self._instructions):
            outs, _, buf_args, _ = instruction
            if live.intersection(outs):
                live.update(buf_args)
                kept.append(instruction)
        self._instructions = kept[::-1]
        used = {s for _, _, _, slots in self._instructions for s in slots}
        self._fetch = [s for s in self._fetch if s in used]
        self._bufs_live = live

    # ------------------------------------------------------------------ runtime

    def prepare(self, residuals: Sequence[Any]) -> list[jax.Array]:
        """The known arrays `apply` reads, from the jaxpr's residuals (constvars)."""
        env: list[Any] = [None] * self._num_slots
        env[: self.num_consts] = list(residuals)
        for fn, args, outs in self._known_ops:
            values = fn(*[env[a.index] if isinstance(a, _Slot) else a for a in args])
            for index, value in zip(outs, values, strict=True):
                env[index] = value
        return [jnp.asarray(env[index]) for index in self._fetch]

    def apply(self, tangents: Sequence[jax.Array], prepared: Sequence[jax.Array]) -> list:
        """Apply the linear map to tangent buffers (K columns each); see the class doc."""
        width = {
            int(jnp.shape(t)[self._bufs[i].axis])
            for t, i in zip(tangents, self._in_bufs, strict=True)
        }
        if len(width) != 1:
            raise ValueError(f"tangent buffers disagree on the number of columns: {width}")
        (k,) = width
        env: dict[int, Any] = dict(zip(self._in_bufs, tangents, strict=True))
        fetched = dict(zip(self._fetch, prepared, strict=True))
        for outs, fn, buf_args, slot_args in self._instructions:
            values = fn(k, [env[i] for i in buf_args], [fetched[s] for s in slot_args])
            env.update(zip(outs, values, strict=True))
        return [env[i] for i in self._out_bufs]

    @property
    def num_instructions(self) -> int:
        return len(self._instructions)

    def largest_buffer_elements(self) -> int:
        """Elements per tangent column of the largest buffer the program writes."""
        return max((self._bufs[i].size for i in self._bufs_live), default=1)

    def buffer_elements(self) -> int:
        """Elements per tangent column over every buffer the program writes: an upper
        bound on its working memory per column."""
        return sum(self._bufs[i].size for i in self._bufs_live)

    # ------------------------------------------------------------- bookkeeping

    def _new_slot(self, shape) -> _Slot:
        slot = _Slot(self._num_slots, tuple(shape))
        self._num_slots += 1
        return slot

    def _new_buf(self, shape, dtype, axis) -> _Buf:
        buf = _Buf(len(self._bufs), tuple(shape), dtype, axis)
        self._bufs.append(buf)
        return buf

    def _known(self, fn: Callable, args: list, out_shapes: list) -> list[_Slot]:
        slots = [self._new_slot(s) for s in out_shapes]
        self._known_ops.append((fn, args, [s.index for s in slots]))
        return slots

    def _fetch_slot(self, slot: _Slot) -> int:
        if slot.index not in self._fetch_pos:
            self._fetch_pos[slot.index] = len(self._fetch)
            self._fetch.append(slot.index)
        return slot.index

    def _emit(self, shape, dtype, axis, fn, bufs: list[_Buf], slots: list[_Slot]) -> _Buf:
        """One instruction with one output: `fn(k, buffers, known) -> array`."""
        return self._emit_many([(shape, dtype, axis)], lambda *a: [fn(*a)], bufs, slots)[0]

    def _emit_many(self, outs, fn, bufs: list[_Buf], slots: list[_Slot]) -> list[_Buf]:
        """One instruction: `fn(k, buffers, known) -> list of arrays` laid out as `outs`."""
        out_bufs = [self._new_buf(*o) for o in outs]
        self._instructions.append(
            (
                [b.index for b in out_bufs],
                fn,
                [b.index for b in bufs],
                [self._fetch_slot(s) for s in slots],
            )
        )
        return out_bufs

    def _lazy_of(self, buf: _Buf) -> _Lazy:
        spec = tuple(range(len(buf.shape)))
        return _Lazy(buf.shape, buf.dtype, {(buf.index, spec): 1.0}, None)

    def _as_lazy(self, value, shape, dtype) -> _Lazy:
        if isinstance(value, _Lazy):
            return value
        return _Lazy(shape, dtype, {}, value)

    # ---------------------------------------------------------- coefficients

    def _coef_op(self, key: tuple, fn: Callable, args: list, shape) -> _Slot:
        """A known operation on coefficients, computed once per distinct `key` (the
        same product often arises for several terms of a chain)."""
        key = (
            key,
            *[("slot", a.index) if isinstance(a, _Slot) else ("value", repr(a)) for a in args],
        )
        if key not in self._coef_cache:
            self._coef_cache[key] = self._known(fn, args, [shape])[0]
        return self._coef_cache[key]

    def _mul(self, a: Coef, b: Coef) -> Coef:
        if _is_scalar(a) and _is_scalar(b):
            return a * b
        if _is_scalar(a) and a == 1:
            return b
        if _is_scalar(b) and b == 1:
            return a
        if repr(a) > repr(b):  # one order for the commutative product
            a, b = b, a
        shape = np.broadcast_shapes(_coef_shape(a), _coef_shape(b))
        return self._coef_op(("mul",), lambda x, y: [jnp.multiply(x, y)], [a, b], shape)

    def _add(self, a: Coef | None, b: Coef | None) -> Coef | None:
        if a is None:
            return b
        if b is None:
            return a
        if _is_scalar(a) and _is_scalar(b):
            return a + b
        if repr(a) > repr(b):
            a, b = b, a
        shape = np.broadcast_shapes(_coef_shape(a), _coef_shape(b))
        return self._coef_op(("add",), lambda x, y: [jnp.add(x, y)], [a, b], shape)

    def _scale(self, lazy: _Lazy, c: Coef, shape) -> _Lazy:
        terms = {key: self._mul(coef, c) for key, coef in lazy.terms.items()}
        const = None if lazy.const is None else self._mul(lazy.const, c)
        return _Lazy(shape, lazy.dtype, terms, const)

    def _sum(self, parts: list[tuple[_Lazy | Coef, float]], shape, dtype) -> _Lazy:
        terms: dict = {}
        const = None
        for part, sign in parts:
            if isinstance(part, _Lazy):
                for key, coef in part.terms.items():
                    terms[key] = self._add(terms.get(key), self._mul(coef, sign))
                if part.const is not None:
                    const = self._add(const, self._mul(part.const, sign))
            else:
                const = self._add(const, self._mul(part, sign))
        return _Lazy(shape, dtype, terms, const)

    # ------------------------------------------------------------ the walk

    def _read(self, env, atom):
        if isinstance(atom, jcore.Literal):
            value = atom.val
            if np.ndim(value) == 0:
                return value
            return self._known(lambda: [jnp.asarray(value)], [], [np.shape(value)])[0]
        return env[atom]

    def _walk(self, jaxpr, consts: list, inputs: list) -> list:
        env: dict = {}
        env.update(zip(jaxpr.constvars, consts, strict=True))
        env.update(zip(jaxpr.invars, inputs, strict=True))
        for eqn in jaxpr.eqns:
            args = [self._read(env, a) for a in eqn.invars]
            if not any(isinstance(a, _Lazy) for a in args):
                outs = self._known(
                    lambda *xs, _e=eqn: _bind(_e.primitive, _e.params, xs),
                    args,
                    [tuple(v.aval.shape) for v in eqn.outvars],
                )
            else:
                outs = self._tangent_eqn(eqn, args)
            for var, value in zip(eqn.outvars, outs, strict=True):
                if not isinstance(var, jcore.DropVar):
                    env[var] = value
        return [self._read(env, a) for a in jaxpr.outvars]

    def _tangent_eqn(self, eqn, args) -> list:
        prim = eqn.primitive
        out_aval = eqn.outvars[0].aval
        shape, dtype = tuple(out_aval.shape), out_aval.dtype
        lazy = [isinstance(a, _Lazy) for a in args]
        if prim in _INLINE:
            closed = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
            consts = [
                self._known(lambda _c=c: [jnp.asarray(_c)], [], [np.shape(c)])[0]
                for c in closed.consts
            ]
            return self._walk(closed.jaxpr, consts, args)
        if prim in _IDENTITY or (prim is prims.convert_element_type_p and args[0].dtype == dtype):
            return [args[0]]
        if prim is prims.neg_p:
            return [self._scale(args[0], -1.0, shape)]
        if prim is prims.mul_p and lazy.count(True) == 1:
            t, c = (args[0], args[1]) if lazy[0] else (args[1], args[0])
            return [self._scale(t, c, shape)]
        if prim is prims.div_p and lazy == [True, False]:
            c = args[1]
            inv = (
                1.0 / c
                if _is_scalar(c)
                else self._coef_op(("reciprocal",), lambda x: [1.0 / x], [c], c.shape)
            )
            return [self._scale(args[0], inv, shape)]
        if prim in (prims.add_p, prims.add_jaxvals_p):
            return [self._sum([(args[0], 1.0), (args[1], 1.0)], shape, dtype)]
        if prim is prims.sub_p:
            return [self._sum([(args[0], 1.0), (args[1], -1.0)], shape, dtype)]
        if prim is prims.select_n_p and not lazy[0]:
            return [self._select(args[0], args[1:], shape, dtype)]
        if prim is prims.broadcast_in_dim_p and lazy[0] and len(args) == 1:
            return [self._broadcast(args[0], shape, eqn.params["broadcast_dimensions"])]
        if prim is prims.dot_general_p and lazy.count(True) == 1:
            return [self._dot(eqn, args, lazy[0])]
        if prim is prims.reduce_sum_p:
            return [self._reduce_sum(args[0], eqn.params["axes"], shape, dtype)]
        if prim is prims.reshape_p and eqn.params.get("dimensions") is None:
            return [self._reshape(args[0], shape, dtype)]
        if prim is prims.squeeze_p:
            return [self._reshape(args[0], shape, dtype)]
        if prim is prims.transpose_p:
            return [self._transpose(args[0], eqn.params["permutation"], shape, dtype)]
        return self._fallback(eqn, args)

    # ------------------------------------------------------------ lazy rules

    def _select(self, pred: Coef, cases: list, shape, dtype) -> _Lazy:
        keys = list(dict.fromkeys(k for c in cases if isinstance(c, _Lazy) for k in c.terms))

        def pick(parts):
            if all(p is None for p in parts):
                return None
            args = [pred] + [0.0 if p is None else p for p in parts]

            def fn(p, *cs):
                cs = [jnp.broadcast_to(jnp.asarray(c, dtype), shape) for c in cs]
                return [lax.select_n(p, *cs)]

            return self._coef_op(("select", shape, np.dtype(dtype).name), fn, args, shape)

        terms = {}
        for key in keys:
            parts = [c.terms.get(key) if isinstance(c, _Lazy) else None for c in cases]
            terms[key] = pick(parts)
        const = pick([c.const if isinstance(c, _Lazy) else c for c in cases])
        return _Lazy(shape, dtype, terms, const)

    def _broadcast(self, lazy: _Lazy, shape, dims) -> _Lazy:
        def widen(c):
            if _is_scalar(c):
                return c
            return self._coef_op(
                ("broadcast", shape, tuple(dims)),
                lambda x: [lax.broadcast_in_dim(x, shape, dims)],
                [c],
                shape,
            )

        terms = {}
        for (buf, spec), coef in lazy.terms.items():
            key = (buf, tuple(dims[s] for s in spec))
            terms[key] = self._add(terms.get(key), widen(coef))
        const = None if lazy.const is None else widen(lazy.const)
        return _Lazy(shape, lazy.dtype, terms, const)

    # ------------------------------------------------------- materialisation

    def _natural_axis(self, lazy: _Lazy) -> int:
        if not lazy.terms:
            return canonical_axis(len(lazy.shape))
        (buf_index, spec), _ = max(lazy.terms.items(), key=lambda item: self._bufs[item[0][0]].size)
        buf = self._bufs[buf_index]
        if buf.size < math.prod(lazy.shape):
            return canonical_axis(len(lazy.shape))
        if buf.axis < len(spec):
            return spec[buf.axis]
        return spec[-1] + 1 if spec else 0

    def _materialize(self, lazy: _Lazy, axis: int | None = None) -> _Buf:
        if axis is None:
            axis = self._natural_axis(lazy)
        cache_key = (id(lazy), axis)
        if cache_key in self._materialized:
            return self._materialized[cache_key]
        self._keepalive.append(lazy)
        if lazy.const is None and len(lazy.terms) == 1:
            (((buf_index, spec), coef),) = lazy.terms.items()
            buf = self._bufs[buf_index]
            if (
                _is_scalar(coef)
                and coef == 1
                and buf.shape == lazy.shape
                and spec == tuple(range(len(spec)))
                and buf.dtype == lazy.dtype
            ):
                out = buf if buf.axis == axis else self._move(buf, axis)
                self._materialized[cache_key] = out
                return out
        shape, dtype = lazy.shape, lazy.dtype
        ndim = len(shape)
        bufs, slots, plan = [], [], []
        for (buf_index, spec), coef in lazy.terms.items():
            buf = self._bufs[buf_index]
            out_pos = [s + (1 if s >= axis else 0) for s in spec]
            move_to = sum(1 for p in out_pos if p < axis)
            dims = tuple(sorted(out_pos + [axis]))
            bufs.append(buf)
            if _is_scalar(coef):
                plan.append((buf.axis, move_to, dims, coef, None))
            else:
                slots.append(coef)
                plan.append((buf.axis, move_to, dims, None, len(coef.shape)))
        if lazy.const is not None:
            const = lazy.const
            if _is_scalar(const):
                plan.append((None, None, None, const, None))
            else:
                slots.append(const)
                plan.append((None, None, None, None, len(const.shape)))

        def fn(k, xs, cs, _plan=plan):
            full = shape[:axis] + (k,) + shape[axis:]
            total = None
            xs, cs = iter(xs), iter(cs)
            for from_axis, move_to, dims, scalar, coef_ndim in _plan:
                if from_axis is None:
                    part = scalar if coef_ndim is None else self._expand(next(cs), ndim, axis)
                    part = jnp.broadcast_to(jnp.asarray(part, dtype), full)
                else:
                    x = jnp.moveaxis(next(xs), from_axis, move_to)
                    part = lax.broadcast_in_dim(x.astype(dtype), full, dims)
                    if coef_ndim is not None:
                        part = part * self._expand(next(cs), ndim, axis).astype(dtype)
                    elif scalar != 1:
                        part = part * jnp.asarray(scalar, dtype)
                total = part if total is None else total + part
            if total is None:
                return jnp.zeros(full, dtype)
            return total

        out = self._emit(shape, dtype, axis, fn, bufs, slots)
        self._materialized[cache_key] = out
        return out

    @staticmethod
    def _expand(c, ndim: int, axis: int):
        c = jnp.asarray(c)
        return jnp.expand_dims(c, axis) if c.ndim == ndim else c

    def _move(self, buf: _Buf, axis: int) -> _Buf:
        return self._emit(
            buf.shape,
            buf.dtype,
            axis,
            lambda k, xs, cs, _f=buf.axis: jnp.moveaxis(xs[0], _f, axis),
            [buf],
            [],
        )

    # ------------------------------------------------------- structural ops

    def _dot(self, eqn, args, tangent_is_lhs: bool) -> _Lazy:
        t_lazy, known = (args[0], args[1]) if tangent_is_lhs else (args[1], args[0])
        aval = eqn.outvars[0].aval
        return self._emit_dot(
            eqn.params, t_lazy, known, tangent_is_lhs, tuple(aval.shape), aval.dtype
        )

    def _emit_dot(self, params, t_lazy, known, tangent_is_lhs, shape, dtype) -> _Lazy:
        """`dot_general` with the K axis among the free dimensions of the tangent
        operand, so that XLA runs it as one GEMM with K folded into a matrix side."""
        (lc, rc), (lb, rb) = params["dimension_numbers"]
        t_contract, t_batch = (lc, lb) if tangent_is_lhs else (rc, rb)
        k_contract, k_batch = (rc, rb) if tangent_is_lhs else (lc, lb)
        t_free = [i for i in range(len(t_lazy.shape)) if i not in t_contract and i not in t_batch]
        # Positions of K that keep it inside the block of free dimensions.
        valid = [*t_free, t_free[-1] + 1] if t_free else [0]
        base = len(t_batch) + (
            0 if tangent_is_lhs else len(known.shape) - len(k_contract) - len(k_batch)
        )
        # Cost in elements per column of each choice: materialising or moving the
        # tangent operand, and leaving the output's K axis off its canonical place.
        t_size, out_size = math.prod(t_lazy.shape), math.prod(shape)

        def cost(j):
            done = (id(t_lazy), valid[j]) in self._materialized
            off = base + j != canonical_axis(len(shape))
            return (0 if done else t_size) + (out_size if off else 0), not done

        j = min(range(len(valid)), key=cost)
        t_axis = valid[j]
        buf = self._materialize(t_lazy, t_axis)

        def shift(dims):
            return tuple(d + (1 if d >= t_axis else 0) for d in dims)

        if tangent_is_lhs:
            numbers = ((shift(lc), tuple(rc)), (shift(lb), tuple(rb)))
        else:
            numbers = ((tuple(lc), shift(rc)), (tuple(lb), shift(rb)))
        bind_params = dict(params, dimension_numbers=numbers)

        def fn(k, xs, cs):
            operands = (xs[0], cs[0]) if tangent_is_lhs else (cs[0], xs[0])
            return _bind(prims.dot_general_p, bind_params, operands)[0]

        out = self._emit(shape, dtype, base + j, fn, [buf], [known])
        self._dots[out.index] = (params, t_lazy, known, tangent_is_lhs)
        return self._lazy_of(out)

    def _swapped_dot(self, lazy: _Lazy, perm) -> _Lazy | None:
        """`transpose(dot_general(a, b))` as `dot_general(b, a)` when the permutation
        swaps the two blocks of free dimensions (the backward pass of a dense layer)."""
        if lazy.const is not None or len(lazy.terms) != 1:
            return None
        (((buf_index, spec), coef),) = lazy.terms.items()
        if buf_index not in self._dots or not (_is_scalar(coef) and coef == 1):
            return None
        params, t_lazy, known, tangent_is_lhs = self._dots[buf_index]
        (lc, rc), (lb, rb) = params["dimension_numbers"]
        lhs_shape = t_lazy.shape if tangent_is_lhs else known.shape
        rhs_shape = known.shape if tangent_is_lhs else t_lazy.shape
        nb = len(lb)
        n_lhs = len(lhs_shape) - len(lc) - nb
        n_rhs = len(rhs_shape) - len(rc) - nb
        swap = (*range(nb), *range(nb + n_lhs, nb + n_lhs + n_rhs), *range(nb, nb + n_lhs))
        if tuple(perm) != swap:
            return None
        swapped = dict(params, dimension_numbers=((rc, lc), (rb, lb)))
        shape = tuple(lazy.shape[p] for p in perm)
        return self._emit_dot(swapped, t_lazy, known, not tangent_is_lhs, shape, lazy.dtype)

    def _reduce_sum(self, lazy: _Lazy, axes, shape, dtype) -> _Lazy:
        buf = self._materialize(lazy)
        batched = tuple(a + (1 if a >= buf.axis else 0) for a in axes)
        axis = buf.axis - sum(1 for a in axes if a < buf.axis)
        out = self._emit(
            shape,
            dtype,
            axis,
            lambda k, xs, cs: jnp.sum(xs[0], axis=batched, dtype=dtype),
            [buf],
            [],
        )
        return self._lazy_of(out)

    def _reshape(self, lazy: _Lazy, shape, dtype) -> _Lazy:
        buf = self._materialize(lazy)
        prefix = math.prod(buf.shape[: buf.axis])
        cut = [i for i in range(len(shape) + 1) if math.prod(shape[:i]) == prefix]
        if cut:
            want = canonical_axis(len(shape))
            axis = want if want in cut else cut[0]
        else:
            buf, axis = self._move(buf, 0), 0

        def fn(k, xs, cs):
            return jnp.reshape(xs[0], shape[:axis] + (k,) + shape[axis:])

        return self._lazy_of(self._emit(shape, dtype, axis, fn, [buf], []))

    def _transpose(self, lazy: _Lazy, perm, shape, dtype) -> _Lazy:
        swapped = self._swapped_dot(lazy, perm)
        if swapped is not None:
            return swapped
        buf = self._materialize(lazy)
        axis = canonical_axis(len(shape))
        full = []
        for p in range(len(shape) + 1):
            if p == axis:
                full.append(buf.axis)
            else:
                d = perm[p - (1 if p > axis else 0)]
                full.append(d + (1 if d >= buf.axis else 0))
        full = tuple(full)
        out = self._emit(
            shape, dtype, axis, lambda k, xs, cs: jnp.transpose(xs[0], full), [buf], []
        )
        return self._lazy_of(out)

    def _fallback(self, eqn, args) -> list:
        """Any other equation: `jax.vmap` of it over the tangent axis (axis 0)."""
        bufs, slots, kinds = [], [], []
        for a in args:
            if isinstance(a, _Lazy):
                bufs.append(self._materialize(a, 0))
                kinds.append(("tangent", None))
            elif isinstance(a, _Slot):
                slots.append(a)
                kinds.append(("known", None))
            else:
                kinds.append(("value", a))

        def fn(k, xs, cs, _e=eqn, _kinds=tuple(kinds)):
            def one(*ts):
                ts, ks = iter(ts), iter(cs)
                full = [
                    next(ts) if kind == "tangent" else next(ks) if kind == "known" else value
                    for kind, value in _kinds
                ]
                return _bind(_e.primitive, _e.params, full)

            return jax.vmap(one)(*xs)

        outs = [(tuple(v.aval.shape), v.aval.dtype, 0) for v in eqn.outvars]
        return [self._lazy_of(b) for b in self._emit_many(outs, fn, bufs, slots)]
