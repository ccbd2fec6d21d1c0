"""jacscope operators as lineax operators, and back.

Imported only by `to_lineax` and `from_lineax` (see `_interop.py`), so that
`import jacscope` does not import lineax.

`to_lineax` returns `JacscopeLinearOperator`, a `lineax.AbstractLinearOperator` that
holds the jacscope operator. A `lineax.FunctionLinearOperator` built on `op.mv` would
be shorter, but lineax transposes it by `jax.linear_transpose` of `mv`: that ignores
the operator's own `rmv`, fails for an `mv` that JAX cannot transpose (one that calls
out of JAX) and re-derives, at every transposition, what a Jacobian operator already
holds. Holding the operator keeps `transpose().mv` equal to `op.rmv`, exactly and at
its own cost. lineax asks what it needs of an operator kind (`materialise`, `diagonal`,
`is_symmetric` and the rest of its tag queries) through `functools.singledispatch`,
so the new kind registers an answer to each of them below.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

from jacscope.operators._linear_operator import AbstractLinearOperator


def _tag_set(tags: Any) -> frozenset:
    """One tag or an iterable of tags, as a frozenset."""
    if isinstance(tags, Iterable) and not isinstance(tags, str):
        return frozenset(tags)
    return frozenset([tags])


class JacscopeLinearOperator(lx.AbstractLinearOperator):
    """A jacscope operator seen by lineax: flat `(n,)` vectors in, flat `(m,)` out.

    `mv` is the jacscope operator's `mv`, `transpose()` wraps its transpose (so
    `transpose().mv` is its `rmv`, not an autodiff transpose of `mv`), and
    `as_matrix()` is its memory-budgeted `materialize()`. `tags` are lineax tags
    (`lineax.symmetric_tag`, `lineax.positive_semidefinite_tag`, ...): promises about
    the operator that lineax's solvers rely on and nobody checks.

    Build it with `op.to_lineax(tags=...)`.
    """

    operator: AbstractLinearOperator
    tags: frozenset = eqx.field(static=True)

    def __init__(self, operator: AbstractLinearOperator, tags: Any = ()):
        self.operator = operator
        self.tags = _tag_set(tags)

    def mv(self, vector):
        return self.operator.mv(vector)

    def as_matrix(self):
        return self.operator.materialize()

    def transpose(self):
        if lx.is_symmetric(self):
            return self
        return JacscopeLinearOperator(self.operator.T, lx.transpose_tags(self.tags))

    def in_structure(self):
        return jax.ShapeDtypeStruct((self.operator.shape[1],), jnp.dtype(self.operator.dtype))

    def out_structure(self):
        return jax.ShapeDtypeStruct((self.operator.shape[0],), jnp.dtype(self.operator.dtype))


def _is_square(op: JacscopeLinearOperator) -> bool:
    m, n = op.operator.shape
    return m == n


@lx.linearise.register(JacscopeLinearOperator)
def _(op):
    return op  # already linear


@lx.materialise.register(JacscopeLinearOperator)
def _(op):
    return lx.MatrixLinearOperator(op.as_matrix(), op.tags)


@lx.conj.register(JacscopeLinearOperator)
def _(op):
    return op  # jacscope operators are real


@lx.diagonal.register(JacscopeLinearOperator)
def _(op):
    if lx.is_diagonal(op):
        return op.mv(jnp.ones((op.operator.shape[1],), op.operator.dtype))
    return jnp.diagonal(op.as_matrix())


@lx.tridiagonal.register(JacscopeLinearOperator)
def _(op):
    if not lx.is_tridiagonal(op):
        matrix = op.as_matrix()
        return jnp.diagonal(matrix), jnp.diagonal(matrix, -1), jnp.diagonal(matrix, 1)
    # Three products: column c of `probes` sums the basis vectors e_j with j = c mod 3,
    # and no row of a tridiagonal matrix meets two of those j.
    n = op.operator.shape[1]
    index = jnp.arange(n)
    probes = (index[:, None] % 3 == jnp.arange(3)[None, :]).astype(op.operator.dtype)
    columns = op.operator.mm(probes)  # columns[i, c] = sum_{j = c mod 3} A_ij
    main = columns[index, index % 3]
    upper = columns[index[:-1], (index[:-1] + 1) % 3]  # A_{i, i+1}
    lower = columns[index[1:], index[:-1] % 3]  # A_{i+1, i}
    return main, lower, upper


@lx.is_symmetric.register(JacscopeLinearOperator)
def _(op):
    return bool(
        op.tags
        & {
            lx.symmetric_tag,
            lx.diagonal_tag,
            lx.positive_semidefinite_tag,
            lx.negative_semidefinite_tag,
        }
    )


@lx.is_diagonal.register(JacscopeLinearOperator)
def _(op):
    return lx.diagonal_tag in op.tags or op.operator.shape == (1, 1)


@lx.is_tridiagonal.register(JacscopeLinearOperator)
def _(op):
    return bool(op.tags & {lx.tridiagonal_tag, lx.diagonal_tag})


@lx.has_unit_diagonal.register(JacscopeLinearOperator)
def _(op):
    return lx.unit_diagonal_tag in op.tags


@lx.is_lower_triangular.register(JacscopeLinearOperator)
def _(op):
    return bool(op.tags & {lx.lower_triangular_tag, lx.diagonal_tag}) and _is_square(op)


@lx.is_upper_triangular.register(JacscopeLinearOperator)
def _(op):
    return bool(op.tags & {lx.upper_triangular_tag, lx.diagonal_tag}) and _is_square(op)


@lx.is_positive_semidefinite.register(JacscopeLinearOperator)
def _(op):
    return lx.positive_semidefinite_tag in op.tags


@lx.is_negative_semidefinite.register(JacscopeLinearOperator)
def _(op):
    return lx.negative_semidefinite_tag in op.tags


class LineaxOperator(AbstractLinearOperator):
    """A lineax operator on flat vectors, seen by jacscope.

    `mv` is the lineax operator's `mv` and `rmv` the `mv` of its `transpose()`. The
    transpose is formed at each `rmv` (under `jax.jit`, once per trace) rather than
    stored, so the wrapper holds nothing beyond the lineax operator itself.

    Build it with `jacscope.from_lineax`.
    """

    operator: lx.AbstractLinearOperator
    shape: tuple[int, int] = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)

    def _mv(self, v):
        return self.operator.mv(v)

    def _rmv(self, u):
        return self.operator.transpose().mv(u)


def _flat_structure(structure: Any, side: str) -> jax.ShapeDtypeStruct:
    """The one 1-D array of an operator's input or output structure, or `ValueError`."""
    if not isinstance(structure, jax.ShapeDtypeStruct) or len(structure.shape) != 1:
        raise ValueError(
            f"from_lineax needs an operator from one flat (n,) array to another; its "
            f"{side} structure is {structure} (flatten it with jax.flatten_util.ravel_pytree)"
        )
    return structure


def from_lineax(op: Any) -> AbstractLinearOperator:
    """Implementation of `jacscope.from_lineax` (see `_interop.py`)."""
    if isinstance(op, JacscopeLinearOperator):
        return op.operator
    if not isinstance(op, lx.AbstractLinearOperator):
        raise TypeError(f"from_lineax expects a lineax operator, received a {type(op).__name__}")
    inputs = _flat_structure(op.in_structure(), "input")
    outputs = _flat_structure(op.out_structure(), "output")
    if inputs.dtype != outputs.dtype or not jnp.issubdtype(inputs.dtype, jnp.floating):
        raise ValueError(
            f"from_lineax needs one real floating-point dtype in and out; the operator maps "
            f"{inputs.dtype} to {outputs.dtype}"
        )
    return LineaxOperator(
        operator=op, shape=(outputs.shape[0], inputs.shape[0]), dtype=jnp.dtype(inputs.dtype)
    )
