"""Spectral density of an operator by stochastic Lanczos quadrature, and counts from it."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jacscope._validation import check_count, check_number
from jacscope.linalg._checks import check_operator
from jacscope.linalg._estimate import Estimate, mean_estimate
from jacscope.linalg._slq import lanczos_quadrature
from jacscope.operators import AbstractLinearOperator


class SpectralDensity(NamedTuple):
    """A smoothed spectral density and the quadrature rules behind it.

    **Fields:**

    - `grid`: `(num_points,)` abscissae.
    - `density`: `(num_points,)` Gaussian-smoothed density on `grid`; it integrates to
      `dimension` (the number of eigen- or singular values).
    - `nodes`, `weights`: `(num_probes, depth)` Gauss quadrature rule of each probe;
      each row of `weights` sums to `dimension`. Per-probe statistics (see
      `fraction_in`) give standard errors across probes.
    - `dimension`: `n` for eigenvalues, `min(m, n)` for singular values.
    - `num_matvecs`: products with the operator spent.
    """

    grid: jax.Array
    density: jax.Array
    nodes: jax.Array
    weights: jax.Array
    dimension: int
    num_matvecs: int


def spectral_density(
    op: AbstractLinearOperator,
    *,
    key: jax.Array,
    kind: str = "singular",
    num_probes: int = 16,
    depth: int | None = None,
    grid: jax.Array | None = None,
    num_points: int = 512,
    bandwidth: float | None = None,
) -> SpectralDensity:
    r"""Density of the singular values (any operator) or eigenvalues (symmetric ones).

    Stochastic Lanczos quadrature (Ubaru, Chen & Saad; Lin, Saad & Yang for the
    density): each of `num_probes` Rademacher probes yields a `depth`-point Gauss rule
    `(theta_lj, w_lj)` with `sum_j w_lj = dimension`, and

        density(x) = (1 / num_probes) sum_l sum_j w_lj N(x; theta_lj, bandwidth^2),

    a smoothed estimate of `sum_i delta(x - lambda_i)`. Singular values come from
    Golub-Kahan-Lanczos on the smaller of `A A^T`, `A^T A` (never squared
    explicitly), so `dimension = min(m, n)`.

    **Arguments:**

    - `op`: any operator for `kind="singular"`; a square symmetric one for `"eigen"`.
    - `key`: a `jax.random` key.
    - `num_probes`: number of probes (>= 2 to get standard errors).
    - `depth`: Lanczos steps per probe; default `min(dimension, 40)`. Costs
      `num_probes * depth` products (`2 *` for singular values).
    - `grid`: 1-D abscissae; default `num_points` points spanning the nodes with
      `5 bandwidth` margins (so the density integrates to `dimension` on it).
    - `bandwidth`: Gaussian kernel width; default 1% of the node range.

    Works under `jax.jit` (with `kind`, `num_probes`, `depth`, `num_points` static).

    Citation: Ubaru, Chen & Saad, "Fast estimation of tr(f(A)) via stochastic Lanczos
    quadrature", SIAM Journal on Matrix Analysis and Applications, 2017.
    """
    check_operator(op, "spectral_density")
    depth = min(min(op.shape), 40) if depth is None else depth
    quad = lanczos_quadrature(
        op, key=key, kind=kind, num_probes=num_probes, depth=depth, what="spectral_density"
    )
    lo, hi = jnp.min(quad.nodes), jnp.max(quad.nodes)
    if bandwidth is None:
        span = jnp.maximum(hi - lo, 1e-3 * jnp.maximum(jnp.abs(hi), jnp.abs(lo)))
        bandwidth = 0.01 * jnp.where(span > 0, span, 1.0)
    else:
        check_number(bandwidth, "spectral_density: bandwidth")
    if grid is None:
        check_count(num_points, "num_points", "spectral_density", minimum=2)
        grid = jnp.linspace(lo - 5 * bandwidth, hi + 5 * bandwidth, num_points)
    elif jnp.ndim(grid) != 1:
        raise ValueError(
            "spectral_density: grid expects shape (num_points,), received shape "
            f"{tuple(jnp.shape(grid))}"
        )
    grid = jnp.asarray(grid, quad.nodes.dtype)
    z = (grid[:, None] - quad.nodes.reshape(1, -1)) / bandwidth
    kernel = jnp.exp(-0.5 * z**2) / (bandwidth * jnp.sqrt(2 * jnp.pi))
    density = kernel @ quad.weights.reshape(-1) / num_probes
    return SpectralDensity(
        grid, density, quad.nodes, quad.weights, quad.dimension, quad.num_matvecs
    )


def fraction_in(density: SpectralDensity, lo, hi) -> Estimate:
    r"""Fraction of the spectrum in `[lo, hi]`, with a standard error across probes.

    Each probe's quadrature rule gives `f_l = sum_j w_lj [lo <= theta_lj <= hi] / dimension`;
    the estimate is their mean and `stderr = std(f_l, ddof=1) / sqrt(num_probes)`
    (needs two probes or more). The stderr covers the probe randomness, not the
    quadrature error, which vanishes once `depth` exceeds the number of distinct
    eigenvalues and is otherwise at most the weight of the nodes next to `lo` and
    `hi` (Chebyshev-Markov-Stieltjes inequalities). Multiply by `density.dimension`
    for a count, e.g. of singular values in the bulk `[1 - tau, 1 + tau]`.

    Citation: Ubaru, Chen & Saad, "Fast estimation of tr(f(A)) via stochastic Lanczos
    quadrature", SIAM Journal on Matrix Analysis and Applications, 2017.
    """
    inside = (density.nodes >= lo) & (density.nodes <= hi)
    per_probe = jnp.sum(jnp.where(inside, density.weights, 0), axis=1) / density.dimension
    return mean_estimate(per_probe, density.num_matvecs)
