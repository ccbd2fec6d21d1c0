"""How many eigen- or singular values lie in an interval, with an interval that holds the truth.

Two estimators share one result type, `IntervalCount`: a point estimate, its probe
standard error, and `[low, high]`, an interval at a stated confidence that holds
both the probe randomness and the deterministic error of the method (the
quadrature error of Lanczos, the truncation and damping error of a polynomial).

- `count_in` reads a count off the quadrature rules of `spectral_density`
  (stochastic Lanczos quadrature). Each probe's Gauss rule brackets the mass of
  its own spectral measure in `[lo, hi]` by the Chebyshev-Markov-Stieltjes
  inequalities; the probe means of the two bounds, widened by Student-t
  quantiles of their spreads, give the interval.
- `chebyshev_count` expands the interval's indicator in Chebyshev polynomials with
  Jackson damping and applies it with Rademacher probes (Di Napoli, Polizzi & Saad
  2016). The damped expansion is a positive kernel smoothing of the indicator, so
  it errs only on values near the edges; the same probes count those, which gives
  the interval. `chebyshev_resolution` and `chebyshev_degree` state how the
  resolved distance from the edges shrinks with the degree.

Citation: Di Napoli, Polizzi & Saad, "Efficient estimation of eigenvalue counts in an
interval", Numerical Linear Algebra with Applications, 2016.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jacscope._validation import check_count
from jacscope.linalg._checks import check_operator, check_square
from jacscope.operators import AbstractLinearOperator

_KINDS = ("singular", "eigen")


class IntervalCount(NamedTuple):
    """The number of eigen- or singular values in an interval, estimated.

    **Fields:**

    - `value`: the point estimate of the count.
    - `stderr`: its standard error over the probes (probe randomness only).
    - `low`, `high`: an interval that holds the exact count with probability at
      least `confidence` over the probes, covering the method's deterministic error
      too. `value` lies in it.
    - `confidence`: the nominal coverage of `[low, high]`.
    - `num_matvecs`: products with the operator spent.
    """

    value: float
    stderr: float
    low: float
    high: float
    confidence: float
    num_matvecs: int

    def resolved(self, half_width: float) -> bool:
        """Whether the interval is at most `2 half_width` wide (counts, not fractions)."""
        return (self.high - self.low) <= 2 * half_width


def _check_confidence(confidence, what):
    if not (isinstance(confidence, float | int) and 0 < confidence < 1):
        raise ValueError(f"{what}: confidence must lie in (0, 1), received {confidence!r}")


def _check_window(lo, hi, what):
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise ValueError(f"{what}: expects lo <= hi (not NaN), received [{lo!r}, {hi!r}]")


def _quantile(level, num):
    """Student-t quantile at `level` with `num - 1` degrees of freedom."""
    from scipy import special  # imported here: 12 MiB that only counts need

    return float(special.stdtrit(num - 1, level))


def count_in(density, lo: float, hi: float, *, confidence: float = 0.95) -> IntervalCount:
    r"""The count of values in `[lo, hi]` from the quadrature rules of `spectral_density`.

    Probe l carries a Gauss rule `(theta_lj, w_lj)` of its spectral measure
    `mu_l = sum_i (z_l^T q_i)^2 delta(lambda_i)`, whose mean over probes is the
    spectrum. The Chebyshev-Markov-Stieltjes inequalities bound `mu_l([lo, hi])`
    between `L_l`, the weight of the nodes inside once the innermost node at each end
    is dropped, and `U_l`, the weight inside plus the nearest node outside each end.
    Hence, with `t` the Student-t quantile at `(1 + confidence) / 2`,

        low = mean(L) - t stderr(L),    high = mean(U) + t stderr(U),

    clipped to `[0, dimension]`, holds the exact count with probability at least
    `confidence` (one tail each side). The point estimate is the SLQ value, the mean
    of the weight inside, with its probe standard error. Once `depth` exceeds the
    number of distinct values the rules are exact and the interval shrinks to the
    probe error alone plus the weight of the nodes next to the edges.

    **Arguments:** `density` (a `SpectralDensity`, two probes or more), the closed
    interval `lo <= hi` (infinite ends allowed), `confidence` in (0, 1).

    Citation: Ubaru, Chen & Saad, "Fast estimation of tr(f(A)) via stochastic Lanczos
    quadrature", SIAM Journal on Matrix Analysis and Applications, 2017.
    """
    _check_window(lo, hi, "count_in")
    _check_confidence(confidence, "count_in")
    nodes = np.asarray(density.nodes, dtype=np.float64)
    weights = np.asarray(density.weights, dtype=np.float64)
    num_probes = nodes.shape[0]
    if num_probes < 2:
        raise ValueError(f"count_in needs two probes or more, received {num_probes}")
    dim = density.dimension
    inside_mass, lower, upper = [], [], []
    for probe_nodes, probe_weights in zip(nodes, weights, strict=True):
        # the nodes of blocks after a restart carry zero weight: not part of the rule
        keep = probe_weights > np.finfo(np.float64).eps * dim
        order = np.argsort(probe_nodes[keep])
        x, w = probe_nodes[keep][order], probe_weights[keep][order]
        inside = np.flatnonzero((x >= lo) & (x <= hi))
        first = np.searchsorted(x, lo, side="left") - 1  # nearest node below lo
        last = np.searchsorted(x, hi, side="right")  # nearest node above hi
        inside_mass.append(w[inside].sum())
        upper.append(w[max(first, 0) : min(last, x.size - 1) + 1].sum())
        lower.append(w[inside[1:-1]].sum() if inside.size > 2 else 0.0)
    inside_mass, lower, upper = (np.asarray(a) for a in (inside_mass, lower, upper))
    t = _quantile((1 + confidence) / 2, num_probes)
    root = math.sqrt(num_probes)
    low = lower.mean() - t * lower.std(ddof=1) / root
    high = upper.mean() + t * upper.std(ddof=1) / root
    return IntervalCount(
        value=float(inside_mass.mean()),
        stderr=float(inside_mass.std(ddof=1) / root),
        low=float(max(low, 0.0)),
        high=float(min(high, dim)),
        confidence=float(confidence),
        num_matvecs=int(density.num_matvecs),
    )


def jackson_coefficients(degree: int) -> np.ndarray:
    """Jackson damping factors `g_0..g_m` (Di Napoli, Polizzi & Saad 2016, eq. 3.9)."""
    j = np.arange(degree + 1)
    a = np.pi / (degree + 2)
    return (
        (1 - j / (degree + 2)) * np.sin(a) * np.cos(j * a)
        + np.cos(a) * np.sin(j * a) / (degree + 2)
    ) / np.sin(a)


def _window_coefficients(alpha: float, beta: float, degree: int) -> np.ndarray:
    """Chebyshev coefficients of the indicator of `[alpha, beta]` within [-1, 1]."""
    t_a, t_b = np.arccos(np.clip(alpha, -1, 1)), np.arccos(np.clip(beta, -1, 1))
    j = np.arange(1, degree + 1)
    rest = 2 * (np.sin(j * t_a) - np.sin(j * t_b)) / (np.pi * j)
    return np.concatenate([[(t_a - t_b) / np.pi], rest])


def _kernel_tail(delta: float, degree: int) -> float:
    """Mass of the Jackson kernel of `degree` beyond angular distance `delta`."""
    g = jackson_coefficients(degree)[1:]
    j = np.arange(1, degree + 1)
    return float(max(1 - (delta + 2 * np.sum(g * np.sin(j * delta) / j)) / np.pi, 0.0))


def chebyshev_resolution(degree: int, dimension: int) -> float:
    """The angular resolution `delta` of the degree-m Jackson-damped expansion.

    With `x = cos(theta)` on the scaled spectrum, a value whose angle is at least
    `delta` from both edges of the window is counted with an error of at most
    `tail(delta)`, the Jackson kernel's mass beyond `delta`; `delta` is the smallest
    angle with `dimension * tail(delta) <= 1/4`, so that all such values together
    err by a quarter of one count. The kernel's tail decays like `(m delta)^-3`, so
    `delta` shrinks like `dimension^(1/3) / m`: doubling the degree halves it.

    Up to degree 1024 `delta` is found by bisection on the exact tail; beyond, the
    kernel is a function of `(m + 2) psi` to within a fraction of a percent, and
    `delta(1024) * 1026 / (m + 2)` is used (slightly larger than the bisected value:
    measured 0.5% at m = 2048 and n = 10^6, which errs on the safe side).
    `chebyshev_count` adds the exact tail at the `delta` it uses either way.

    Citation: Di Napoli, Polizzi & Saad, "Efficient estimation of eigenvalue counts in an
    interval", Numerical Linear Algebra with Applications, 2016.
    """
    check_count(degree, "degree", "chebyshev_resolution", minimum=1)
    check_count(dimension, "dimension", "chebyshev_resolution", minimum=1)
    if degree > _EXACT_DEGREE:
        return _bisected_resolution(_EXACT_DEGREE, dimension) * (_EXACT_DEGREE + 2) / (degree + 2)
    return _bisected_resolution(degree, dimension)


_EXACT_DEGREE = 1024


@functools.lru_cache(maxsize=256)
def _bisected_resolution(degree: int, dimension: int) -> float:
    lo, hi = 0.0, np.pi
    for _ in range(50):  # the tail decreases in delta: bisect
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if dimension * _kernel_tail(mid, degree) <= 0.25 else (mid, hi)
    return hi


def _edge_neighbourhoods(alpha: float, beta: float, delta: float) -> list[tuple[float, float]]:
    """The x-intervals within angle `delta` of the window's edges inside (-1, 1)."""
    windows = []
    for edge in (alpha, beta):
        if -1 < edge < 1:
            theta = np.arccos(edge)
            windows.append(
                (float(np.cos(min(theta + delta, np.pi))), float(np.cos(max(theta - delta, 0.0))))
            )
    return windows


