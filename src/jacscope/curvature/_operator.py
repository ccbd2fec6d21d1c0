"""A symmetric curvature matrix of a data set, as a sum of per-batch products.

Every curvature operator of this package is a symmetric P x P matrix
C = c sum_b C_b over the batches b of a data set, with P the number of
floating-point parameters and c a normalisation (1/N for a mean over N examples).
It is known by two pure functions:

- `contribution(params, batch, v)`: what batch b adds to the product, a pytree of
  arrays (e.g. `{"cv": N_b C_b v, "n": N_b}`);
- `combine(sums, v)`: the product `C v` from the sums of the contributions over all
  batches (e.g. `sums["cv"] / sums["n"]`).

With one batch in memory, `mv(v) = combine(contribution(params, batch, v), v)` is a
pure JAX function (compiled once), traced, differentiated and vmapped like any other. With a stream
of batches the pass over them runs on the host: every batch's contribution is a
jit-compiled call (compiled once per batch shape), so only one batch is in memory at a
time. Outside a trace the pass runs directly; inside one (`jax.jit`, the `linalg`
functions, `mm`'s `vmap`) it is a `jax.pure_callback` whose batched form receives all
k vectors of an `mm` at once, so that `mm` is one pass over the data, not k.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jacscope._parameters import describe_shapes, ravel_parameters
from jacscope._validation import check_finite
from jacscope.operators import AbstractLinearOperator


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


class _Stream:
    """The host-side pass over streamed batches: `(params, v) -> C v` on NumPy arrays.

    Holds only what does not change under a trace (the batches' function and the
    compiled per-batch programs), so that it can be the callback of
    `jax.pure_callback` (hashed by identity, one per operator).
    """

    def __init__(self, batches, kernel, finish, size, dtype, kind):
        self.batches = batches
        self.kernel = kernel
        self.finish = finish
        self.size = size
        self.dtype = dtype
        self.kind = kind

    def __call__(self, params: Any, v: Any) -> np.ndarray:
        """`C v` for the rows of `v` (`(..., P)`), by one pass over the batches."""
        params = np.asarray(params)
        if params.size != self.size:
            raise ValueError(
                f"{self.kind}: vmapping over the parameters of an operator with streamed "
                "batches is not supported; build one operator per parameter vector"
            )
        vectors = np.asarray(v).reshape(-1, self.size)
        params = params.reshape(self.size)
        sums = None
        structure = None
        for index, batch in enumerate(self.batches()):
            if structure is None:
                structure = jax.tree.structure(batch)
            elif jax.tree.structure(batch) != structure:
                raise ValueError(
                    f"{self.kind}: batch {index} of data() is a {jax.tree.structure(batch)}, "
                    f"unlike batch 0, a {structure}"
                )
            part = jax.tree.map(np.asarray, self.kernel(params, batch, vectors))
            sums = part if sums is None else jax.tree.map(np.add, sums, part)
        if sums is None:
            raise ValueError(f"{self.kind}: data() yielded no batches")
        out = np.asarray(self.finish(sums, vectors), dtype=self.dtype)
        return out.reshape(np.shape(v))


class CurvatureOperator(AbstractLinearOperator):
    """A symmetric curvature matrix (Hessian, GGN, Fisher, gradient covariance) of a loss.

    A `(P, P)` operator on flat vectors in the `ravel_pytree` order of the parameters'
    floating-point array leaves (`ravel_params` / `unravel_params` convert). It is
    symmetric, so `rmv` is `mv`. Products with one batch in memory are pure JAX; with
    a stream of batches, each product is one pass over them (see the module's
    docstring), `mm` included. Works with every `jacscope.linalg` function and
    passes through `jax.jit`.

    Build it with `hessian_operator`, `ggn_operator`, `empirical_fisher_operator` or
    `gradient_covariance_operator`.
    """

    params: jax.Array
    batch: Any
    batches: Callable[[], Any] | None = eqx.field(static=True)
    contribution: Callable = eqx.field(static=True)
    combine: Callable = eqx.field(static=True)
    unravel_params: Callable[[jax.Array], Any] = eqx.field(static=True)
    kind: str = eqx.field(static=True)
    apply: Callable = eqx.field(static=True)
    kernel: Callable = eqx.field(static=True)
    finish: Callable = eqx.field(static=True)
    stream: Callable | None = eqx.field(static=True)
    shape: tuple[int, int] = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)

    def __init__(
        self,
        params: jax.Array,
        batch: Any,
        batches: Callable[[], Any] | None,
        contribution: Callable,
        combine: Callable,
        unravel_params: Callable,
        kind: str,
    ):
        self.params = params
        self.batch = batch
        self.batches = batches
        self.contribution = contribution
        self.combine = combine
        self.unravel_params = unravel_params
        self.kind = kind
        # Compiled once and called from every trace: an eager `vmap` (the base class's
        # `mm`) then runs one compiled program, not the product primitive by primitive.
        self.apply = eqx.filter_jit(lambda p, b, v: combine(contribution(p, b, v), v))
        self.kernel = eqx.filter_jit(jax.vmap(contribution, in_axes=(None, None, 0)))
        self.finish = eqx.filter_jit(jax.vmap(combine))
        self.shape = (int(params.size), int(params.size))
        self.dtype = jnp.result_type(params.dtype)
        self.stream = None
        if batches is not None:
            self.stream = _Stream(
                batches, self.kernel, self.finish, self.shape[0], self.dtype, kind
            )

    def _mv(self, v):
        if v.dtype != self.dtype:
            v = v.astype(self.dtype)
        if self.batches is None:
            return self.apply(self.params, self.batch, v)
        if not _is_traced(v) and not _is_traced(self.params):
            return jnp.asarray(self.stream(self.params, v))
        return jax.pure_callback(
            self.stream,
            jax.ShapeDtypeStruct(v.shape, self.dtype),
            self.params,
            v,
            vmap_method="expand_dims",
        )

    def _rmv(self, u):
        return self._mv(u)

    def ravel_params(self, tree: Any) -> jax.Array:
        """Flatten a pytree shaped like the parameters (its floating-point array leaves)
        into a vector the operator acts on."""
        return ravel_parameters(tree)[0]

    def streamed(self) -> bool:
        """Whether products pass over a stream of batches (`data` was a function)."""
        return self.batches is not None


REDUCTIONS = ("mean", "sum")


def check_reduction(reduction: Any, what: str) -> str:
    """`reduction` if it is `"mean"` or `"sum"`, else a `ValueError` naming both."""
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"{what}: reduction must be one of {REDUCTIONS}, received {reduction!r}")
    return reduction


def flat_parameters(params: Any, what: str) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
    """`(flat, unravel)` of `params` (`ravel_parameters`), after refusing a non-finite leaf
    (named by its path) or parameters without floating-point array leaves."""
    check_finite(params, "params")
    flat, unravel = ravel_parameters(params)
    if flat.size == 0:
        raise ValueError(
            f"{what}: params has no floating-point array leaves; it holds "
            + describe_shapes(params)
        )
    return flat, unravel
