"""jacscope.flows against closed forms (linear fields), a brute-force log-determinant of
the flow map, finite differences, and the unbiasedness and coverage of the stochastic
divergences over many fixed keys."""

import diffrax
import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np
import optax
import pytest

from jacscope.flows import cnf_log_density, cnf_sample, local_error, standard_normal_log_density

TIGHT = {"rtol": 1e-10, "atol": 1e-10}


def linear(t, z, A):
    return A @ z


def mlp_field(t, z, params):
    w1, b1, w2 = params
    return jnp.tanh(jnp.concatenate([z, jnp.array([t])]) @ w1 + b1) @ w2


def mlp_params(key, d, hidden=8):
    k1, k2, k3 = jax.random.split(key, 3)
    return (
        jax.random.normal(k1, (d + 1, hidden)),
        jax.random.normal(k2, (hidden,)) * 0.1,
        jax.random.normal(k3, (hidden, d)) / hidden**0.5,
    )


def test_a_linear_flow_gives_its_closed_form_density(key):
    A = jnp.array([[0.3, -1.0, 0.0], [0.5, -0.2, 0.1], [0.0, 0.4, 0.6]])
    x = jnp.array([0.7, -1.2, 0.4])
    result = cnf_log_density(linear, A, x, **TIGHT)
    # z(1) = e^A z(0): log p(x) = log N(e^-A x) - tr A.
    z0 = jax.scipy.linalg.expm(-A) @ x
    exact = standard_normal_log_density(z0) - jnp.trace(A)
    np.testing.assert_allclose(result.log_density, exact, atol=1e-8)
    np.testing.assert_allclose(result.base_point, z0, atol=1e-8)
    assert float(result.stderr) == 0.0 and int(result.num_steps) > 0
    np.testing.assert_allclose(cnf_sample(linear, A, z0, **TIGHT), x, atol=1e-8)


def test_the_change_of_variables_matches_the_flow_maps_log_determinant(key):
    params = mlp_params(key, 3)
    z0 = jnp.array([0.2, -0.5, 1.1])

    def flow_map(z):
        return cnf_sample(mlp_field, params, z, **TIGHT)

    x = flow_map(z0)
    jacobian = jax.jacfwd(
        lambda z: diffrax.diffeqsolve(
            diffrax.ODETerm(mlp_field), diffrax.Tsit5(), 0.0, 1.0, None, z, args=params,
            stepsize_controller=diffrax.PIDController(**TIGHT), adjoint=diffrax.ForwardMode(),
        ).ys[-1]
    )(z0)  # fmt: skip
    brute = standard_normal_log_density(z0) - jnp.linalg.slogdet(jacobian)[1]
    result = cnf_log_density(mlp_field, params, x, **TIGHT)
    np.testing.assert_allclose(result.log_density, brute, atol=1e-7)


@pytest.mark.parametrize("divergence", ["hutchinson", "hutchpp"])
def test_stochastic_divergences_are_unbiased_and_their_stderr_covers(key, divergence):
    d = 6
    params = mlp_params(jax.random.key(1), d)
    x = jax.random.normal(jax.random.key(2), (d,))
    exact = float(cnf_log_density(mlp_field, params, x, rtol=1e-8, atol=1e-8).log_density)
    keys = jax.random.split(key, 200)
    run = jax.jit(
        jax.vmap(
            lambda k: cnf_log_density(
                mlp_field, params, x, divergence=divergence, num_probes=4, sketch_size=2,
                key=k, rtol=1e-8, atol=1e-8, penalties=True,
            )
        )
    )  # fmt: skip
    results = run(keys)
    estimates, stderrs = np.asarray(results.log_density), np.asarray(results.stderr)
    # Unbiased: the mean of 200 estimates within 4 of its standard errors.
    spread = estimates.std(ddof=1) / np.sqrt(len(estimates))
    assert abs(estimates.mean() - exact) < 4 * spread + 1e-6
    # Coverage of each reported standard error: about 95% inside 2 of them (a t
    # distribution with 3 degrees of freedom covers 86% at 2: the bound allows it).
    inside = np.mean(np.abs(estimates - exact) <= 2 * stderrs)
    assert inside > 0.75, inside
    # RNODE's Frobenius integral from the same probes: unbiased too.
    frobenius = cnf_log_density(mlp_field, params, x, rtol=1e-8, atol=1e-8, penalties=True)
    draws = np.asarray(results.jacobian_frobenius)
    spread = draws.std(ddof=1) / np.sqrt(len(draws))
    assert abs(draws.mean() - float(frobenius.jacobian_frobenius)) < 4 * spread + 1e-6