def chebyshev_degree(
    lo: float, hi: float, bounds: tuple[float, float], resolution: float, dimension: int
) -> int:
    """The smallest degree whose edge neighbourhoods are at most `resolution` wide.

    In the units of the spectrum (`bounds` = `(a, b)` holds it, `[lo, hi]` the window;
    for singular values pass squared values, as `chebyshev_count` does), values farther
    than `resolution` from `lo` and `hi` are then counted to within a quarter in all
    (`chebyshev_resolution`). A `chebyshev_count` of that degree costs `degree`
    products per probe (`2 degree` for singular values).

    Citation: Di Napoli, Polizzi & Saad, "Efficient estimation of eigenvalue counts in an
    interval", Numerical Linear Algebra with Applications, 2016.
    """
    a, b = bounds
    centre, half = (a + b) / 2, (b - a) / 2
    alpha, beta = (lo - centre) / half, (hi - centre) / half

    def widest(degree):
        delta = chebyshev_resolution(degree, dimension)
        sides = _edge_neighbourhoods(alpha, beta, delta)
        return max(((r - s) * half / 2 for s, r in sides), default=0.0)

    degree = 8
    while widest(degree) > resolution:
        degree *= 2
        if degree > 2**40:  # only a resolution of 0 or below the float spacing gets here
            raise ValueError(f"chebyshev_degree: resolution {resolution!r} needs degree > 2^40")
    low_degree = degree // 2
    while degree - low_degree > 1:  # bisect between the last two doublings
        mid = (degree + low_degree) // 2
        low_degree, degree = (mid, degree) if widest(mid) > resolution else (low_degree, mid)
    return degree


