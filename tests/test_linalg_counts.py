"""count_in and chebyshev_count: the intervals they report hold the exact count.

Coverage is measured over 200 fixed keys on operators with known spectra: a reported
95% interval must hold the truth at least 90% of the time, at several budgets, and the
estimators' point values are checked against the quantity they estimate without bias.
"""

import jax
import numpy as np
import pytest

from jacscope import linalg
from jacscope.linalg._counts import _kernel_tail, _window_coefficients, jackson_coefficients
from jacscope.training import region_counts, region_intervals
from spectra import dense_operator, with_singular_values

NUM_KEYS = 200
SIZE = 120


def _prescribed_spectrum():
    """A bulk of exact ones, values just off one, and spread chaotic and stable ends."""
    rng = np.random.default_rng(3)
    return np.sort(
        np.concatenate(
            [
                np.ones(40),
                1 + 0.004 * rng.standard_normal(12),
                rng.uniform(1.15, 4.0, 28),
                rng.uniform(0.0, 0.85, 40),
            ]
        )
    )[::-1]


@pytest.fixture(scope="module")
def problem():
    values = _prescribed_spectrum()
    return dense_operator(with_singular_values(values, (SIZE, SIZE), seed=4)), values


def _coverage(counts, truth):
    return np.mean([c.low <= truth <= c.high for c in counts])


def _chebyshev_counts(op, window, bounds, degree, num_probes):
    """The Chebyshev count of `window` under each of the NUM_KEYS fixed keys."""
    lo, hi = window
    return [
        linalg.chebyshev_count(
            op,
            lo,
            hi,
            key=jax.random.key(seed),
            bounds=bounds,
            degree=degree,
            num_probes=num_probes,
        )
        for seed in range(NUM_KEYS)
    ]


@pytest.mark.parametrize(
    "depth", [8, *(pytest.param(d, marks=pytest.mark.slow) for d in (30, SIZE))]
)
def test_quadrature_intervals_cover_region_counts(problem, depth):
    op, values = problem
    densities = [
        linalg.spectral_density(op, key=jax.random.key(seed), num_probes=6, depth=depth)
        for seed in range(NUM_KEYS)
    ]
    for tau in (0.1, 0.01):
        exact = region_counts(values, [tau])
        for name, (lo, hi) in region_intervals(tau).items():
            counts = [linalg.count_in(d, lo, hi) for d in densities]
            truth = getattr(exact, name)[0]
            assert _coverage(counts, truth) >= 0.9, (depth, tau, name)
            assert all(c.low <= c.value <= c.high for c in counts)
    if depth == SIZE:  # full depth: the rules are exact, only the probe error is left
        counts = [linalg.count_in(d, 0.9, 1.1) for d in densities]
        assert np.median([c.high - c.low for c in counts]) < 0.5 * SIZE


def test_quadrature_interval_is_not_the_point_estimate_alone():
    """Values within rounding of a bin edge: every probe puts the mass on one side
    (stderr 0), the exact count is on the other; the interval still holds it."""
    values = np.concatenate([np.full(10, 2.0), np.full(10, 1.0)])
    op = dense_operator(with_singular_values(values, (20, 20), seed=1))
    density = linalg.spectral_density(op, key=jax.random.key(0), num_probes=4, depth=20)
    count = linalg.count_in(density, 2.0 + 1e-12, 3.0)  # just above the nodes at 2
    assert count.value == pytest.approx(0.0, abs=1e-9) and count.stderr < 1e-9
    assert count.high >= 10  # the nodes at 2 lie within rounding of the edge


def test_jackson_filter_is_a_positive_smoothing_of_the_indicator():
    degree = 60
    x = np.cos(np.linspace(0, np.pi, 2001))
    coefficients = jackson_coefficients(degree) * _window_coefficients(-0.3, 0.4, degree)
    p = np.polynomial.chebyshev.chebval(x, coefficients)
    assert p.min() >= -1e-12 and p.max() <= 1 + 1e-12
    assert abs(np.polynomial.chebyshev.chebval(0.05, coefficients) - 1) < 0.02
    tails = [_kernel_tail(d, degree) for d in (0.05, 0.1, 0.2, 0.4)]
    assert all(a > b for a, b in zip(tails, tails[1:], strict=False)) and tails[-1] < 1e-3
    # doubling the degree halves the resolution (up to the n^(1/3) factor)
    ratio = linalg.chebyshev_resolution(400, 1000) / linalg.chebyshev_resolution(200, 1000)
    assert 0.45 < ratio < 0.55


