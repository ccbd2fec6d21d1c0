"""Numeric settings are checked where they enter: a NaN, infinite, zero or negative
value that would give a NaN, a negative density, a silently converged solve or a zero
penalty is refused with one line naming the setting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jacscope
from jacscope import linalg, lipschitz, parallel, penalties
from jacscope.models import init_mlp, mlp_apply
from spectra import dense_operator

BAD_POSITIVE = [0.0, -1.0, float("nan"), float("inf")]


@pytest.fixture(scope="module")
def symmetric():
    matrix = jax.random.normal(jax.random.key(3), (8, 8), jnp.float64)
    return dense_operator(matrix + matrix.T)


@pytest.mark.parametrize("bandwidth", BAD_POSITIVE)
def test_spectral_density_bandwidth(symmetric, key, bandwidth):
    with pytest.raises(ValueError, match=r"spectral_density: bandwidth must be a finite"):
        linalg.spectral_density(symmetric, key=key, bandwidth=bandwidth)


def test_spectral_density_accepts_a_positive_bandwidth(symmetric, key):
    density = linalg.spectral_density(symmetric, key=key, bandwidth=0.1, num_probes=2)
    assert np.all(np.isfinite(np.asarray(density.density)))
    assert np.all(np.asarray(density.density) >= 0)


@pytest.mark.parametrize("tau", [float("nan"), -0.1, float("inf")])
def test_region_tolerances(tau):
    with pytest.raises(ValueError, match="tau"):
        jacscope.training.region_counts(np.array([0.5, 1.0, 2.0]), taus=(tau,))


def _factors():
    def h(p, xb):
        return xb @ p["B"]

    def g(p, zb):
        return zb @ p["A"]

    params = {"A": jnp.ones((4, 3)), "B": jnp.ones((5, 4))}
    return g, h, params, jnp.ones((2, 5))


@pytest.mark.parametrize("sigma", BAD_POSITIVE)
def test_nuclear_norm_penalty_sigma(key, sigma):
    g, h, params, x = _factors()
    with pytest.raises(ValueError, match="nuclear_norm_penalty: sigma must be a finite"):
        penalties.nuclear_norm_penalty(g, h, params, x, key, method="denoising", sigma=sigma)


@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf")])
def test_lipschitz_upper_eps(eps):
    params = init_mlp(jax.random.key(0), (3, 4, 2), dtype=jnp.float64)
    with pytest.raises(ValueError, match="lipschitz_upper: eps must be a finite number >= 0"):
        lipschitz.lipschitz_upper(params, jnp.zeros(3), eps)


@pytest.mark.parametrize("tol", BAD_POSITIVE)
def test_solve_sequence_tol(tol):
    def step(state, x):
        return jnp.tanh(0.5 * state + x)

    xs = jnp.linspace(-1.0, 1.0, 16)
    with pytest.raises(ValueError, match="tol must be a finite number > 0"):
        parallel.solve_sequence(step, jnp.zeros(()), xs, method="jacobi", tol=tol)


@pytest.mark.parametrize(
    ("start", "message"),
    [
        (np.zeros(3), "zero vector"),
        (np.array([1.0, np.nan, 0.0]), "non-finite"),
        (np.array([1, 0, 0]), "floating-point"),
        (np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), r"zero vector \(row 1 of 2\)"),
    ],
)
def test_spectral_penalty_start_vectors(start, message):
    params = init_mlp(jax.random.key(0), (3, 4, 2), dtype=jnp.float64)
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match=message):
        penalties.jacobian_spectral_penalty(mlp_apply, params, x, jnp.asarray(start))
