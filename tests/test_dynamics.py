"""jacscope.dynamics: Lyapunov spectra against maps whose exponents are known exactly or
to the digits the literature gives, with tolerances from the reported standard error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jacscope.dynamics import kaplan_yorke_dimension, lyapunov_spectrum


def test_linear_maps_give_the_log_moduli_of_their_eigenvalues(key):
    # A symmetric A: the tangent frame aligns with its eigenvectors geometrically fast.
    rng = np.random.default_rng(0)
    V, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    eigenvalues = np.array([2.0, -1.2, 0.5, 0.1])
    A = jnp.asarray(V @ np.diag(eigenvalues) @ V.T)
    result = lyapunov_spectrum(lambda x: A @ x, jnp.ones(4), num_steps=400, transient=100, key=key)
    np.testing.assert_allclose(result.exponents, np.log(np.abs(eigenvalues)), atol=1e-10)
    # A pytree state with a diagonal map, every third step reorthonormalised, k = 2.
    state = {"a": jnp.ones(2), "b": jnp.ones(1)}
    scales = {"a": jnp.array([1.5, 0.3]), "b": jnp.array([0.9])}
    diagonal = lyapunov_spectrum(
        lambda s: jax.tree.map(jnp.multiply, scales, s),
        state,
        num_steps=300,
        k=2,
        reorthonormalize_every=3,
        transient=30,
        key=key,
    )
    np.testing.assert_allclose(diagonal.exponents, np.log([1.5, 0.9]), atol=1e-10)
    assert diagonal.vectors.shape == (3, 2)


def test_a_driven_scalar_map_averages_its_log_slopes(key):
    slopes = jax.random.uniform(key, (1000,), minval=0.2, maxval=3.0)
    result = lyapunov_spectrum(lambda x, a: a * x, jnp.ones(1), slopes, key=key)
    np.testing.assert_allclose(result.exponents[0], jnp.mean(jnp.log(slopes)), rtol=1e-12)


def test_logistic_map_at_r_4_has_exponent_ln_2(key):
    result = lyapunov_spectrum(
        lambda x: 4.0 * x * (1 - x), jnp.array([0.3]), num_steps=20_000, transient=100, key=key
    )
    error = abs(float(result.exponents[0]) - np.log(2))
    assert error < 4 * float(result.stderr[0]) + 1e-3
    assert float(result.stderr[0]) < 0.02


def test_henon_map_sum_is_exact_and_largest_matches_the_literature(key):
    a, b = 1.4, 0.3

    def henon(s):
        x, y = s
        return jnp.array([1 - a * x**2 + y, b * x])

    x0 = jnp.array([0.1, 0.1])
    result = lyapunov_spectrum(henon, x0, num_steps=20_000, transient=200, key=key)
    # det J = -b at every point: lambda_1 + lambda_2 = ln b in every batch.
    np.testing.assert_allclose(jnp.sum(result.exponents), np.log(b), atol=1e-10)
    # lambda_1 = 0.41922 (to the digits the literature quotes).
    error = abs(float(result.exponents[0]) - 0.41922)
    assert error < 4 * float(result.stderr[0]) + 5e-4
    assert 1.2 < float(result.kaplan_yorke) < 1.3 and bool(result.kaplan_yorke_resolved)
    assert result.running.shape == (10, 2)


def test_kaplan_yorke_dimension_and_when_it_is_unresolved():
    dim, resolved = kaplan_yorke_dimension(jnp.array([0.5, 0.0, -1.0]), 3)
    np.testing.assert_allclose(dim, 2.5)
    assert bool(resolved)
    dim, resolved = kaplan_yorke_dimension(jnp.array([0.5, 0.1]), 5)
    assert not bool(resolved) and float(dim) == 2.0  # at least 2, more exponents needed
    dim, resolved = kaplan_yorke_dimension(jnp.array([-0.5, -1.0]), 2)
    assert float(dim) == 0.0 and bool(resolved)


def test_jit_and_vmap_over_initial_conditions(key):
    def run(x0):
        return lyapunov_spectrum(lambda x: 0.5 * x, x0, num_steps=40, key=key).exponents

    out = jax.jit(jax.vmap(run))(jnp.ones((3, 2)))
    np.testing.assert_allclose(out, np.log(0.5), atol=1e-12)


def test_bad_input_is_refused_in_one_line(key):
    with pytest.raises(ValueError, match="k must be in 1..2"):
        lyapunov_spectrum(lambda x: x, jnp.ones(2), num_steps=20, k=3, key=key)
    with pytest.raises(ValueError, match="either inputs"):
        lyapunov_spectrum(lambda x: x, jnp.ones(2), key=key)
    with pytest.raises(ValueError, match="cannot fill 10 batches"):
        lyapunov_spectrum(lambda x: x, jnp.ones(2), num_steps=5, key=key)
    with pytest.raises(ValueError, match="returns 3 scalars from a state of 2"):
        lyapunov_spectrum(lambda x: jnp.ones(3), jnp.ones(2), num_steps=20, key=key)
    with pytest.raises(ValueError, match="x0"):
        lyapunov_spectrum(lambda x: x, jnp.array([1.0, jnp.nan]), num_steps=20, key=key)
