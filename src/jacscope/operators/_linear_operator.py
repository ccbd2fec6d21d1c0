"""The linear-operator protocol every jacscope module speaks.

A linear operator A: R^n -> R^m is known only by its action: `mv(v) = A v` and
`rmv(u) = A^T u` on flat vectors. `mm` and `rmm` apply it to the columns of a
matrix at once (vectorised with `jax.vmap`, optionally in chunks that bound memory).
Operators are `equinox.Module`s, hence pytrees: they pass through `jax.jit`,
`jax.vmap` and `jax.grad` like any other argument.

The algebra `A @ B`, `A + B`, `A - B`, `c * A`, `-A` and `A.T` builds new operators
lazily; nothing is formed densely until `materialize` is asked for.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from jacscope._validation import check_batch_shape, check_vector_shape, first_line

_DEFAULT_MAX_BYTES = 2 * 1024**3


def _apply_columns(fn: Callable, mat: jax.Array, chunk_size: int | None) -> jax.Array:
    """Apply the vector map `fn` to every column of `mat`, `chunk_size` columns at a time."""
    if chunk_size is None or chunk_size >= mat.shape[1]:
        return jax.vmap(fn, in_axes=1, out_axes=1)(mat)
    return jax.lax.map(fn, mat.T, batch_size=int(chunk_size)).T


class AbstractLinearOperator(eqx.Module):
    """A linear map from R^n to R^m, `shape = (m, n)`, known by its products.

    Subclasses provide `_mv`, `_rmv`, `shape` and `dtype`; everything else
    (checked products, batched products, transposition, algebra, materialisation)
    is shared.
    """

    shape: eqx.AbstractVar[tuple[int, int]]
    dtype: eqx.AbstractVar[Any]

    @abc.abstractmethod
    def _mv(self, v: jax.Array) -> jax.Array:
        """A v for a flat vector v of length n."""

    @abc.abstractmethod
    def _rmv(self, u: jax.Array) -> jax.Array:
        """A^T u for a flat vector u of length m."""

    def mv(self, v: jax.Array) -> jax.Array:
        """Return `A v`; `v` has shape `(n,)`."""
        check_vector_shape(v, (self.shape[1],), f"{type(self).__name__}.mv")
        return self._mv(v)

    def rmv(self, u: jax.Array) -> jax.Array:
        """Return `A^T u`; `u` has shape `(m,)`."""
        check_vector_shape(u, (self.shape[0],), f"{type(self).__name__}.rmv")
        return self._rmv(u)

    def mm(self, V: jax.Array, chunk_size: int | None = None) -> jax.Array:
        """Return `A V` for `V` of shape `(n, k)`.

        The k products are vectorised; with `chunk_size`, at most that many are
        in flight at once, which bounds the working memory.
        """
        check_batch_shape(V, self.shape[1], f"{type(self).__name__}.mm")
        return _apply_columns(self._mv, V, chunk_size)

    def rmm(self, U: jax.Array, chunk_size: int | None = None) -> jax.Array:
        """Return `A^T U` for `U` of shape `(m, k)`; `chunk_size` as in `mm`."""
        check_batch_shape(U, self.shape[0], f"{type(self).__name__}.rmm")
        return _apply_columns(self._rmv, U, chunk_size)

    @property
    def T(self) -> AbstractLinearOperator:
        """The transpose A^T, shape `(n, m)`."""
        return TransposedOperator(self)

    def materialize(
        self,
        max_bytes: int = _DEFAULT_MAX_BYTES,
        chunk_size: int | None = None,
        mode: str = "auto",
    ) -> jax.Array:
        """Return the dense `(m, n)` matrix, with peak memory kept under `max_bytes`.

        Builds columns with `mv` (forward mode for a Jacobian) or rows with `rmv`
        (reverse mode), `chunk_size` basis vectors at a time; `mode="auto"` takes
        columns when n <= m and rows otherwise, `"forward"` or `"reverse"` forces one.
        By default the chunk is the largest whose working memory fits the budget left
        over by the result.

        A `MatrixOperator` returns its matrix itself, whatever the budget.

        **Raises:** `jacscope.DenseTooLarge` if the result alone needs more than
        `max_bytes`.
        """
        from jacscope.operators._dense import materialize

        return materialize(self, max_bytes=max_bytes, chunk_size=chunk_size, mode=mode)

    def to_lineax(self, tags: Any = ()) -> Any:
        """This operator as a `lineax.AbstractLinearOperator`, for `lineax.linear_solve`.

        Its `mv` is this operator's `mv`, on the same flat `(n,)` vectors and in the same
        dtype, and its `transpose().mv` is this operator's `rmv`: a
        `lineax.FunctionLinearOperator` would instead transpose `mv` by autodiff
        (`jax.linear_transpose`), ignoring `rmv` and failing where JAX cannot transpose
        `mv`. `as_matrix()` is `materialize()`. The result is a pytree like this
        operator, so it can be built and used inside `jax.jit`;
        `jacscope.from_lineax` turns it back into this operator.

        **Arguments:**

        - `tags`: a lineax tag or a collection of them, e.g.
          `(lineax.symmetric_tag, lineax.positive_semidefinite_tag)` for
          `lineax.CG`. They are promises that lineax's solvers rely on and do not check.

        **Returns:** a `lineax.AbstractLinearOperator` from `(n,)` arrays to `(m,)` arrays.

        **Raises:** `ImportError` if lineax is not installed (`pip install 'jacscope[lineax]'`).

        ```python
        H = jacscope.matrix_operator(jnp.array([[2.0, 1.0], [1.0, 3.0]]))
        tags = (lineax.symmetric_tag, lineax.positive_semidefinite_tag)
        x = lineax.linear_solve(H.to_lineax(tags), b, lineax.CG(rtol=1e-8, atol=1e-8)).value
        ```
        """
        from jacscope.operators._interop import to_lineax

        return to_lineax(self, tags)

    def to_scipy(self) -> Any:
        """This operator as a `scipy.sparse.linalg.LinearOperator`.

        `matvec`, `rmatvec`, `matmat` and `rmatmat` take NumPy arrays, cast them to this
        operator's dtype (float32 or float64) and return NumPy arrays of that dtype,
        so SciPy's iterative methods (`svds`, `eigsh`, `lsqr`, `gmres`, ...) apply.
        Each product is compiled with `jax.jit` once, when first called, with this
        operator's arrays as arguments: later calls of the same shape run the compiled
        code without tracing again. Arrays are copied between NumPy and the JAX device
        at every call.

        **Returns:** a `scipy.sparse.linalg.LinearOperator` of shape `(m, n)` and this
        operator's dtype.

        **Raises:** `ValueError` for a dtype other than float32 and float64.

        ```python
        u, s, vt = scipy.sparse.linalg.svds(op.to_scipy(), k=5)
        ```
        """
        from jacscope.operators._interop import to_scipy

        return to_scipy(self)

    def __matmul__(self, other: Any) -> Any:
        if isinstance(other, AbstractLinearOperator):
            return ComposedOperator(self, other)
        other = jnp.asarray(other)
        return self.mv(other) if other.ndim == 1 else self.mm(other)

    def __add__(self, other: Any) -> AbstractLinearOperator:
        if not isinstance(other, AbstractLinearOperator):
            return NotImplemented
        return SumOperator(self, other)

    def __sub__(self, other: Any) -> AbstractLinearOperator:
        if not isinstance(other, AbstractLinearOperator):
            return NotImplemented
        return SumOperator(self, ScaledOperator(other, -1.0))

    def __mul__(self, scalar: Any) -> AbstractLinearOperator:
        if isinstance(scalar, AbstractLinearOperator) or jnp.ndim(scalar) != 0:
            return NotImplemented
        return ScaledOperator(self, scalar)

    __rmul__ = __mul__

    def __neg__(self) -> AbstractLinearOperator:
        return ScaledOperator(self, -1.0)

    def __repr__(self) -> str:
        m, n = self.shape
        return f"{type(self).__name__}(shape=({m}, {n}), dtype={jnp.dtype(self.dtype).name})"


def _check_product(fn: Callable, name: str, size_in: int, size_out: int, shape, dtype) -> None:
    """Refuse at construction a product function that contradicts `shape` or `dtype`:
    it is evaluated abstractly (`jax.eval_shape`, no arithmetic) on a `(size_in,)`
    vector and must return a `(size_out,)` vector of `dtype`."""
    try:
        out = jax.eval_shape(fn, jax.ShapeDtypeStruct((size_in,), dtype))
    except Exception as err:
        raise ValueError(
            f"LinearOperator: {name} cannot be applied to a vector of shape ({size_in},) "
            f"and dtype {dtype}, as shape={shape} requires "
            f"({type(err).__name__}: {first_line(err)})"
        ) from None
    got = (getattr(out, "shape", None), getattr(out, "dtype", None))
    if got != ((size_out,), dtype):
        raise ValueError(
            f"LinearOperator: {name} maps a ({size_in},) vector to shape {got[0]} and dtype "
            f"{got[1]}; shape={shape} and dtype={dtype} require shape ({size_out},) and "
            f"dtype {dtype}"
        )


class LinearOperator(AbstractLinearOperator):
    """A linear operator from user functions.

    **Arguments:**

    - `mv`: `v -> A v`, flat `(n,)` to flat `(m,)`.
    - `rmv`: `u -> A^T u`, flat `(m,)` to flat `(n,)`.
    - `shape`: `(m, n)`.
    - `dtype`: the dtype of the vectors it acts on.

    Both functions are checked when the operator is built, by abstract evaluation
    (no arithmetic): `mv` must map an `(n,)` vector of `dtype` to an `(m,)` vector of
    `dtype` and `rmv` back, or a `ValueError` names the function and both shapes.

    ```python
    M = jnp.arange(6.0).reshape(2, 3)
    A = jacscope.LinearOperator(lambda v: M @ v, lambda u: M.T @ u, (2, 3), M.dtype)
    ```
    """

    mv_fn: Callable[[jax.Array], jax.Array]
    rmv_fn: Callable[[jax.Array], jax.Array]
    shape: tuple[int, int] = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)

    def __init__(self, mv: Callable, rmv: Callable, shape: tuple[int, int], dtype: Any):
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"LinearOperator shape must be (m, n) with m, n >= 1, got {shape}")
        self.mv_fn = mv
        self.rmv_fn = rmv
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = jnp.dtype(dtype)
        m, n = self.shape
        _check_product(mv, "mv", n, m, self.shape, self.dtype)
        _check_product(rmv, "rmv", m, n, self.shape, self.dtype)

    def _mv(self, v):
        return self.mv_fn(v)

    def _rmv(self, u):
        return self.rmv_fn(u)


class IdentityOperator(AbstractLinearOperator):
    """The identity on R^n; with scalars, `A - c * identity(n)` shifts an operator."""

    shape: tuple[int, int] = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)

    def __init__(self, n: int, dtype: Any = None):
        self.shape = (int(n), int(n))
        self.dtype = jnp.dtype(dtype if dtype is not None else jnp.result_type(float))

    def _mv(self, v):
        return v

    def _rmv(self, u):
        return u


def identity(n: int, dtype: Any = None) -> IdentityOperator:
    """The identity operator on R^n (default dtype: JAX's default float)."""
    return IdentityOperator(n, dtype)


class TransposedOperator(AbstractLinearOperator):
    """A^T for an operator A."""

    op: AbstractLinearOperator
    shape: tuple[int, int] = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)

    def __init__(self, op: AbstractLinearOperator):
        self.op = op
        self.shape = (op.shape[1], op.shape[0])
        self.dtype = op.dtype

    def _mv(self, v):
        return self.op._rmv(v)

    def _rmv(self, u):
        return self.op._mv(u)

    @property
    def T(self):
        return self.op


