"""Jacobian penalties: exact modes against dense Jacobians, estimators against their exact
values (within 4 standard errors), closed forms and the nuclear-norm inequality.

Each test compiles its whole computation once (`jax.jit`), which is what the penalties
are for and keeps the suite fast."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import tree_allclose
from jacscope.models import init_mlp, mlp_apply
from jacscope.penalties import (
    jacobian_frobenius_penalty,
    jacobian_spectral_penalty,
    lazy_penalty,
    nuclear_norm_penalty,
)

NUM_DRAWS = 2000


@pytest.fixture(scope="module")
def setup():
    params = init_mlp(jax.random.key(0), (6, 8, 5), dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (4, 2, 3), jnp.float64)
    return params, x


def model(params, xb):
    """One example (2, 3) -> a pytree output (flattened to R^7 by the penalties)."""
    logits = mlp_apply(params, xb.reshape(-1))
    return {"logits": logits, "squares": logits[:2] ** 2}


def dense_jacobians(params, x):
    """Reference: (B, m, d) per-example Jacobians by forward-mode jax.jacfwd."""

    def flat(xb_flat):
        out = model(params, xb_flat.reshape(x.shape[1:]))
        return jnp.concatenate([out["logits"], out["squares"]])

    return jax.vmap(jax.jacfwd(flat))(x.reshape(x.shape[0], -1))


def draws(fn, key, num=NUM_DRAWS):
    """`fn(key_i)` for `num` independent keys, compiled once (a loop: it compiles faster
    than a vmap over keys)."""
    keys = jax.random.split(key, num)
    return jax.tree.map(np.asarray, jax.jit(lambda ks: jax.lax.map(fn, ks))(keys))


def assert_unbiased(samples, exact):
    samples = np.asarray(samples)
    stderr = samples.std(ddof=1) / np.sqrt(samples.shape[0])
    assert stderr > 0, "the estimator did not vary: the test would be vacuous"
    assert abs(samples.mean() - exact) < 4 * stderr, (samples.mean(), exact, stderr)


def test_frobenius_exact_matches_dense_jacobians(setup):
    params, x = setup
    value, jac = jax.jit(
        lambda: (
            jacobian_frobenius_penalty(model, params, x, exact=True),
            dense_jacobians(params, x),
        )
    )()
    np.testing.assert_allclose(value, 0.5 * np.mean(np.sum(np.asarray(jac) ** 2, axis=(1, 2))))


def test_frobenius_estimator_is_unbiased_with_variance_one_over_k(setup, key):
    params, x = setup
    exact = float(jax.jit(lambda: jacobian_frobenius_penalty(model, params, x, exact=True))())
    one, four = draws(
        lambda k: [jacobian_frobenius_penalty(model, params, x, k, n) for n in (1, 4)], key
    )
    assert_unbiased(one, exact)
    assert_unbiased(four, exact)
    # independent projections: Var(k = 4) = Var(k = 1) / 4; the ratio of the sample
    # variances of two samples of 2000 lies within +-20% of 4 with overwhelming probability
    assert 3.2 < one.var() / four.var() < 4.8


def test_frobenius_gradient_is_unbiased(setup, key):
    params, x = setup
    direction = jax.tree.map(
        lambda p: jax.random.normal(jax.random.key(7), p.shape, p.dtype), params
    )

    def projected_grad(key):
        grads = jax.grad(lambda p: jacobian_frobenius_penalty(model, p, x, key))(params)
        return sum(jax.tree.leaves(jax.tree.map(jnp.vdot, grads, direction)))

    exact_grads = jax.jit(jax.grad(lambda p: jacobian_frobenius_penalty(model, p, x, exact=True)))(
        params
    )
    exact = float(sum(jax.tree.leaves(jax.tree.map(jnp.vdot, exact_grads, direction))))
    assert_unbiased(draws(projected_grad, key), exact)


def test_frobenius_linear_model_closed_form(key):
    weight = jax.random.normal(key, (5, 3), jnp.float64)
    params = {"w": weight, "b": jnp.arange(3.0)}

    def linear(p, xb):
        return xb @ p["w"] + p["b"]

    x = jax.random.normal(jax.random.key(3), (7, 5), jnp.float64)
    value, grad = jax.jit(
        jax.value_and_grad(lambda p: jacobian_frobenius_penalty(linear, p, x, exact=True))
    )(params)
    np.testing.assert_allclose(value, 0.5 * np.sum(np.asarray(weight) ** 2), rtol=1e-12)
    np.testing.assert_allclose(grad["w"], weight, rtol=1e-12)  # d/dW 1/2 ||W||_F^2 = W
    np.testing.assert_allclose(grad["b"], 0.0, atol=1e-14)


def test_spectral_power_iteration_rises_to_the_svd_value(setup, key):
    params, x = setup
    start = jax.random.normal(key, (4, 6), jnp.float64)

    @jax.jit
    def compute():
        values = [
            jacobian_spectral_penalty(model, params, x, start, k).value for k in (1, 2, 4, 300)
        ]
        exact = jacobian_spectral_penalty(model, params, x, start, exact=True).value
        shared = jacobian_spectral_penalty(model, params, x, start[0], 3)
        return values, exact, shared, dense_jacobians(params, x)

    values, exact, shared, jac = compute()
    sigma = np.linalg.norm(np.asarray(jac), ord=2, axis=(1, 2))
    np.testing.assert_allclose(exact, np.mean(sigma**2), rtol=1e-12)
    assert all(float(v) <= exact * (1 + 1e-12) for v in values)  # a Rayleigh-type lower bound
    assert values[0] <= values[1] <= values[2]  # monotone in the number of iterations
    assert float(values[0]) < float(exact) * (1 - 1e-6)  # one iteration is not yet exact
    np.testing.assert_allclose(values[3], exact, rtol=1e-9)
    # a shared starting vector: one direction comes back, of unit length
    assert shared.vector.shape == (6,)
    np.testing.assert_allclose(np.linalg.norm(shared.vector), 1.0, rtol=1e-12)
    assert 0 < float(shared.value) <= exact * (1 + 1e-12)


def test_spectral_vector_carried_across_steps(setup, key):
    params, x = setup
    per_example = jax.random.normal(key, (4, 6), jnp.float64)

    @jax.jit
    def train_like(v):
        def step(v, _):
            result = jacobian_spectral_penalty(model, params, x, v)
            return result.vector, result.value

        v, values = jax.lax.scan(step, v, length=100)
        exact = jacobian_spectral_penalty(model, params, x, v, exact=True)
        grads = [
            jax.grad(lambda q, e=e: jacobian_spectral_penalty(model, q, x, v, exact=e).value)(
                params
            )
            for e in (False, True)
        ]
        return v, values, exact, grads

    carried, values, exact, (grad_power, grad_exact) = train_like(per_example)
    np.testing.assert_allclose(values[-1], exact.value, rtol=1e-9)
    # the carried vectors are the top right singular vectors
    np.testing.assert_allclose(np.sum(carried * exact.vector, axis=1), 1.0, rtol=1e-9)
    # at convergence the gradient (vectors held fixed) is the gradient of sigma_max^2
    assert tree_allclose(grad_power, grad_exact, rtol=1e-8, atol=1e-12)


def linear_factors():
    """g(z) = z @ A, h(x) = x @ B with params {"A", "B"}: J_g = A^T, J_h = B^T."""

    def h(p, xb):
        return xb @ p["B"]

    def g(p, zb):
        return zb @ p["A"]

    return g, h


def random_factors(key):
    key_a, key_b = jax.random.split(key)
    return {
        "B": jax.random.normal(key_b, (5, 4), jnp.float64),
        "A": jax.random.normal(key_a, (4, 3), jnp.float64),
    }


def test_nuclear_norm_bound_and_balanced_equality(key):
    g, h = linear_factors()
    params = random_factors(key)
    x = jnp.ones((1, 5), jnp.float64)
    product = np.asarray(params["B"] @ params["A"]).T  # J_f = J_g J_h = A^T B^T
    u, s, vt = np.linalg.svd(product, full_matrices=False)
    # balanced factors of the same product: J_g = U S^(1/2), J_h = S^(1/2) V^T
    balanced = {"A": (u * np.sqrt(s)).T, "B": (np.sqrt(s)[:, None] * vt).T}
    np.testing.assert_allclose(np.asarray(balanced["B"] @ balanced["A"]).T, product, atol=1e-12)
    bound, tight = jax.jit(
        lambda p, q: [nuclear_norm_penalty(g, h, r, x, exact=True) for r in (p, q)]
    )(params, balanced)
    frobenius = 0.5 * sum(np.sum(np.asarray(w) ** 2) for w in params.values())
    np.testing.assert_allclose(bound, frobenius, rtol=1e-12)
    assert s.sum() < float(bound) - 1e-3  # strict for these unbalanced random factors
    np.testing.assert_allclose(tight, s.sum(), rtol=1e-12)


def mlp_factors():
    """f = g o h for an MLP split after its first hidden layer."""

    def h(p, xb):
        return jax.nn.gelu(xb @ p[0]["w"] + p[0]["b"], approximate=True)

    def g(p, zb):
        return mlp_apply(p[1:], zb)

    return g, h


@pytest.fixture(scope="module")
def deep(setup):
    params = setup[0] + init_mlp(jax.random.key(5), (5, 4), dtype=jnp.float64)
    return params, jax.random.normal(jax.random.key(6), (3, 6), jnp.float64)


def test_nuclear_norm_bound_on_a_network(deep):
    params, x = deep
    g, h = mlp_factors()

    @jax.jit
    def per_example(xb):
        jac = jax.jacfwd(lambda v: g(params, h(params, v)))(xb)
        return jac, nuclear_norm_penalty(g, h, params, xb[None], exact=True)

    jac, bound = jax.vmap(per_example)(x)
    nuclear = np.linalg.svd(np.asarray(jac), compute_uv=False).sum(axis=1)
    assert np.all(nuclear <= np.asarray(bound))


def test_nuclear_norm_estimators(deep, key):
    params, x = deep
    g, h = mlp_factors()
    exact = float(jax.jit(lambda: nuclear_norm_penalty(g, h, params, x, exact=True))())
    jacobian, denoised = draws(
        lambda k: [
            nuclear_norm_penalty(g, h, params, x, k),
            nuclear_norm_penalty(g, h, params, x, k, method="denoising", sigma=1e-3),
        ],
        key,
    )
    assert_unbiased(jacobian, exact)
    # denoising: its O(sigma^2) bias is far below the sampling error at sigma = 1e-3
    assert_unbiased(denoised, exact)


def test_denoising_is_unbiased_for_affine_factors(key):
    g, h = linear_factors()
    params = random_factors(key)
    x = jax.random.normal(jax.random.key(9), (2, 5), jnp.float64)
    exact = float(jax.jit(lambda: nuclear_norm_penalty(g, h, params, x, exact=True))())
    # for affine g and h the denoising form equals the Jacobian form in expectation at any sigma
    samples = draws(
        lambda k: nuclear_norm_penalty(g, h, params, x, k, method="denoising", sigma=0.7),
        jax.random.key(11),
    )
    assert_unbiased(samples, exact)


@pytest.mark.slow
def test_lazy_penalty_runs_every_kth_step_and_adds_up_to_the_penalty(setup, key):
    params, x = setup
    calls = []

    def counted(p, x):
        jax.debug.callback(lambda: calls.append(1))
        return jacobian_frobenius_penalty(model, p, x, exact=True)

    lazy = lazy_penalty(counted, every=3)
    value_and_grad = jax.jit(jax.value_and_grad(lambda p, step: lazy(step, p, x)))
    exact, exact_grad = jax.jit(jax.value_and_grad(lambda p: counted(p, x)))(params)
    calls.clear()
    results = [value_and_grad(params, jnp.int32(step)) for step in range(7)]
    assert len(calls) == 3  # steps 0, 3 and 6 only
    for step, (value, grad) in enumerate(results):
        factor = 3.0 if step % 3 == 0 else 0.0
        np.testing.assert_allclose(value, factor * exact, rtol=1e-12)
        assert tree_allclose(grad, jax.tree.map(lambda g, c=factor: c * g, exact_grad), rtol=1e-12)
    # any three consecutive steps add up to three steps of the penalty itself
    window = sum(float(v) for v, _ in results[2:5])
    np.testing.assert_allclose(window, 3 * float(exact), rtol=1e-12)
    np.testing.assert_allclose(lazy_penalty(counted, every=1)(5, params, x), exact, rtol=1e-12)

    # an array the penalty closes over gets its gradient too
    def closed_over(scale):
        return lazy_penalty(lambda p: scale * counted(p, x), every=3)(jnp.int32(3), params)

    np.testing.assert_allclose(jax.jit(jax.grad(closed_over))(2.0), 3 * exact, rtol=1e-12)
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        lazy_penalty(counted, every=0)
    with pytest.raises(ValueError, match="step must be an integer scalar"):
        lazy(jnp.arange(2), params, x)
    with pytest.raises(ValueError, match="must return a scalar"):
        lazy_penalty(lambda p: p, every=2)(0, params)


def test_bad_arguments_are_named(setup, key):
    params, x = setup
    with pytest.raises(ValueError, match="num_projections"):
        jacobian_frobenius_penalty(model, params, x, key, 0)
    with pytest.raises(ValueError, match="key"):
        jacobian_frobenius_penalty(model, params, x)
    with pytest.raises(ValueError, match=r"leading example axis"):
        jacobian_frobenius_penalty(model, params, jnp.asarray(1.0), key)
    with pytest.raises(ValueError, match=r"v expects shape \(6,\)"):
        jacobian_spectral_penalty(model, params, x, jnp.ones(5))
    with pytest.raises(ValueError, match="num_iterations"):
        jacobian_spectral_penalty(model, params, x, jnp.ones(6), 0)
    nan_params = jax.tree.map(lambda p: p.at[0].set(jnp.nan), params)
    with pytest.raises(ValueError, match=r"params\[0\]\['b'\]"):
        jacobian_frobenius_penalty(model, nan_params, x, key)
    g, h = mlp_factors()
    with pytest.raises(ValueError, match="sigma > 0"):
        nuclear_norm_penalty(g, h, params, x, key, method="denoising")
    with pytest.raises(ValueError, match="method"):
        nuclear_norm_penalty(g, h, params, x, key, method="svd")
    with pytest.raises(ValueError, match="exact=True"):
        nuclear_norm_penalty(g, h, params, x, key, method="denoising", sigma=0.1, exact=True)