def test_the_rnode_penalties_match_their_closed_forms_on_a_linear_flow():
    A = jnp.array([[0.3, -1.0, 0.0], [0.5, -0.2, 0.1], [0.0, 0.4, 0.6]])
    x = jnp.array([0.7, -1.2, 0.4])
    # z(t) = e^{A (t - 1)} x: K = int_0^1 ||A z(t)||^2 dt (Gauss-Legendre, exact to
    # 1e-15 for this smooth integrand), B = ||A||_F^2.
    nodes, weights = np.polynomial.legendre.leggauss(40)
    kinetic = sum(
        w / 2 * np.sum(np.asarray(A @ jax.scipy.linalg.expm(A * ((t + 1) / 2 - 1)) @ x) ** 2)
        for t, w in zip(nodes, weights, strict=True)
    )
    for divergence in ("exact", "hutchinson"):
        result = cnf_log_density(
            linear, A, x, divergence=divergence, num_probes=3, key=jax.random.key(1),
            penalties=True, **TIGHT,
        )  # fmt: skip
        np.testing.assert_allclose(result.kinetic_energy, kinetic, rtol=1e-8)
        if divergence == "exact":
            np.testing.assert_allclose(result.jacobian_frobenius, jnp.sum(A**2), rtol=1e-8)
    plain = cnf_log_density(linear, A, x, **TIGHT)
    assert plain.kinetic_energy is None and plain.jacobian_frobenius is None


def _stiff_field(scale):
    params = mlp_params(jax.random.key(3), 2, hidden=16)
    return (params[0] * scale, params[1], params[2] * scale)


def test_the_local_error_estimates_the_solvers_steps_from_below():
    x = jnp.array([0.5, -0.3])
    keys = jax.random.split(jax.random.key(4), 200)
    estimated, taken = [], []
    for scale in (1.0, 3.0, 6.0):
        params = _stiff_field(scale)
        draws = jax.vmap(lambda k, p=params: local_error(mlp_field, p, x, key=k))(keys)
        assert np.all((draws.time >= 0) & (draws.time <= 1))
        estimated.append(float(draws.steps.mean()))
        taken.append(int(cnf_log_density(mlp_field, params, x).num_steps))
    # The solver's count adds its ramp-up from a cautious first step and its
    # rejections to the settled steps the estimate counts (measured: 0.42-0.58 of it).
    assert estimated == sorted(estimated) and taken == sorted(taken), (estimated, taken)
    ratios = np.array(estimated) / np.array(taken)
    assert np.all((ratios > 0.25) & (ratios <= 1.0)), ratios


@pytest.mark.parametrize("penalty", ["kinetic", "local_error"])
def test_descending_a_penalty_cuts_the_solvers_steps(penalty):
    x = jax.random.normal(jax.random.key(5), (16, 2))
    keys = jax.random.split(jax.random.key(6), 16)

    def value(params):
        if penalty == "kinetic":
            runs = jax.vmap(lambda x: cnf_log_density(mlp_field, params, x, penalties=True))(x)
            return jnp.mean(runs.kinetic_energy)
        runs = jax.vmap(lambda x, k: local_error(mlp_field, params, x, key=k))(x, keys)
        return jnp.mean(runs.steps)

    def steps(params):
        return float(
            jnp.mean(jax.vmap(lambda x: cnf_log_density(mlp_field, params, x))(x).num_steps)
        )

    params = _stiff_field(6.0)
    optimizer = optax.adam(3e-2)
    state = optimizer.init(params)

    @jax.jit
    def update(params, state):
        updates, state = optimizer.update(jax.grad(value)(params), state)
        return optax.apply_updates(params, updates), state

    before = steps(params)
    for _ in range(30):
        params, state = update(params, state)
    assert steps(params) < 0.7 * before, (before, steps(params))


def test_gradients_agree_with_finite_differences(key):
    A = jnp.array([[0.1, -0.6], [0.4, -0.3]])
    x = jnp.array([0.5, -0.8])

    def log_p(A, adjoint):
        return cnf_log_density(linear, A, x, adjoint=adjoint, **TIGHT).log_density

    step = 1e-5
    direction = jnp.array([[1.0, -2.0], [0.5, 1.5]])
    finite = (log_p(A + step * direction, None) - log_p(A - step * direction, None)) / (2 * step)
    for adjoint in (
        None,
        diffrax.BacksolveAdjoint(stepsize_controller=diffrax.PIDController(**TIGHT)),
    ):
        grad = jax.grad(log_p)(A, adjoint)
        np.testing.assert_allclose(jnp.sum(grad * direction), finite, rtol=1e-6, atol=1e-7)


def test_bad_input_is_refused_in_one_line(key):
    A = jnp.eye(2)
    with pytest.raises(ValueError, match="divergence must be one of"):
        cnf_log_density(linear, A, jnp.ones(2), divergence="trace")
    with pytest.raises(ValueError, match="needs a key"):
        cnf_log_density(linear, A, jnp.ones(2), divergence="hutchinson")
    with pytest.raises(ValueError, match="one flat point"):
        cnf_log_density(linear, A, jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="x"):
        cnf_log_density(linear, A, jnp.array([1.0, jnp.inf]))