def test_chebyshev_estimate_is_unbiased_for_the_filtered_trace(problem):
    """The mean over probes estimates tr p(A^T A) exactly, p the damped filter."""
    op, values = problem
    degree, bounds, (lo, hi) = 64, (0.0, 16.5), (0.9, 1.1)
    centre, half = 8.25, 8.25
    coefficients = jackson_coefficients(degree) * _window_coefficients(
        (lo**2 - centre) / half, (hi**2 - centre) / half, degree
    )
    filtered = np.polynomial.chebyshev.chebval((values**2 - centre) / half, coefficients).sum()
    estimates = [
        linalg.chebyshev_count(
            op, lo, hi, key=jax.random.key(seed), bounds=bounds, degree=degree, num_probes=4
        )
        for seed in range(60)
    ]
    mean = np.mean([e.value for e in estimates])
    stderr = np.std([e.value for e in estimates], ddof=1) / np.sqrt(len(estimates))
    assert abs(mean - filtered) <= 4 * stderr
    # the reported stderr (of a 4-probe mean) matches the spread of those means
    reported = np.mean([e.stderr for e in estimates])
    assert 0.5 < reported / (stderr * np.sqrt(len(estimates))) < 1.5


@pytest.mark.parametrize("degree", [64, pytest.param(512, marks=pytest.mark.slow)])
def test_chebyshev_intervals_cover_region_counts(problem, degree):
    op, values = problem
    for tau in (0.1, 0.01):
        lo, hi = region_intervals(tau)["bulk"]
        truth = region_counts(values, [tau]).bulk[0]
        counts = _chebyshev_counts(op, (lo, hi), (0.0, 16.5), degree, num_probes=6)
        assert _coverage(counts, truth) >= 0.9, (degree, tau)


@pytest.mark.slow
def test_chebyshev_intervals_cover_at_a_resolving_budget(problem):
    """32 probes at the degree `chebyshev_degree` asks for a 0.02 margin: the bulk
    window at tau = 0.1 (no value within 0.05 of its edges) is resolved to a few
    counts, and the 95% intervals still hold the exact count >= 90% of the time."""
    op, values = problem
    lo, hi = region_intervals(0.1)["bulk"]
    truth = region_counts(values, [0.1]).bulk[0]
    degree = linalg.chebyshev_degree(lo**2, hi**2, (0.0, 16.5), 2 * 0.02 * lo, SIZE)
    counts = _chebyshev_counts(op, (lo, hi), (0.0, 16.5), degree, num_probes=32)
    assert _coverage(counts, truth) >= 0.9, degree
    assert np.median([c.high - c.low for c in counts]) < 0.1 * SIZE, degree


def test_the_degree_rule_resolves_a_window_with_a_clear_margin(problem):
    """No singular value lies within 0.04 of 0.9 or 1.1: at the degree that
    `chebyshev_degree` asks for that margin (in squared units), the bulk count at
    tau = 0.1 is resolved to a few counts, and the interval holds the truth."""
    op, values = problem
    lo, hi = region_intervals(0.1)["bulk"]
    assert np.min(np.abs(values - lo)) > 0.04 and np.min(np.abs(values - hi)) > 0.04
    degree = linalg.chebyshev_degree(lo**2, hi**2, (0.0, 16.5), 2 * 0.04 * lo, SIZE)
    count = linalg.chebyshev_count(
        op, lo, hi, key=jax.random.key(0), bounds=(0.0, 16.5), degree=degree, num_probes=32
    )
    truth = region_counts(values, [0.1]).bulk[0]
    assert count.low <= truth <= count.high
    assert count.resolved(0.1 * SIZE), (degree, count)


