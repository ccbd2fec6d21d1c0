"""The training run's Lyapunov spectrum against the dense product of its step Jacobians:
momentum SGD under a cosine schedule, whose counter is carried as an input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from jacscope import TrainingRun, training_jacobian
from jacscope.dynamics import training_lyapunov_spectrum


def small_run(key):
    k1, k2, k3 = jax.random.split(key, 3)
    params = {"w1": jax.random.normal(k1, (3, 4)) * 0.5, "w2": jax.random.normal(k2, (4,))}
    x = jax.random.normal(k3, (20, 8, 3))
    batches = {"x": x, "y": jnp.sin(x[..., 0])}

    def loss(p, batch):
        return jnp.mean((jnp.tanh(batch["x"] @ p["w1"]) @ p["w2"] - batch["y"]) ** 2)

    schedule = optax.cosine_decay_schedule(0.3, 20)
    return TrainingRun(params, loss, optax.sgd(schedule, momentum=0.9), batches)


def test_exponents_are_the_growth_of_the_dense_product_of_step_jacobians(key):
    run = small_run(key)
    floats0, counters0 = eqx.partition(run.init_state(run.params0), eqx.is_inexact_array)
    flat0, unravel = ravel_pytree((run.params0, floats0))

    def whole_run(flat):  # the full state (parameters, momentum) after T steps, unrolled
        params, floats = unravel(flat)
        state = eqx.combine(floats, counters0)
        for t in range(run.num_steps):
            batch = jax.tree.map(lambda a, t=t: a[t], run.batches)
            params, state, _ = run.step(params, state, batch)
        return ravel_pytree((params, eqx.filter(state, eqx.is_inexact_array)))[0]

    product = jax.jacfwd(whole_run)(flat0)
    n, k = flat0.size, 5
    result = training_lyapunov_spectrum(run, k=k, num_phases=4, key=key)
    Q0, _ = jnp.linalg.qr(jax.random.normal(key, (n, k)))
    _, R = jnp.linalg.qr(product @ Q0)
    exact = np.log(np.abs(np.diagonal(R))) / run.num_steps
    np.testing.assert_allclose(result.exponents, exact, atol=1e-10)
    np.testing.assert_allclose(np.mean(result.phase_rates, axis=0), exact, atol=1e-10)
    assert result.state_size == n == 2 * 16 and result.num_steps == 20
    S = jnp.linalg.svd(training_jacobian(run), compute_uv=False)
    with_s = training_lyapunov_spectrum(run, k=k, num_phases=4, singular_values=S, key=key)
    np.testing.assert_allclose(with_s.singular_rates, np.log(S[:k]) / 20, rtol=1e-12)


def test_too_many_exponents_are_refused(key):
    with pytest.raises(ValueError, match="k must be in 1..32"):
        training_lyapunov_spectrum(small_run(key), k=40, key=key)


def test_exponents_whose_neighbours_are_too_close_for_the_run_are_unresolved(key):
    # Rates 0.5, 0.1, 0.09, 0, -1, -2 over T = 20: gaps x T of 8, 0.2, 1.8, 20, 20.
    S = np.exp(20 * np.array([0.5, 0.1, 0.09, 0.0, -1.0, -2.0]))
    result = training_lyapunov_spectrum(
        small_run(key), k=5, num_phases=4, singular_values=S, key=key
    )
    np.testing.assert_array_equal(result.resolved, [True, False, False, False, True])
    assert training_lyapunov_spectrum(small_run(key), k=2, num_phases=4, key=key).resolved is None
