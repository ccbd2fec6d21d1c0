"""The Hessian of a loss with respect to a model's parameters, as a matrix-free operator.

For a loss `L(theta) = loss_fn(theta, batch)` of parameters theta in R^P, the Hessian
H = d^2 L / d theta^2 is applied to a vector by differentiating the gradient along it,
forward over reverse:

    H v = d/dt grad L(theta + t v) |_{t=0} = jax.jvp(jax.grad(L), (theta,), (v,))[1],

one forward and one backward pass with tangents, about the cost of 2 to 4 gradients
and the memory of one, exact to rounding (Pearlmutter 1994). Over a data set split
into batches b of N_b examples, with `loss_fn` reducing its batch by `reduction`,

- `"mean"` (`loss_fn` returns the mean loss of its batch): H = sum_b (N_b / N) H_b,
  the Hessian of the mean loss over all N examples;
- `"sum"` (`loss_fn` returns the summed loss of its batch): H = sum_b H_b, the
  Hessian of the total loss.

With one batch both give the Hessian of `loss_fn` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jacscope._parameters import describe_shapes
from jacscope._validation import check_finite, eval_shape_explained
from jacscope.curvature._batches import batch_size, batch_source
from jacscope.curvature._operator import CurvatureOperator, check_reduction, flat_parameters


def hessian_operator(
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    data: Any,
    *,
    reduction: str = "mean",
) -> CurvatureOperator:
    r"""The Hessian of `loss_fn` with respect to `params`, over a batch or a data set.

    `H v` is a forward-over-reverse Hessian-vector product (`jax.jvp` of `jax.grad`),
    per batch; `mm` vectorises it, so the primal and adjoint passes are shared by the k
    vectors. The operator is symmetric (`rmv` is `mv`); its vectors are flat, in the
    `ravel_pytree` order of the floating-point array leaves of `params`.

    **Arguments:**

    - `loss_fn`: `(params, batch) -> scalar`, the loss of one batch, e.g.
      `lambda p, b: cross_entropy(model(p, b["x"]), b["y"])`.
    - `params`: the point, any pytree: an equinox Module (its non-array leaves held
      fixed), flax variables, a dict or list of arrays.
    - `data`: one batch (any pytree `loss_fn` takes), held in memory by the operator,
      or a zero-argument function returning an iterable of batches (a data set larger
      than memory), read again at every product (`mm` included, once per call).
    - `reduction`: how `loss_fn` reduces its batch, `"mean"` or `"sum"`; the operator
      is then the Hessian of the mean (`H = sum_b (N_b / N) H_b`) or the sum
      (`H = sum_b H_b`) over the whole data set, N_b being a batch's common leading
      axis. With one batch it does not matter.

    **Returns:** a `CurvatureOperator` of shape `(P, P)`.

    **Raises:** `ValueError` naming the leaf if `params` or the (first) batch holds NaN
    or inf; `ValueError` with the shapes if `loss_fn` fails on them or does not return
    a floating-point scalar; `ValueError` for an unknown `reduction`, or, with
    `"mean"` and streamed batches, a batch whose leaves differ in their leading axis;
    `TypeError` for an iterator as `data`.

    ```python
    H = jacscope.curvature.hessian_operator(loss_fn, params, {"x": x, "y": y})
    values, vectors, info = jacscope.linalg.eigh_topk(H, 10, key=key)
    ```

    Citation: Pearlmutter, "Fast Exact Multiplication by the Hessian", Neural
    Computation, 1994.
    """
    what = "hessian_operator"
    reduction = check_reduction(reduction, what)
    flat, unravel = flat_parameters(params, what)
    source = batch_source(data, what)
    check_finite(source.first, "data" if source.batches is None else "data() batch 0")
    weighted = source.batches is not None and reduction == "mean"
    if weighted:
        batch_size(source.first, what)
    out = eval_shape_explained(
        lambda q: loss_fn(unravel(q), source.first),
        flat,
        failure=f"{what}: loss_fn fails on params and the batch {describe_shapes(source.first)}",
    )
    if (
        not isinstance(out, jax.ShapeDtypeStruct)
        or out.shape != ()
        or not jnp.issubdtype(out.dtype, jnp.inexact)
    ):
        shown = jax.tree.map(lambda s: f"{s.dtype}{tuple(s.shape)}", out)
        raise ValueError(f"{what}: loss_fn must return a floating-point scalar, returned {shown}")

    def contribution(p, batch, v):
        gradient = jax.grad(lambda q: loss_fn(unravel(q), batch))
        hv = jax.jvp(gradient, (p,), (v,))[1]
        if not weighted:
            return {"hv": hv}
        count = batch_size(batch, what)
        return {"hv": count * hv, "n": jnp.asarray(count, hv.dtype)}

    def combine(sums, v):
        return sums["hv"] / sums["n"] if weighted else sums["hv"]

    return CurvatureOperator(
        flat, source.batch, source.batches, contribution, combine, unravel, what
    )
