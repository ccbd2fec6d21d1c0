"""The per-example Jacobian of a model's outputs with respect to its parameters.

For a model with outputs z = f(theta, X) of shape (N, C...) on N inputs, the output
Jacobian J = d ravel(z) / d theta is the (N C) x P matrix whose row n C + c is
d z_{nc} / d theta (example-major, the outputs' non-batch axes flattened in C order).
It is the J of the GGN, G = c J^T blockdiag(H_n) J, and of the empirical neural
tangent kernel J J^T (N C x N C). `mv` is a JVP and `rmv` a VJP of one linearisation
(`jacscope.jacobian_operator`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from jacscope._parameters import describe_shapes
from jacscope._validation import eval_shape_explained
from jacscope.curvature._batches import batch_size
from jacscope.curvature._operator import flat_parameters
from jacscope.operators import JacobianOperator, jacobian_operator


def output_jacobian_operator(
    model_fn: Callable[[Any, Any], jax.Array], params: Any, inputs: Any
) -> JacobianOperator:
    r"""The Jacobian of `model_fn(params, inputs)` with respect to `params`, `(N C, P)`.

    Row `n C + c` is the gradient of example n's output c (outputs `(N, ...)`,
    flattened per example in C order); columns follow the `ravel_pytree` order of
    the floating-point array leaves of `params`. The model is linearised once, when
    the operator is built; `mv` is a JVP, `rmv` its linear transpose (a VJP).
    `inputs` are held in memory: for a data set, build one operator per batch.

    **Arguments:**

    - `model_fn`: `(params, inputs) -> outputs`, outputs one floating-point array with
      the inputs' leading example axis.
    - `params`: the point, any pytree (an equinox Module's non-array leaves are held
      fixed).
    - `inputs`: a pytree of arrays with a common leading example axis N.

    **Returns:** a `jacscope.operators.JacobianOperator` of shape `(N C, P)`.

    **Raises:** `ValueError` naming the leaf of a non-finite parameter or input;
    `ValueError` with the shapes if `model_fn` fails on them, or if the outputs are not
    one array whose leading axis is the inputs' N.
    """
    what = "output_jacobian_operator"
    flat, unravel = flat_parameters(params, what)
    examples = batch_size(inputs, what)
    out = eval_shape_explained(
        lambda q: model_fn(unravel(q), inputs),
        flat,
        failure=f"{what}: model_fn fails on params and inputs {describe_shapes(inputs)}",
    )
    if not isinstance(out, jax.ShapeDtypeStruct) or len(out.shape) == 0:
        shown = jax.tree.map(lambda s: f"{s.dtype}{tuple(s.shape)}", out)
        raise ValueError(
            f"{what}: model_fn must return one array of outputs (examples, ...), returned {shown}"
        )
    if out.shape[0] != examples:
        raise ValueError(
            f"{what}: model_fn returns outputs of shape {tuple(out.shape)} for {examples} "
            "inputs; the outputs' leading axis must be the inputs' example axis"
        )
    return jacobian_operator(model_fn, params, inputs, wrt=0)
