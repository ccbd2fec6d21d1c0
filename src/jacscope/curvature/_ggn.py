"""The generalised Gauss-Newton matrix of a model and a loss, as a matrix-free operator.

For a model with per-example outputs z_n = f(theta, x_n) in R^C and a loss
l(z_n, y_n) of them, the Hessian of the loss splits by the chain rule into

    d^2 l_n / d theta^2 = J_n^T H_n J_n + sum_c (d l_n / d z_{nc}) d^2 z_{nc} / d theta^2,

with J_n = d z_n / d theta (C x P) and H_n = d^2 l_n / d z_n^2 (C x C). The
generalised Gauss-Newton matrix (GGN) keeps the first term,

    G = c sum_n J_n^T H_n J_n,   c = 1/N (`reduction="mean"`) or 1 (`"sum"`),

positive semi-definite whenever every H_n is (all the losses here are convex in z).
A product is a JVP, the closed-form H_n of `jacscope.curvature`'s losses, and a VJP:
G v = c sum_n J_n^T (H_n (J_n v)), the model linearised once per batch and product.

For cross-entropy (softmax likelihood), MSE (Gaussian likelihood, up to the factor
2 of this MSE's convention) and Bernoulli (sigmoid likelihood) on the model's
outputs, the losses are negative log-likelihoods of exponential families in their
natural parameters z, and the GGN equals the Fisher information matrix
c sum_n E_{y ~ p(y | z_n)}[g_n g_n^T] (Martens 2020), so `ggn_operator` is the
Fisher of these models as well (for MSE, the Fisher of a Gaussian of variance 1/2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jacscope._validation import check_finite
from jacscope.curvature._batches import batch_source, split_pair
from jacscope.curvature._losses import get_loss, output_shape
from jacscope.curvature._operator import CurvatureOperator, check_reduction, flat_parameters


def ggn_operator(
    model_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    data: Any,
    *,
    loss: str,
    reduction: str = "mean",
) -> CurvatureOperator:
    r"""The generalised Gauss-Newton matrix G = c sum_n J_n^T H_n J_n (= the Fisher here).

    `J_n` is the Jacobian of example n's outputs with respect to the parameters and
    `H_n` the Hessian of the loss with respect to those outputs, in closed form (softmax
    cross-entropy `diag(p) - p p^T`, MSE `2 I`, Bernoulli `diag(sigma (1 - sigma))`).
    Each product linearises the model on a batch (`jax.linearize`: one forward pass),
    applies `J` forward, `H_n` per example and `J^T` by the linear transpose; `mm`
    shares the forward pass between its vectors.
    The operator is symmetric positive semi-definite.

    **Arguments:**

    - `model_fn`: `(params, inputs) -> outputs`, outputs `(B, ...)` with a leading
      example axis (`(B, C)` logits for cross-entropy).
    - `params`: the point, any pytree (an equinox Module's non-array leaves are held
      fixed).
    - `data`: one batch `(inputs, targets)`, or a zero-argument function returning an
      iterable of such pairs (a data set larger than memory, read at every product).
    - `loss`: `"cross_entropy"` (integer labels `(B,)` or class weights `(B, C)`),
      `"mse"` (`sum_c (z_c - y_c)^2` per example, targets shaped like the outputs) or
      `"bernoulli"` (binary cross-entropy on logits, targets in `[0, 1]` shaped like
      the outputs).
    - `reduction`: `"mean"` (c = 1/N, N the examples of the whole data set) or
      `"sum"` (c = 1), matching a loss that averages or sums its per-example terms.

    **Returns:** a `CurvatureOperator` of shape `(P, P)`.

    **Raises:** `ValueError` for an unknown `loss` (listing the valid ones) or
    `reduction`; `ValueError` naming the leaf of a non-finite parameter or datum;
    `ValueError` when a batch is not a pair, when `model_fn` fails on the inputs, or
    when the targets' shape does not fit the outputs (both shapes named), and for
    labels out of range or Bernoulli targets outside `[0, 1]` (checked on the first
    batch).

    Citation: Schraudolph, "Fast Curvature Matrix-Vector Products for Second-Order
    Gradient Descent", Neural Computation, 2002.

    Citation: Martens, "New Insights and Perspectives on the Natural Gradient Method",
    arXiv 1412.1193.
    """
    what = "ggn_operator"
    loss_ = get_loss(loss, what)
    reduction = check_reduction(reduction, what)
    flat, unravel = flat_parameters(params, what)
    source = batch_source(data, what)
    check_finite(source.first, "data" if source.batches is None else "data() batch 0")
    output_shape(model_fn, flat, unravel, source.first, loss_, what)

    def contribution(p, batch, v):
        inputs, targets = split_pair(batch, what)
        outputs, jvp = jax.linearize(lambda q: model_fn(unravel(q), inputs), p)
        loss_.check_targets(tuple(outputs.shape), targets, what, False)
        weighted = loss_.hessian_product(outputs, targets, jvp(v))
        (gv,) = jax.linear_transpose(jvp, p)(weighted)
        return {"gv": gv, "n": jnp.asarray(outputs.shape[0], gv.dtype)}

    def combine(sums, v):
        return sums["gv"] / sums["n"] if reduction == "mean" else sums["gv"]

    return CurvatureOperator(
        flat, source.batch, source.batches, contribution, combine, unravel, what
    )