class ComposedOperator(AbstractLinearOperator):
    """The product A B: first B, then A."""

    outer: AbstractLinearOperator
    inner: AbstractLinearOperator
    shape: tuple[int, int] = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)

    def __init__(self, outer: AbstractLinearOperator, inner: AbstractLinearOperator):
        if outer.shape[1] != inner.shape[0]:
            raise ValueError(
                f"cannot compose operators of shapes {outer.shape} @ {inner.shape}: "
                f"inner dimension {outer.shape[1]} != {inner.shape[0]}"
            )
        self.outer = outer
        self.inner = inner
        self.shape = (outer.shape[0], inner.shape[1])
        self.dtype = jnp.result_type(outer.dtype, inner.dtype)

    def _mv(self, v):
        return self.outer._mv(self.inner._mv(v))

    def _rmv(self, u):
        return self.inner._rmv(self.outer._rmv(u))


class SumOperator(AbstractLinearOperator):
    """The sum A + B of two operators of the same shape."""

    left: AbstractLinearOperator
    right: AbstractLinearOperator
    shape: tuple[int, int] = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)

    def __init__(self, left: AbstractLinearOperator, right: AbstractLinearOperator):
        if left.shape != right.shape:
            raise ValueError(f"cannot add operators of shapes {left.shape} and {right.shape}")
        self.left = left
        self.right = right
        self.shape = left.shape
        self.dtype = jnp.result_type(left.dtype, right.dtype)

    def _mv(self, v):
        return self.left._mv(v) + self.right._mv(v)

    def _rmv(self, u):
        return self.left._rmv(u) + self.right._rmv(u)


class ScaledOperator(AbstractLinearOperator):
    """The scalar multiple c A."""

    op: AbstractLinearOperator
    scale: Any
    shape: tuple[int, int] = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)

    def __init__(self, op: AbstractLinearOperator, scale: Any):
        self.op = op
        self.scale = scale
        self.shape = op.shape
        self.dtype = op.dtype

    def _mv(self, v):
        return self.scale * self.op._mv(v)

    def _rmv(self, u):
        return self.scale * self.op._rmv(u)
