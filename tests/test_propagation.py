"""Distribution propagation: the full form against Monte Carlo at small noise (means and
covariances, medians and scales, within 4 standard errors), the marginal form against
its layer-wise definition, and the total-variation optimality of linearising a ReLU."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jacscope.models import init_mlp
from jacscope.propagation import propagate_cauchy, propagate_gaussian

NUM_MC = 20000


@pytest.fixture(scope="module")
def network():
    """A tanh MLP 4 -> 8 -> 8 -> 3 as a tuple of layers (affine + activation each)."""
    params = init_mlp(jax.random.key(0), (4, 8, 8, 3), dtype=jnp.float64)

    def layer(p, last):
        return lambda h: h @ p["w"] + p["b"] if last else jnp.tanh(h @ p["w"] + p["b"])

    layers = tuple(layer(p, i == len(params) - 1) for i, p in enumerate(params))
    mean = jax.random.normal(jax.random.key(1), (4,), jnp.float64)
    return layers, mean


def run(layers, x):
    for layer in layers:
        x = layer(x)
    return x


def test_gaussian_full_form_matches_monte_carlo(network):
    layers, mean = network
    rng = np.random.default_rng(0)
    factor = 1e-3 * rng.normal(size=(4, 4))
    cov = factor @ factor.T + 1e-7 * np.eye(4)
    xs = rng.multivariate_normal(np.asarray(mean), cov, NUM_MC)
    ys = np.asarray(jax.jit(jax.vmap(lambda x: run(layers, x)))(xs))
    mc_mean, mc_cov = ys.mean(axis=0), np.cov(ys, rowvar=False)
    result, marginal = jax.jit(
        lambda c: [propagate_gaussian(layers, mean, c, method=m) for m in ("full", "marginal")]
    )(cov)
    # standard errors of a sample mean and of sample covariances of (near-)Gaussian data
    var = np.diag(mc_cov)
    assert np.all(np.abs(mc_mean - result.mean) < 4 * np.sqrt(var / NUM_MC))
    cov_se = np.sqrt((np.outer(var, var) + mc_cov**2) / NUM_MC)
    assert np.all(np.abs(mc_cov - result.cov) < 4 * cov_se)
    # the marginal form ignores the correlations the layers create: the same test rejects it
    assert np.any(np.abs(np.diag(mc_cov) - np.diag(marginal.cov)) > 4 * np.diag(cov_se))


def test_gaussian_marginal_form_is_the_layerwise_recursion(network):
    layers, mean = network
    variances = jnp.asarray([1e-2, 2e-2, 5e-3, 1e-3])

    @jax.jit
    def compute(mean, variances):
        mu, var = mean, variances
        for layer in layers:  # reference: dense Jacobian of each layer by jax.jacfwd
            mu, var = layer(mu), (jax.jacfwd(layer)(mu) ** 2) @ var
        return (
            propagate_gaussian(layers, mean, variances, method="marginal"),
            (mu, var),
            propagate_gaussian(layers[0], mean, variances),
            propagate_gaussian(layers[:1], mean, jnp.diag(variances), method="marginal"),
        )

    result, (mu, var), full, single = compute(mean, variances)
    np.testing.assert_allclose(result.mean, mu, rtol=1e-12)
    np.testing.assert_allclose(result.cov, np.diag(var), rtol=1e-12, atol=1e-300)
    # one layer, independent inputs: full and marginal agree on the variances
    np.testing.assert_allclose(np.diag(full.cov), np.diag(single.cov), rtol=1e-12)


def test_coordinatewise_layers_make_both_forms_agree():
    layers = (jnp.tanh, lambda h: 2.0 * h + 1.0, jax.nn.softplus)
    mean = jnp.asarray([0.3, -1.2, 2.0])
    variances = jnp.asarray([0.1, 0.2, 0.05])
    full, marginal, cauchy_full, cauchy_marginal = jax.jit(
        lambda m, v: [
            propagate(layers, m, v, method=method)
            for propagate, v in ((propagate_gaussian, v), (propagate_cauchy, jnp.sqrt(v)))
            for method in ("full", "marginal")
        ]
    )(mean, variances)
    np.testing.assert_allclose(full.cov, marginal.cov, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(cauchy_full.scale, cauchy_marginal.scale, rtol=1e-12)


def test_cauchy_full_form_matches_monte_carlo(network):
    layers, mean = network
    scale = jnp.asarray([1.0, 2.0, 0.5, 1.5]) * 1e-4
    zs = np.random.default_rng(1).standard_cauchy((NUM_MC, 4))
    ys = np.asarray(jax.jit(jax.vmap(lambda z: run(layers, mean + scale * z)))(zs))
    q1, median, q3 = np.percentile(ys, [25, 50, 75], axis=0)
    mixing = jnp.diag(scale)[:, :3] + 1e-4
    result, mixed, marginal, jac = jax.jit(
        lambda: (
            propagate_cauchy(layers, mean, scale),
            propagate_cauchy(layers, mean, mixing),
            propagate_cauchy(layers, mean, scale, method="marginal"),
            jax.jacfwd(lambda x: run(layers, x))(mean),
        )
    )()
    # asymptotic standard errors of the median and of half the IQR of a Cauchy sample:
    # both pi * scale / (2 sqrt(N))
    se = math.pi * np.asarray(result.scale) / (2 * math.sqrt(NUM_MC))
    assert np.all(np.abs(median - result.loc) < 4 * se)
    assert np.all(np.abs((q3 - q1) / 2 - result.scale) < 4 * se)
    # a mixing matrix S: x = loc + S z
    np.testing.assert_allclose(mixed.scale, np.abs(jac @ mixing).sum(axis=1), rtol=1e-12)
    # layer-wise independence can only inflate the scales (|J_2 J_1| <= |J_2| |J_1|)
    np.testing.assert_allclose(marginal.loc, result.loc, rtol=1e-12)
    assert np.all(marginal.scale >= result.scale * (1 - 1e-12))
    assert np.any(marginal.scale > result.scale * 1.01)


def _normal_cdf(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _normal_pdf(x, loc, scale):
    return np.exp(-0.5 * ((x - loc) / scale) ** 2) / (scale * math.sqrt(2 * math.pi))


def _gaussian_tv(mu, sigma, m, s):
    """TV(relu(X), N(m, s^2)) for X ~ N(mu, sigma^2); s = 0 is the point mass at m."""
    atom = _normal_cdf(-mu / sigma)
    if s == 0:
        return 1.0 - atom if m == 0 else 1.0
    z = np.linspace(0.0, max(mu, m, 0.0) + 12 * max(sigma, s), 40001)
    gap = np.abs(_normal_pdf(z, mu, sigma) - _normal_pdf(z, m, s))
    return 0.5 * (atom + _normal_cdf(-m / s) + np.trapezoid(gap, z))


def _cauchy_tv(mu, gamma, m, s):
    """TV(relu(X), Cauchy(m, s)) for X ~ Cauchy(mu, gamma); s = 0 is the point mass at m."""

    def cdf(x, loc, scale):
        return 0.5 + np.arctan((x - loc) / scale) / np.pi

    def pdf(x, loc, scale):
        return scale / (np.pi * (scale**2 + (x - loc) ** 2))

    atom = cdf(0.0, mu, gamma)
    if s == 0:
        return 1.0 - atom if m == 0 else 1.0
    theta = np.linspace(0.0, np.pi / 2, 40001)[:-1]  # z = tan(theta) covers [0, inf)
    z = np.tan(theta)
    gap = np.abs(pdf(z, mu, gamma) - pdf(z, m, s)) * (1 + z**2)
    return 0.5 * (atom + cdf(0.0, m, s) + np.trapezoid(gap, theta))


@jax.jit
def _relu_propagation(mu, sigma):
    return (
        propagate_gaussian(jax.nn.relu, mu, (sigma**2)[None, None]),
        propagate_cauchy(jax.nn.relu, mu, sigma[None]),
    )


@pytest.mark.parametrize("mu", [-0.8, -0.2, 0.3, 1.5])
def test_relu_linearisation_is_tv_optimal(mu):
    sigma = 1.0
    gauss, cauchy = _relu_propagation(jnp.asarray([mu]), jnp.asarray(sigma))
    cases = (  # (TV function, linearisation, mass of the atom of relu(X) at 0)
        (_gaussian_tv, gauss.mean[0], jnp.sqrt(gauss.cov[0, 0]), _normal_cdf(-mu / sigma)),
        (_cauchy_tv, cauchy.loc[0], cauchy.scale[0], 0.5 - math.atan(mu / sigma) / math.pi),
    )
    for tv, m_star, s_star, atom in cases:
        best = tv(mu, sigma, float(m_star), float(s_star))
        # the linearisation misses only what no candidate can match: the atom (mu > 0), or
        # the continuous part (mu < 0, where the linearisation is the point mass at 0)
        np.testing.assert_allclose(best, atom if mu > 0 else 1 - atom, atol=1e-6)
        grid = [
            tv(mu, sigma, max(mu, 0.0) + dm * sigma, ds * sigma)
            for dm in np.linspace(-1.0, 1.0, 21)
            for ds in np.concatenate([[0.0], np.linspace(0.1, 2.0, 20)])
        ]
        assert min(grid) >= best - 1e-6
    # moment matching, the usual alternative, is strictly worse in total variation
    a = mu / sigma
    cdf, pdf = _normal_cdf(a), float(_normal_pdf(a, 0.0, 1.0))
    mm_mean = mu * cdf + sigma * pdf
    mm_var = (mu**2 + sigma**2) * cdf + mu * sigma * pdf - mm_mean**2
    mm_tv = _gaussian_tv(mu, sigma, mm_mean, math.sqrt(mm_var))
    assert mm_tv > _gaussian_tv(mu, sigma, float(gauss.mean[0]), math.sqrt(float(gauss.cov[0, 0])))


def test_bad_arguments_are_named(network):
    layers, mean = network
    with pytest.raises(ValueError, match=r"cov must be a matrix \(4, 4\)"):
        propagate_gaussian(layers, mean, jnp.eye(3))
    with pytest.raises(ValueError, match=r"scale must be a vector of scales \(4,\)"):
        propagate_cauchy(layers, mean, jnp.ones(5))
    with pytest.raises(ValueError, match="method"):
        propagate_gaussian(layers, mean, jnp.ones(4), method="moment")
    with pytest.raises(ValueError, match="mean must be a vector"):
        propagate_gaussian(layers, jnp.ones((2, 2)), jnp.ones(4))
    with pytest.raises(ValueError, match=r"cov\[\]? has 1 non-finite|cov has 1 non-finite"):
        propagate_gaussian(layers, mean, jnp.ones(4).at[2].set(jnp.inf))
    with pytest.raises(ValueError, match="callable"):
        propagate_cauchy([], mean, jnp.ones(4))
