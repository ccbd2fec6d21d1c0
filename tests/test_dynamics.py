"""jacscope.dynamics: Lyapunov spectra against maps whose exponents are known exactly or
to the digits the literature gives, with tolerances from the reported standard error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jacscope.dynamics import (
    covariant_lyapunov_vectors,
    kaplan_yorke_dimension,
    lyapunov_spectrum,
    lyapunov_spectrum_ode,
)

SIGMA, BETA = 10.0, 8.0 / 3.0


def lorenz(rho):
    def field(t, s):
        x, y, z = s
        return jnp.array([SIGMA * (y - x), x * (rho - z) - y, x * y - BETA * z])

    return field


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
    result = lyapunov_spectrum(lambda x, a: a * x, jnp.ones(1), slopes, local=True, key=key)
    np.testing.assert_allclose(result.exponents[0], jnp.mean(jnp.log(slopes)), rtol=1e-12)
    # The local exponents are each step's own log-slope, in order.
    np.testing.assert_allclose(result.local[:, 0], jnp.log(slopes), rtol=1e-12)
    assert lyapunov_spectrum(lambda x: x, jnp.ones(1), num_steps=20, key=key).local is None


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


def test_lorenz_63_matches_the_literature_and_its_sum_is_the_divergence(key):
    result = lyapunov_spectrum_ode(
        lorenz(28.0), jnp.array([1.0, 1.0, 20.0]), duration=200.0, interval=0.1,
        transient=20.0, key=key,
    )  # fmt: skip
    # The divergence is -(sigma + 1 + beta) everywhere: the sum to the solver's tolerance.
    np.testing.assert_allclose(jnp.sum(result.exponents), -(SIGMA + 1 + BETA), atol=1e-6)
    # (0.9056, 0, -14.5723) to the digits the literature quotes.
    references = [0.9056, 0.0, -14.5723]
    for value, stderr, reference in zip(result.exponents, result.stderr, references, strict=True):
        assert abs(float(value) - reference) < 4 * float(stderr) + 1e-3
    assert 2.0 < float(result.kaplan_yorke) < 2.1 and result.num_steps == 2000


def test_lorenz_at_rho_20_settles_on_a_fixed_point_with_its_eigenvalues_as_exponents(key):
    # Below the Hopf point (rho = 24.74) C+ and C- attract: the exponents are the real
    # parts of the eigenvalues of the Jacobian there, a complex pair and a real one.
    rho = 20.0
    c = np.sqrt(BETA * (rho - 1))
    eigenvalues = np.linalg.eigvals(np.array([[-SIGMA, SIGMA, 0], [1, -1, -c], [c, c, -BETA]]))
    real = np.sort(eigenvalues.real)[::-1]
    result = lyapunov_spectrum_ode(
        lorenz(rho), jnp.array([1.0, 1.0, 20.0]), duration=100.0, interval=0.1,
        transient=200.0, key=key,
    )  # fmt: skip
    # The pair's rotation splits it between the first two; their mean is exact.
    np.testing.assert_allclose(jnp.mean(result.exponents[:2]), real[0], atol=1e-6)
    np.testing.assert_allclose(result.exponents[2], real[2], atol=1e-6)
    assert np.all(np.abs(np.asarray(result.exponents[:2]) - real[0]) < 4 * result.stderr[:2])


@pytest.mark.slow
def test_lorenz_on_its_periodic_orbit_has_a_zero_exponent(key):
    # At rho = 350 the attractor is a stable periodic orbit: lambda_1 = 0 (the flow's
    # own direction) to O(1 / duration).
    result = lyapunov_spectrum_ode(
        lorenz(350.0), jnp.array([1.0, 1.0, 20.0]), duration=4000.0, interval=0.1,
        transient=100.0, k=2, key=key,
    )  # fmt: skip
    assert abs(float(result.exponents[0])) < 1e-3
    assert float(result.exponents[1]) < -0.5


def test_a_hamiltonian_flow_has_exponents_in_plus_minus_pairs(key):
    # Henon-Heiles at energy 1/8 in its chaotic sea: symplectic, so lambda_i =
    # -lambda_{5-i}; the flow preserves volume, so the sum is 0 to the solver's tolerance.
    def henon_heiles(t, s):
        x, y, px, py = s
        return jnp.array([px, py, -x - 2 * x * y, -y - x**2 + y**2])

    energy, y, py = 0.125, -0.1, 0.1
    px = np.sqrt(2 * energy - py**2 - y**2 + 2 * y**3 / 3)
    result = lyapunov_spectrum_ode(
        henon_heiles, jnp.array([0.0, y, px, py]), duration=200.0, interval=0.5,
        transient=10.0, key=key,
    )  # fmt: skip
    np.testing.assert_allclose(jnp.sum(result.exponents), 0.0, atol=1e-6)
    pairs = result.exponents + result.exponents[::-1]
    assert np.all(np.abs(pairs) < 4 * (result.stderr + result.stderr[::-1]) / 2)
    assert float(result.exponents[0]) > 4 * float(result.stderr[0])  # chaotic


def test_ode_spectra_jit_and_vmap_over_initial_conditions(key):
    def run(x0):
        return lyapunov_spectrum_ode(
            lambda t, x: -x * jnp.array([1.0, 3.0]), x0, duration=2.0, interval=0.5,
            transient=10.0, num_batches=2, key=key,
        ).exponents  # fmt: skip

    out = jax.jit(jax.vmap(run))(jnp.ones((3, 2)))
    np.testing.assert_allclose(out, np.broadcast_to([-1.0, -3.0], (3, 2)), atol=1e-7)
    with pytest.raises(ValueError, match="cannot fill 10 batches"):
        lyapunov_spectrum_ode(lambda t, x: x, jnp.ones(2), duration=1.0, interval=0.5, key=key)
    with pytest.raises(ValueError, match="vector_field returns 3 scalars"):
        lyapunov_spectrum_ode(
            lambda t, x: jnp.ones(3), jnp.ones(2), duration=10.0, interval=0.5, key=key
        )


def test_covariant_vectors_of_a_non_normal_linear_map_are_its_eigenvectors(key):
    V = np.array([[1.0, 1.0, 0.0], [0.0, 0.3, 1.0], [0.2, 0.0, 0.5]])
    eigenvalues = np.array([1.8, -0.9, 0.4])
    A = jnp.asarray(V @ np.diag(eigenvalues) @ np.linalg.inv(V))
    result = covariant_lyapunov_vectors(
        lambda x: A @ x, jnp.ones(3), num_steps=5, transient=100, backward_transient=100, key=key
    )
    unit = V / np.linalg.norm(V, axis=0)
    for vectors in result.vectors:  # each column is +- the eigenvector of its exponent
        np.testing.assert_allclose(np.abs(np.sum(vectors * unit, axis=0)), 1.0, atol=1e-10)
    np.testing.assert_allclose(result.growth, np.log(np.abs(eigenvalues))[None].repeat(5, 0))


def test_covariant_vectors_of_the_henon_map_are_carried_into_each_other(key):
    def henon(s):
        return jnp.array([1 - 1.4 * s[0] ** 2 + s[1], 0.3 * s[0]])

    result = covariant_lyapunov_vectors(
        henon, jnp.array([0.1, 0.1]), num_steps=400, transient=200, backward_transient=200,
        key=key,
    )  # fmt: skip
    jacobians = jax.vmap(jax.jacfwd(henon))(result.states[:-1])
    carried = jnp.einsum("tij,tjk->tik", jacobians, result.vectors[:-1])
    # J_t v_t^i = g_t^i v_{t+1}^i: parallel, with log |g_t^i| the reported growth.
    norms = jnp.linalg.norm(carried, axis=1)
    cosines = jnp.sum(carried * result.vectors[1:], axis=1) / norms
    np.testing.assert_allclose(jnp.abs(cosines), 1.0, atol=1e-9)
    np.testing.assert_allclose(jnp.log(norms), result.growth[:-1], atol=1e-9)
    # v^1 is the QR frame's first vector: its growth is log R_11 step by step; v^2's
    # differs from log R_22 by a bounded boundary term over the window.
    spectrum = lyapunov_spectrum(
        henon, jnp.array([0.1, 0.1]), num_steps=400, transient=200, local=True, key=key
    )
    np.testing.assert_allclose(result.growth[:, 0], spectrum.local[:, 0], atol=1e-9)
    assert abs(float(result.exponents[1] - jnp.mean(spectrum.local[:, 1]))) < 10 / 400
    with pytest.raises(ValueError, match="needs 7.45 GiB"):
        covariant_lyapunov_vectors(henon, jnp.ones(2), num_steps=10**8, key=key)