def test_chebyshev_degree_meets_its_resolution():
    def widest(degree):  # half-width of the widest edge neighbourhood, in spectrum units
        delta = linalg.chebyshev_resolution(degree, 500)
        thetas = np.arccos((np.array([0.81, 1.21]) - 8.25) / 8.25)
        return np.max(np.cos(thetas - delta) - np.cos(thetas + delta)) * 8.25 / 2

    for resolution in (0.2, 0.02, 0.002):
        degree = linalg.chebyshev_degree(0.81, 1.21, (0.0, 16.5), resolution, 500)
        assert widest(degree) <= resolution < widest(degree - 1)


def test_bad_input_is_refused(problem):
    op, _ = problem
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="spectrum leaves bounds"):
        linalg.chebyshev_count(op, 0.9, 1.1, key=key, bounds=(0.0, 4.0), degree=32)
    with pytest.raises(ValueError, match="lo <= hi"):
        linalg.chebyshev_count(op, 1.1, 0.9, key=key, bounds=(0.0, 16.5), degree=32)
    with pytest.raises(ValueError, match="bounds must be finite"):
        linalg.chebyshev_count(op, 0.9, 1.1, key=key, bounds=(0.0, np.inf), degree=32)
    density = linalg.spectral_density(op, key=key, num_probes=2, depth=4)
    with pytest.raises(ValueError, match="confidence"):
        linalg.count_in(density, 0.0, 1.0, confidence=1.0)
    with pytest.raises(ValueError, match="lo <= hi"):
        linalg.count_in(density, np.nan, 1.0)


@pytest.fixture(scope="module")
def training_problem():
    """The exact training Jacobian of the paper's setting at P = 1,060 (digits, a
    64-14-10 MLP, 5 epochs of SGD with momentum), in float64, and its singular values."""
    from jacscope.training import TrainingConfig, build_run, training_jacobian

    run = build_run(TrainingConfig(hidden=14, epochs=5, dtype="float64")).run
    jac = np.asarray(training_jacobian(run))
    return dense_operator(jac), np.linalg.svd(jac, compute_uv=False)


@pytest.mark.slow
@pytest.mark.parametrize("budget", [(6, 20), (6, 40)])
def test_intervals_cover_the_regions_of_an_exact_training_jacobian(training_problem, budget):
    """SLQ at two depths and the Chebyshev estimator at two degrees, 200 keys each: the
    95% intervals of every region at tau = 0.1 and 0.01 hold the exact count >= 90%."""
    op, values = training_problem
    num_probes, depth = budget
    top = linalg.spectral_norm(op, key=jax.random.key(1))
    bounds = (0.0, 1.05 * float(top.value + top.residual) ** 2)
    degree = 4 * depth
    densities = [
        linalg.spectral_density(op, key=jax.random.key(seed), num_probes=num_probes, depth=depth)
        for seed in range(NUM_KEYS)
    ]
    for tau in (0.1, 0.01):
        exact = region_counts(values, [tau])
        for name, (lo, hi) in region_intervals(tau).items():
            truth = getattr(exact, name)[0]
            slq = [linalg.count_in(d, lo, hi) for d in densities]
            assert _coverage(slq, truth) >= 0.9, ("slq", depth, tau, name)
            if name != "bulk":
                continue
            chebyshev = _chebyshev_counts(op, (lo, hi), bounds, degree, num_probes)
            assert _coverage(chebyshev, truth) >= 0.9, ("chebyshev", degree, tau)


def test_chebyshev_degree_of_a_fine_window_on_a_large_operator():
    """tau = 0.001 on a million singular values up to 15: the degree is large but
    finite, and it grows as the resolution shrinks (a cost to report, not an error)."""
    bounds = (0.0, 15.5**2)
    degrees = [
        linalg.chebyshev_degree((1 - tau) ** 2, (1 + tau) ** 2, bounds, tau / 4, 1_126_410)
        for tau in (0.1, 0.01, 0.001)
    ]
    assert degrees == sorted(degrees) and degrees[-1] > 2**22
    with pytest.raises(ValueError, match="needs degree"):
        linalg.chebyshev_degree(0.81, 1.21, bounds, 0.0, 100)