@eqx.filter_jit
def _chebyshev_moments(op, kind, degree, num_probes, centre, half, key):
    """`z_l^T T_j(B) z_l` for j = 0..degree, B = (M - centre) / half, per probe."""
    if kind == "eigen":
        dim = op.shape[0]
        matvec = op._mv
    else:
        gram_op = op if op.shape[0] <= op.shape[1] else op.T
        dim = gram_op.shape[0]
        matvec = lambda u: gram_op._mv(gram_op._rmv(u))
    dtype = jnp.result_type(op.dtype)
    scaled = lambda v: (matvec(v) - centre * v) / half

    def probe_moments(probe_key):
        z = jax.random.rademacher(probe_key, (dim,), dtype)
        t1 = scaled(z)

        def step(carry, _):
            previous, current = carry
            following = 2 * scaled(current) - previous
            return (current, following), jnp.vdot(z, following)

        _, rest = jax.lax.scan(step, (z, t1), None, length=degree - 1)
        return jnp.concatenate([jnp.stack([jnp.vdot(z, z), jnp.vdot(z, t1)]), rest])

    return jax.lax.map(probe_moments, jax.random.split(key, num_probes))


def chebyshev_count(
    op: AbstractLinearOperator,
    lo: float,
    hi: float,
    *,
    key: jax.Array,
    bounds: tuple[float, float],
    degree: int,
    num_probes: int = 16,
    kind: str = "singular",
    confidence: float = 0.95,
) -> IntervalCount:
    r"""Count the eigenvalues (or singular values) in `[lo, hi]` by a damped Chebyshev filter.

    With `M` the symmetric operator (`kind="eigen"`) or the smaller Gram matrix
    `A A^T` / `A^T A` (`kind="singular"`, the window squared), its spectrum inside
    `bounds = (a, b)` is mapped to [-1, 1]; the indicator of the window has Chebyshev
    coefficients `c_j`, and with Jackson factors `g_j`
    (Di Napoli, Polizzi & Saad 2016)

        p(x) = sum_{j <= m} g_j c_j T_j(x),
        count ~ tr p(M) ~ mean_l sum_j g_j c_j z_l^T T_j(M) z_l

    for Rademacher probes `z_l`, each costing `m` products with `M`. In the angle
    `theta = arccos x`, `p` is the indicator convolved with the Jackson kernel, a
    non-negative kernel of unit mass, so `0 <= p <= 1` and `p` is within
    `tail(delta)` of the indicator at every value whose angle is `delta =
    chebyshev_resolution(m, n)` or more from the edges. The values nearer the edges,
    `n_E` of them, are counted by the same moments with the indicator of their
    neighbourhood widened by `delta` (a filter that is at least `1 - tail` on them
    and non-negative elsewhere). Hence

        |count - tr p(M)| <= n_E + n tail(delta) <= n_E + 1/4,

    and `[low, high]` is `tr p(M) -+ (t stderr + n_E^+ + 1/4)`, with `n_E^+` the upper
    confidence bound of the edge count; the two probe errors share `1 - confidence`.
    The interval is narrow when few values lie within `delta` of the edges; raise
    `degree` (`chebyshev_degree` says how far) to shrink `delta`.

    **Arguments:**

    - `op`: any operator (`kind="singular"`), or a symmetric one (`"eigen"`).
    - `lo`, `hi`: the window (singular values: `0 <= lo <= hi`).
    - `key`: a `jax.random` key.
    - `bounds`: `(a, b)` holding every eigenvalue of `M` (for singular values, of
      `A^T A`: `(0, b)` with `b >= ||A||_2^2`). A bound that does not hold is detected
      (a moment exceeds `||z||^2`) and refused.
    - `degree`: `m >= 2`; `num_probes >= 2`; `confidence` in (0, 1).

    Citation: Di Napoli, Polizzi & Saad, "Efficient estimation of eigenvalue counts in an
    interval", Numerical Linear Algebra with Applications, 2016.
    """
    what = "chebyshev_count"
    if kind not in _KINDS:
        raise ValueError(f"{what}: kind must be one of {_KINDS}, received {kind!r}")
    check_square(op, what) if kind == "eigen" else check_operator(op, what)
    check_count(degree, "degree", what, minimum=2)
    check_count(num_probes, "num_probes", what, minimum=2)
    _check_window(lo, hi, what)
    _check_confidence(confidence, what)
    a, b = (float(x) for x in bounds)
    if not (np.isfinite(a) and np.isfinite(b) and a < b):
        raise ValueError(f"{what}: bounds must be finite with a < b, received {bounds!r}")
    if kind == "singular":
        if lo < 0:
            raise ValueError(f"{what}: singular values are >= 0; received lo={lo!r}")
        lo, hi = lo**2, hi**2
    dim = op.shape[0] if kind == "eigen" else min(op.shape)
    centre, half = (a + b) / 2, (b - a) / 2
    moments = np.asarray(
        _chebyshev_moments(op, kind, degree, num_probes, centre, half, key), dtype=np.float64
    )
    if np.any(np.abs(moments) > dim * (1 + 1e-6)):
        raise ValueError(
            f"{what}: the spectrum leaves bounds={bounds!r} (a Chebyshev moment exceeds "
            f"||z||^2 = {dim}); pass bounds that hold every eigenvalue"
        )
    alpha, beta = (max(min((x - centre) / half, 1.0), -1.0) for x in (lo, hi))
    damping = jackson_coefficients(degree)
    delta = chebyshev_resolution(degree, dim)
    tail = _kernel_tail(delta, degree)

    def per_probe(x_lo, x_hi):
        return moments @ (damping * _window_coefficients(x_lo, x_hi, degree))

    counts = per_probe(alpha, beta)
    edges = np.zeros(num_probes)
    for near_lo, near_hi in _edge_neighbourhoods(alpha, beta, delta):  # widened by delta
        theta_lo, theta_hi = np.arccos(near_lo), np.arccos(near_hi)
        edges += per_probe(np.cos(min(theta_lo + delta, np.pi)), np.cos(max(theta_hi - delta, 0.0)))
    edges /= 1 - tail
    root = math.sqrt(num_probes)
    t = _quantile(1 - (1 - confidence) / 4, num_probes)
    value, stderr = counts.mean(), counts.std(ddof=1) / root
    edge_bound = max(edges.mean() + t * edges.std(ddof=1) / root, 0.0) if edges.any() else 0.0
    slack = t * stderr + edge_bound + dim * tail
    per_product = 1 if kind == "eigen" else 2
    return IntervalCount(
        value=float(value),
        stderr=float(stderr),
        low=float(max(value - slack, 0.0)),
        high=float(min(value + slack, dim)),
        confidence=float(confidence),
        num_matvecs=int(num_probes * degree * per_product),
    )
