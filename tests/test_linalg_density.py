"""spectral_density, fraction_in and logdet against exact spectra."""

import jax
import numpy as np
import pytest

from jacscope import linalg
from spectra import dense_operator, singular_spectrum, with_eigenvalues, with_singular_values

NUM_PROBES = 20
DEPTH = 20


def _singular_density(name, key, shape=(120, 80)):
    values = singular_spectrum(name, min(shape))
    op = dense_operator(with_singular_values(values, shape, seed=6))
    density = linalg.spectral_density(
        op, key=key, kind="singular", num_probes=NUM_PROBES, depth=DEPTH
    )
    return density, values


def _assert_cdf_within_quadrature_bounds(density, exact_values):
    """The exact CDF lies within the Gauss-quadrature bounds, up to 4 probe stderrs.

    For probe l with quadrature CDF G_l(x) = sum_{theta_j <= x} w_j / d, the probe's
    true CDF F_l(x) lies in [G_l(x) - w_below, G_l(x) + w_above] (w_below: weight of
    the last node <= x, w_above: of the first node > x; Chebyshev-Markov-Stieltjes
    inequalities), and E[F_l(x)] is the exact CDF. So the exact CDF must lie in the
    probe-averaged interval widened by 4 standard errors of the probe average.
    """
    nodes, weights = np.asarray(density.nodes), np.asarray(density.weights) / density.dimension
    distinct = np.unique(np.round(exact_values, 12))
    points = (distinct[:-1] + distinct[1:]) / 2  # between eigenvalues, never on one
    for x in points:
        below = nodes <= x
        cdf = np.sum(np.where(below, weights, 0), axis=1)
        last_below = np.where(below.any(axis=1), np.argmax(np.where(below, nodes, -np.inf), 1), 0)
        first_above = np.argmin(np.where(below, np.inf, nodes), axis=1)
        rows = np.arange(len(nodes))
        w_below = np.where(below.any(axis=1), weights[rows, last_below], 0)
        w_above = np.where((~below).any(axis=1), weights[rows, first_above], 0)
        sem = cdf.std(ddof=1) / np.sqrt(len(cdf))
        exact = np.mean(exact_values <= x)
        assert np.mean(cdf - w_below) - 4 * sem - 1e-9 <= exact, (x, exact)
        assert exact <= np.mean(cdf + w_above) + 4 * sem + 1e-9, (x, exact)


@pytest.mark.parametrize("name", ["power_law", "step", "identity_plus_low_rank", "clustered"])
def test_singular_density_matches_the_exact_spectrum(name, key):
    density, values = _singular_density(name, key)
    assert density.dimension == 80 and density.nodes.shape == (NUM_PROBES, DEPTH)
    np.testing.assert_allclose(np.asarray(density.weights).sum(axis=1), 80.0, rtol=1e-10)
    integral = np.trapezoid(np.asarray(density.density), np.asarray(density.grid))
    np.testing.assert_allclose(integral, 80.0, rtol=1e-3)
    _assert_cdf_within_quadrature_bounds(density, values)
    assert density.num_matvecs == NUM_PROBES * 2 * DEPTH


def test_eigen_density_and_wide_operators(key):
    values = np.linspace(-2.0, 3.0, 80) ** 3
    op = dense_operator(with_eigenvalues(values, seed=7))
    density = linalg.spectral_density(op, key=key, kind="eigen", num_probes=NUM_PROBES, depth=DEPTH)
    integral = np.trapezoid(np.asarray(density.density), np.asarray(density.grid))
    np.testing.assert_allclose(integral, 80.0, rtol=1e-3)
    _assert_cdf_within_quadrature_bounds(density, values)
    # A wide operator (m < n) has min(m, n) singular values, found through A A^T.
    wide, singular = _singular_density("step", key, shape=(80, 120))
    assert wide.dimension == 80
    _assert_cdf_within_quadrature_bounds(wide, singular)


def test_bulk_fraction_has_an_honest_stderr(key):
    """Identity plus rank 5: 75 of 80 singular values equal 1.

    With depth above the 6 distinct values the quadrature is exact and each probe's
    fraction is an unbiased estimate, so the truth is within 4 stderr."""
    density, values = _singular_density("identity_plus_low_rank", key)
    fraction = linalg.fraction_in(density, 0.9, 1.1)
    truth = np.mean((values >= 0.9) & (values <= 1.1))
    assert abs(float(fraction.value) - truth) <= 4 * float(fraction.stderr)
    assert 0 < float(fraction.stderr) < 0.05


def test_density_is_reproducible_under_jit_and_checks_its_grid(key):
    op = dense_operator(with_singular_values(singular_spectrum("step", 80), (120, 80)))
    options = {"num_probes": NUM_PROBES, "depth": DEPTH}
    eager = linalg.spectral_density(op, key=key, **options)
    jitted = jax.jit(lambda k: linalg.spectral_density(op, key=k, **options))(key)
    np.testing.assert_allclose(np.asarray(eager.nodes), np.asarray(jitted.nodes), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(eager.density), np.asarray(jitted.density), rtol=1e-10)
    with pytest.raises(ValueError, match=r"grid expects shape \(num_points,\), received shape"):
        linalg.spectral_density(op, key=key, grid=np.zeros((4, 2)), **options)
    with pytest.raises(ValueError, match=r"square operator .* received shape \(120, 80\)"):
        linalg.spectral_density(op, key=key, kind="eigen", **options)
    with pytest.raises(ValueError, match="depth=81 exceeds its maximum 80"):
        linalg.spectral_density(op, key=key, depth=81)


def test_logdet_exact_and_stochastic(key):
    matrix = with_eigenvalues(np.linspace(0.5, 3.0, 80), seed=8)
    exact = np.linalg.slogdet(matrix)[1]
    op = dense_operator(matrix)
    dense = linalg.logdet(op, key=key)
    np.testing.assert_allclose(float(dense.value), exact, rtol=1e-12)
    assert float(dense.stderr) == 0 and dense.num_matvecs == 80
    options = {"num_probes": NUM_PROBES, "depth": DEPTH}
    slq = linalg.logdet(op, key=key, dense_threshold=0, **options)
    assert abs(float(slq.value) - exact) <= 4 * float(slq.stderr)
    assert slq.num_matvecs == NUM_PROBES * DEPTH
    # Positive determinant, but indefinite: the Cholesky-based exact path says NaN.
    indefinite = dense_operator(with_eigenvalues(np.linspace(-1.0, 1.0, 80)))
    assert np.isnan(float(linalg.logdet(indefinite, key=key).value))
