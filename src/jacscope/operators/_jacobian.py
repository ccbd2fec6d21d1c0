"""The Jacobian of a JAX function of pytrees, as a matrix-free linear operator."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jacscope._parameters import describe_shapes, ravel_parameters
from jacscope._validation import check_finite, eval_shape_explained
from jacscope.operators._linear_operator import AbstractLinearOperator


class JacobianOperator(AbstractLinearOperator):
    """The Jacobian J = d ravel(fn(*args)) / d ravel(args[wrt]) at one point.

    `mv` is a Jacobian-vector product (forward mode) and `rmv` a vector-Jacobian
    product (reverse mode, the transpose of the same linearisation). The primal
    pass runs once, when the operator is built; every product reuses it.

    Vectors are flat, in `jax.flatten_util.ravel_pytree` order of the differentiated
    argument(s) (columns) and of the output (rows). `ravel_input`, `unravel_input`,
    `ravel_output` and `unravel_output` convert between flat vectors and pytrees.

    Build it with `jacscope.jacobian_operator`.
    """

    jvp_fn: Callable
    primal_in: jax.Array
    primal_out: jax.Array
    unravel_input: Callable = eqx.field(static=True)
    unravel_output: Callable = eqx.field(static=True)
    shape: tuple[int, int] = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)

    def _mv(self, v):
        return self.jvp_fn(v.astype(self.primal_in.dtype))

    def _rmv(self, u):
        transpose = jax.linear_transpose(self.jvp_fn, self.primal_in)
        (out,) = transpose(u.astype(self.primal_out.dtype))
        return out

    def ravel_input(self, tree: Any) -> jax.Array:
        """Flatten a pytree shaped like the differentiated argument(s) (its
        floating-point array leaves)."""
        return ravel_parameters(tree)[0]

    def ravel_output(self, tree: Any) -> jax.Array:
        """Flatten a pytree shaped like the function's output."""
        return ravel_pytree(tree)[0]

    def output(self) -> Any:
        """The function's value at the linearisation point, as a pytree."""
        return self.unravel_output(self.primal_out)


def jacobian_operator(fn: Callable, *args: Any, wrt: int | Sequence[int] = 0) -> JacobianOperator:
    """The Jacobian of `fn` at `args` with respect to `args[wrt]`, never formed.

    `fn` is any JAX function of pytrees returning a pytree of arrays. `wrt` is an
    argument index, or a tuple of them (the differentiated arguments are then
    flattened together, in that order). Of a differentiated argument, the
    floating-point array leaves are differentiated and the rest (the activation
    functions of an `eqx.nn.MLP`, integer arrays, PRNG keys) held fixed, so an
    equinox Module or flax variables are passed as they are. The operator maps
    R^n -> R^m with n the number of differentiated scalars and m the number of output
    scalars.

    **Raises:** `ValueError` naming the pytree leaf, if an argument or the output
    holds NaN or inf (checked when the values are concrete, i.e. outside `jit`);
    `ValueError` with the arguments' shapes if `fn` fails on them.

    ```python
    op = jacscope.jacobian_operator(lambda p, x: mlp(p, x), params, x)   # d out / d params
    op.mv(v)    # J v  (JVP)
    op.rmv(u)   # J^T u (VJP)
    ```
    """
    wrt_tuple = (wrt,) if isinstance(wrt, int) else tuple(wrt)
    if not wrt_tuple:
        raise ValueError("wrt must name at least one argument")
    for index in wrt_tuple:
        if not -len(args) <= index < len(args):
            raise ValueError(f"wrt={index} is out of range for {len(args)} argument(s)")
    wrt_tuple = tuple(i % len(args) for i in wrt_tuple)
    for index, arg in enumerate(args):
        check_finite(arg, f"argument {index}")

    diff_args = tuple(args[i] for i in wrt_tuple)
    differentiated = diff_args if len(wrt_tuple) > 1 else diff_args[0]
    x0, unravel_input = ravel_parameters(differentiated)
    if x0.size == 0:
        raise ValueError(
            "the differentiated argument has no floating-point array leaves; it holds "
            + describe_shapes(differentiated)
        )

    def flat_fn(x_flat):
        chosen = unravel_input(x_flat)
        chosen = chosen if len(wrt_tuple) > 1 else (chosen,)
        full = list(args)
        for index, value in zip(wrt_tuple, chosen, strict=True):
            full[index] = value
        return ravel_pytree(fn(*full))[0]

    shapes = "; ".join(f"argument {i}: {describe_shapes(arg)}" for i, arg in enumerate(args))
    out_tree_struct = eval_shape_explained(
        lambda: fn(*args), failure=f"fn fails on the given arguments ({shapes})"
    )
    unravel_output = ravel_pytree(
        jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), out_tree_struct)
    )[1]
    y0, jvp_fn = jax.linearize(flat_fn, x0)
    check_finite(unravel_output(y0), "output of fn")
    return JacobianOperator(
        jvp_fn=jvp_fn,
        primal_in=x0,
        primal_out=y0,
        unravel_input=unravel_input,
        unravel_output=unravel_output,
        shape=(int(y0.size), int(x0.size)),
        dtype=jnp.result_type(x0.dtype, y0.dtype),
    )
