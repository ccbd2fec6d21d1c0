"""gradient_explosion_report on a chaotic and a contracting rate network: the verdict
follows the exponent's sign, and the measured gradient variance grows at least at
2 lambda_1 past the Lyapunov time in chaos and shrinks in contraction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jacscope.dynamics import gradient_explosion_report

N = 50


def step(x, params):
    return x + 0.2 * (-x + params["gain"] * params["W"] @ jnp.tanh(x))


def unrolled_loss(params, length, key):
    x = jax.lax.fori_loop(0, length, lambda i, x: step(x, params), jax.random.normal(key, (N,)))
    return jnp.mean(x**2)


def report(gain, key):
    params = {"W": jax.random.normal(jax.random.key(1), (N, N)) / N**0.5, "gain": gain}
    lengths = [1, 10, 40, 80, 120, 160]
    return gradient_explosion_report(
        unrolled_loss, params, lengths, step=step, x0=jnp.ones(N), num_samples=16, key=key
    )


def test_a_chaotic_unroll_is_diagnosed_with_its_lyapunov_time(key):
    result = report(4.0, key)
    assert result.verdict == "chaotic", result.summary
    assert result.chaos_length == int(np.ceil(1 / result.exponent))
    # The variance grows at least at 2 lambda_1 per step (Jensen), less the noise of a
    # slope through 4 lengths of 16 samples; the gradients' norm by orders of magnitude.
    assert result.variance_growth > 1.5 * result.exponent
    assert result.gradient_norm[-1] > 100 * result.gradient_norm[0]
    assert "dominated by chaos beyond length" in result.summary


def test_a_contracting_unroll_keeps_its_gradients_bounded(key):
    result = report(0.5, key)
    assert result.verdict == "contracting" and result.chaos_length is None
    assert result.variance_growth < 0 and result.gradient_norm[-1] < result.gradient_norm[1]


def test_bad_input_is_refused_in_one_line(key):
    params = {"W": jnp.eye(N), "gain": 1.0}
    with pytest.raises(ValueError, match="lengths must be positive"):
        gradient_explosion_report(unrolled_loss, params, [0, 5], step=step, x0=jnp.ones(N), key=key)
    with pytest.raises(ValueError, match="num_samples must be >= 2"):
        gradient_explosion_report(
            unrolled_loss, params, [5], step=step, x0=jnp.ones(N), num_samples=1, key=key
        )
