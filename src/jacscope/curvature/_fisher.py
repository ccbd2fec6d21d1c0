"""The empirical Fisher and the gradient covariance, from per-example gradients.

With per-example losses l_n(theta) = l(f(theta, x_n), y_n) and their gradients
g_n = grad l_n in R^P, over N examples:

- the empirical Fisher F = c sum_n g_n g_n^T, c = 1/N (`reduction="mean"`) or 1
  (`"sum"`);
- the gradient covariance C = (1/N) sum_n (g_n - g)(g_n - g)^T with the mean gradient
  g = (1/N) sum_n g_n, i.e. C = F_mean - g g^T (normalised by N, not N - 1).

Neither the P x P matrix nor the B x P per-example gradients are formed. On a batch,
the per-example losses are one map L: R^P -> R^B whose Jacobian has the rows g_n^T,
so after linearising L once (one forward pass),

    sum_n g_n (g_n . v) = J_L^T (J_L v)   and   sum_n g_n = J_L^T 1,

a JVP and a VJP of length-B vectors. The sums over batches and N are collected in the
same pass, so that C v = sum g_n (g_n . v) / N - g (g . v) needs no pass ahead.

Unlike the GGN (the Fisher of the model's own predictive distribution), the empirical
Fisher uses the observed targets; it is not a curvature approximation in general
(Kunstner et al. 2019), and it differs from the gradient covariance by g g^T, which
matters away from a stationary point (Thomas et al. 2020).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jacscope._validation import check_finite
from jacscope.curvature._batches import batch_source, split_pair
from jacscope.curvature._losses import Loss, get_loss, output_shape
from jacscope.curvature._operator import CurvatureOperator, check_reduction, flat_parameters


def _linearized_losses(model_fn: Callable, unravel: Callable, loss: Loss, p, batch, what: str):
    """`(losses, jvp)`: the per-example losses `(B,)` of a batch and their linearisation."""
    inputs, targets = split_pair(batch, what)

    def losses(q):
        outputs = model_fn(unravel(q), inputs)
        loss.check_targets(tuple(outputs.shape), targets, what, False)
        return loss.per_example(outputs, targets)

    return jax.linearize(losses, p)


def _prepare(model_fn, params, data, loss, what):
    loss_ = get_loss(loss, what)
    flat, unravel = flat_parameters(params, what)
    source = batch_source(data, what)
    check_finite(source.first, "data" if source.batches is None else "data() batch 0")
    output_shape(model_fn, flat, unravel, source.first, loss_, what)
    return loss_, flat, unravel, source


def empirical_fisher_operator(
    model_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    data: Any,
    *,
    loss: str,
    reduction: str = "mean",
) -> CurvatureOperator:
    r"""The empirical Fisher F = c sum_n g_n g_n^T of per-example loss gradients.

    `F v = c J_L^T (J_L v)` with `J_L` the Jacobian of the batch's per-example losses
    (rows `g_n^T`), one linearisation, one JVP and one VJP per batch; symmetric
    positive semi-definite, rank at most N.

    **Arguments:**

    - `model_fn`: `(params, inputs) -> outputs`, with a leading example axis.
    - `params`: the point, any pytree.
    - `data`: one batch `(inputs, targets)`, or a zero-argument function returning an
      iterable of such pairs.
    - `loss`: `"cross_entropy"`, `"mse"` or `"bernoulli"`, the per-example loss
      `l_n` (see `ggn_operator`).
    - `reduction`: `"mean"` (c = 1/N over the whole data set) or `"sum"` (c = 1).

    **Returns:** a `CurvatureOperator` of shape `(P, P)`.

    **Raises:** as `ggn_operator`.

    Citation: Kunstner, Balles & Hennig, "Limitations of the Empirical Fisher
    Approximation for Natural Gradient Descent", arXiv 1905.12558.
    """
    what = "empirical_fisher_operator"
    reduction = check_reduction(reduction, what)
    loss_, flat, unravel, source = _prepare(model_fn, params, data, loss, what)

    def contribution(p, batch, v):
        losses, jvp = _linearized_losses(model_fn, unravel, loss_, p, batch, what)
        (fv,) = jax.linear_transpose(jvp, p)(jvp(v))
        return {"fv": fv, "n": jnp.asarray(losses.shape[0], fv.dtype)}

    def combine(sums, v):
        return sums["fv"] / sums["n"] if reduction == "mean" else sums["fv"]

    return CurvatureOperator(
        flat, source.batch, source.batches, contribution, combine, unravel, what
    )


def gradient_covariance_operator(
    model_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    data: Any,
    *,
    loss: str,
) -> CurvatureOperator:
    r"""The covariance C = (1/N) sum_n (g_n - g)(g_n - g)^T of per-example loss gradients.

    `C v = (1/N) sum_n g_n (g_n . v) - g (g . v)` with `g = (1/N) sum_n g_n` the mean
    gradient, both sums collected in the same pass over the data (one linearisation,
    one JVP and two VJPs per batch); normalised by N (the covariance of the N
    gradients as a distribution, `C = F - g g^T` with F the mean empirical Fisher).
    Symmetric positive semi-definite, rank at most N - 1.

    **Arguments:**

    - `model_fn`, `params`, `data`, `loss`: as `empirical_fisher_operator`.

    **Returns:** a `CurvatureOperator` of shape `(P, P)`.

    **Raises:** as `ggn_operator`.

    Citation: Thomas, Pedregosa, van Merrienboer, Mangazol, Bengio & Le Roux, "On the
    interplay between noise and curvature and its effect on optimization and
    generalization", arXiv 1906.07774.
    """
    what = "gradient_covariance_operator"
    loss_, flat, unravel, source = _prepare(model_fn, params, data, loss, what)

    def contribution(p, batch, v):
        losses, jvp = _linearized_losses(model_fn, unravel, loss_, p, batch, what)
        transpose = jax.linear_transpose(jvp, p)
        (fv,) = transpose(jvp(v))
        (gradient_sum,) = transpose(jnp.ones_like(losses))
        return {"fv": fv, "g": gradient_sum, "n": jnp.asarray(losses.shape[0], fv.dtype)}

    def combine(sums, v):
        mean_gradient = sums["g"] / sums["n"]
        return sums["fv"] / sums["n"] - mean_gradient * jnp.dot(mean_gradient, v)

    return CurvatureOperator(
        flat, source.batch, source.batches, contribution, combine, unravel, what
    )
