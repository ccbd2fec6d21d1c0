"""Propagating a Gaussian through a network by local linearisation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import jax
import jax.numpy as jnp

from jacscope._validation import check_finite
from jacscope.propagation._distributions import Gaussian
from jacscope.propagation._layers import (
    as_layers,
    check_location,
    check_method,
    compose,
    linearise,
)


def _check_cov(cov, n: int, what: str) -> jax.Array:
    cov = jnp.asarray(cov)
    if cov.shape not in ((n,), (n, n)):
        raise ValueError(
            f"{what}: cov must be a matrix ({n}, {n}) or a vector of variances ({n},), "
            f"received shape {cov.shape}"
        )
    check_finite(cov, f"{what}: cov")
    return cov


def propagate_gaussian(
    f: Callable | Sequence[Callable],
    mean: jax.Array,
    cov: jax.Array,
    *,
    method: Literal["full", "marginal"] = "full",
) -> Gaussian:
    r"""The distribution of `f(x)` for `x ~ N(mean, cov)`, by local linearisation.

    Each non-linearity is replaced by its first-order expansion at the propagated
    mean, so that affine maps carry Gaussians to Gaussians exactly (stable
    distribution propagation, Petersen et al. 2024). For ReLU this replacement is
    the best Gaussian approximation in total variation: with X ~ N(mu, s^2), the
    linearisation N(relu(mu), (1[mu > 0] s)^2) is at distance Phi(-|mu| / s) from
    relu(X), and no (possibly degenerate) Gaussian is closer.

    - `method="full"`: one linearisation of the whole network at `mean`,
      `N(f(mean), J cov J^T)` with `J = df/dx(mean)`, correlations included.
    - `method="marginal"`: layer by layer, keeping only variances between layers:
      `mu_{k+1} = f_k(mu_k)`, `var_{k+1} = (J_k o J_k) var_k` (J_k at mu_k, `o`
      the entrywise product). Cheaper and memory-light, it ignores the correlations
      that each layer creates; the returned `cov` is diagonal.

    Both agree when `f` is a single layer and `cov` is diagonal, and for any network
    whose layers act coordinate-wise.

    **Arguments:**

    - `f`: a function of a vector, or a sequence of layer functions applied in turn
      (each output is flattened before the next layer); the marginal form
      linearises each entry separately, so pass an MLP as its layers (an affine map
      followed by its activation is one layer, or two).
    - `mean`: `(n,)`.
    - `cov`: `(n, n)` covariance, or `(n,)` variances of independent components.
    - `method`: `"full"` or `"marginal"`.

    **Returns:** `Gaussian(mean, cov)` of the output, shapes `(m,)` and `(m, m)`.

    Citation: Petersen, Mishra, Kuehne, Borgelt, Deussen & Yurochkin, "Uncertainty
    Quantification via Stable Distribution Propagation", ICLR, 2024.
    """
    what = "propagate_gaussian"
    layers = as_layers(f, what)
    method = check_method(method, what)
    mean = check_location(mean, "mean", what)
    cov = _check_cov(cov, mean.shape[0], what)
    if method == "full":
        out, jac = linearise(compose(layers), mean)
        if cov.ndim == 1:
            out_cov = (jac * cov) @ jac.T
        else:
            out_cov = jac @ cov @ jac.T
        return Gaussian(out, 0.5 * (out_cov + out_cov.T))
    var = jnp.diagonal(cov) if cov.ndim == 2 else cov
    for layer in layers:
        mean, jac = linearise(layer, mean)
        var = (jac**2) @ var
    return Gaussian(mean, jnp.diag(var))
