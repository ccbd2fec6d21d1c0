"""jacscope.parallel solvers: every method against sequential evaluation, float64."""

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import tree_allclose
from jacscope.parallel import linear_recurrence, solve_autoregressive, solve_sequence

PARALLEL = ("jacobi", "block_gauss_seidel", "jacobi_window", "deer", "quasi_deer")
T = 40
OPTIONS = ("method", "length", "tol", "max_iter", "block_size", "window", "return_iterates")
solve = jax.jit(solve_sequence, static_argnums=0, static_argnames=OPTIONS)


def _gru(key, gain, hidden=6, features=3):
    """A GRU step; gain scales the recurrent weights (gain 20: positive Lyapunov exponent)."""
    cell = eqx.nn.GRUCell(features, hidden, key=key)
    cell = eqx.tree_at(lambda c: c.weight_hh, cell, cell.weight_hh * gain)
    return lambda h, x: cell(x, h)


def _pair_rnn(key, gain, hidden=12, features=2):
    """A tanh RNN whose state is a pytree: {"h": (hidden,), "c": (2,)}."""
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)))
    w = gain * rng.normal(size=(hidden, hidden)) / np.sqrt(hidden)
    u = 0.2 * rng.normal(size=(hidden, features))
    v = rng.normal(size=(2, hidden)) / np.sqrt(hidden)

    def step(s, x):
        h = jnp.tanh(w @ s["h"] + u @ x + 0.1 * jnp.sum(s["c"]))
        return {"h": h, "c": 0.5 * jnp.tanh(v @ h + s["c"])}

    return step


def _lyapunov(jacobians):
    """The largest Lyapunov exponent of a product of step Jacobians (QR iteration)."""
    q, logs = np.eye(jacobians.shape[1]), []
    for jac in np.asarray(jacobians):
        q, r = np.linalg.qr(jac @ q)
        logs.append(np.log(np.abs(np.diag(r))))
    return float(np.max(np.mean(logs, axis=0)))


CASES = {
    "gru-contracting": (_gru, 1.0, lambda k: jnp.zeros(6)),
    "gru-chaotic": (_gru, 20.0, lambda k: jnp.zeros(6)),
    "pytree-contracting": (_pair_rnn, 0.5, lambda k: {"h": jnp.zeros(12), "c": jnp.ones(2)}),
}


def _case(name, key, length=T):
    build, gain, init = CASES[name]
    step = build(key, gain)
    features = 3 if name.startswith("gru") else 2
    xs = np.random.default_rng(1).normal(size=(length, features))
    return step, init(key), jnp.asarray(xs)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n == "gru-chaotic" else n for n in sorted(CASES)],
)
def test_every_method_equals_sequential(name, key):
    length = 96
    step, init, long_xs = _case(name, key, length=200)
    xs = long_xs[:length]
    flat, unravel = jax.flatten_util.ravel_pytree(init)

    @jax.jit
    def run(init, xs, long_xs):
        flat_step = lambda s, x: jax.flatten_util.ravel_pytree(step(unravel(s), x))[0]
        trajectory = solve_sequence(flat_step, flat, long_xs, method="sequential").states
        before = jnp.concatenate([flat[None], trajectory[:-1]])
        jacobians = jax.vmap(jax.jacfwd(flat_step))(before, long_xs)
        reference = solve_sequence(step, init, xs, method="sequential").states
        solutions = {
            m: solve_sequence(step, init, xs, method=m, block_size=7, window=9) for m in PARALLEL
        }
        return jacobians, reference, solutions

    jacobians, reference, solutions = run(init, xs, long_xs)
    lyapunov = _lyapunov(jacobians)
    assert (lyapunov > 0.02) if name.endswith("chaotic") else (lyapunov < -0.1), lyapunov
    for method, sol in solutions.items():
        cap = -(-length // 7) if method == "block_gauss_seidel" else length
        assert bool(sol.converged) and 1 <= int(sol.iterations) <= cap, method
        assert tree_allclose(sol.states, reference, rtol=0, atol=1e-9), method
    if name.endswith("chaotic"):  # no contraction: Jacobi fixes one position per pass
        assert int(solutions["jacobi"].iterations) == length
    else:  # contraction: the stopping rule ends the iteration well before the cap
        assert int(solutions["jacobi"].iterations) < 0.8 * length


def test_linear_recurrence_matches_a_loop(key):
    rng = np.random.default_rng(0)
    a, b, x0 = rng.normal(size=(33, 4, 4)), rng.normal(size=(33, 4)), rng.normal(size=4)
    for a_t, product in ((a, lambda m, v: m @ v), (a[:, 0], lambda m, v: m * v)):
        expected, x = [], np.asarray(x0)
        a_t, b = np.asarray(a_t), np.asarray(b)
        for t in range(33):
            x = product(a_t[t], x) + b[t]
            expected.append(x)
        x = jax.jit(linear_recurrence)(a_t, b, x0)
        np.testing.assert_allclose(x, np.stack(expected), rtol=1e-10)
    with pytest.raises(ValueError, match="a must have shape"):
        linear_recurrence(a[:, :3], b)


def test_cap_is_reached_and_exact_for_a_counter():
    # s_t = s_{t-1} + 1 from a zero guess, no inputs: Jacobi fixes one position per pass.
    counter = lambda s, _: s + 1.0
    run = jax.jit(
        lambda s0: {
            m: solve_sequence(counter, s0, None, length=T, method=m, block_size=8) for m in PARALLEL
        }
    )
    for method, sol in run(jnp.asarray(0.0)).items():
        np.testing.assert_array_equal(sol.states, np.arange(1.0, T + 1))
        if method in ("deer", "quasi_deer"):
            expected = 2  # linear: one Newton step and the verifying pass
        else:
            expected = T // 8 if method == "block_gauss_seidel" else T
        assert int(sol.iterations) == expected and bool(sol.converged), method


def test_discrete_recurrence_is_exact_bitwise(key):
    xs = jnp.asarray(np.random.default_rng(0).integers(0, 1000, T))
    step = lambda s, x: (s * 48271 + x) % 65521
    reference = solve(step, jnp.asarray(7), xs, method="sequential").states
    for method in ("jacobi", "block_gauss_seidel", "jacobi_window"):
        sol = solve(step, jnp.asarray(7), xs, method=method, window=5)
        np.testing.assert_array_equal(sol.states, reference)
        assert sol.states.dtype == reference.dtype and bool(sol.converged)


def test_max_iter_stops_early_and_reports_it(key):
    step, init, xs = _case("gru-chaotic", key)
    sol = solve(step, init, xs, method="jacobi", max_iter=5)
    assert int(sol.iterations) == 5 and not bool(sol.converged)
    sol = solve(step, init, xs, method="jacobi", max_iter=10 * T)
    assert int(sol.iterations) == T and bool(sol.converged)


def test_iterates_show_prefix_convergence(key):
    step, init, xs = _case("gru-chaotic", key, length=12)
    reference = solve(step, init, xs, method="sequential").states
    guess = jnp.full((12, 6), 0.3)
    sol = solve(step, init, xs, method="jacobi", guess=guess, return_iterates=True)
    assert sol.iterates.shape == (13, 12, 6)
    np.testing.assert_array_equal(sol.iterates[0], guess)
    np.testing.assert_array_equal(sol.iterates[-1], sol.states)
    for k in range(13):
        np.testing.assert_allclose(sol.iterates[k][:k], reference[:k], atol=1e-12)
    assert not np.allclose(sol.iterates[6][6:], reference[6:], atol=1e-6)


@pytest.mark.parametrize(
    ("name", "methods"),
    [
        ("gru-contracting", PARALLEL),
        ("gru-chaotic", ("deer",)),
        pytest.param("pytree-contracting", ("deer",), marks=pytest.mark.slow),
    ],
)
def test_gradients_equal_those_through_lax_scan(name, methods, key):
    build, gain, make_init = CASES[name]
    step0, init, xs = _case(name, key, length=24)

    def loss(scale, init, xs, method):
        step = lambda s, x: step0(s, scale * x)
        sol = solve_sequence(step, init, xs, method=method, block_size=5, window=7)
        leaves = jax.tree.leaves(sol.states)
        return sum(
            jnp.sum(jnp.sin(leaf) * jnp.arange(leaf.size).reshape(leaf.shape)) for leaf in leaves
        )

    grad = jax.grad(loss, argnums=(0, 1, 2))
    run = jax.jit(lambda *args: {m: grad(*args, m) for m in ("sequential", *methods)})
    grads = run(jnp.asarray(0.8), init, xs)
    for method in methods:
        assert tree_allclose(grads[method], grads["sequential"], rtol=1e-8, atol=1e-9), method


def test_newton_survives_overflowing_jacobian_products():
    # Linearised at the zero guess the step has slope 1000, and the products of step
    # Jacobians overflow float64 after ~100 positions; along the true (saturated)
    # trajectory it contracts. Non-finite Newton updates must fall back to Jacobi ones.
    xs = 0.01 * jnp.cos(jnp.arange(128.0))
    step = lambda s, x: jnp.tanh(1000.0 * s + x)
    run = jax.jit(
        lambda xs: {
            m: solve_sequence(step, jnp.asarray(0.0), xs, method=m)
            for m in ("sequential", "deer", "quasi_deer")
        }
    )
    solutions = run(xs)
    reference = solutions.pop("sequential").states
    for sol in solutions.values():
        assert bool(jnp.all(jnp.isfinite(sol.states))) and bool(sol.converged)
        np.testing.assert_allclose(sol.states, reference, atol=1e-12)


def test_jit_and_vmap_keep_per_member_counts(key):
    step, init, _ = _case("gru-contracting", key)
    batch = (
        np.random.default_rng(0).normal(size=(3, T, 3)) * np.array([0.1, 1.0, 3.0])[:, None, None]
    )
    batched = jax.jit(jax.vmap(lambda xs: solve_sequence(step, init, xs, method="jacobi")))(batch)
    for i in range(3):
        single = solve(step, init, batch[i], method="jacobi")
        assert int(batched.iterations[i]) == int(single.iterations)
        np.testing.assert_allclose(batched.states[i], single.states, atol=1e-12)


def test_autoregressive_continuous_values_and_gradients():
    rng = np.random.default_rng(0)
    a, u = jnp.asarray(rng.normal(size=(T, T)) / np.sqrt(T)), jnp.asarray(rng.normal(size=T))

    def loss(a, u, method):
        causal = lambda x, n: jnp.tanh(jnp.tril(a, k=-1) @ x + n)  # x_t sees x_{<t}
        sol = solve_autoregressive(causal, jnp.zeros(T), u, method=method)
        return jnp.sum(jnp.cos(sol.states)), sol

    grad = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
    methods = ("sequential", "jacobi", "block_gauss_seidel", "jacobi_window", "deer")
    results = jax.jit(lambda a, u: {m: grad(a, u, m) for m in methods})(a, u)
    (_, reference), reference_grads = results.pop("sequential")
    for method, ((_, sol), grads) in results.items():
        assert bool(sol.converged) and int(sol.iterations) < T, method
        np.testing.assert_allclose(sol.states, reference.states, atol=1e-10)
        assert tree_allclose(grads, reference_grads, rtol=1e-8, atol=1e-9), method
    # Newton converges quadratically: far fewer iterations than Jacobi's linear rate
    assert int(results["deer"][0][1].iterations) <= 6
    assert int(results["deer"][0][1].iterations) < int(results["jacobi"][0][1].iterations) - 4


def test_autoregressive_newton_on_a_pytree_is_exact_at_the_cap():
    """DEER on a two-leaf output whose map is far from contracting: prefix convergence
    makes it exact after T iterations even where Newton alone would wander."""
    rng = np.random.default_rng(1)
    a = jnp.asarray(3.0 * rng.normal(size=(T, T)))

    def causal(x, u):
        low = jnp.tril(a, k=-1)
        h = jnp.tanh(low @ x["v"] + u) + 0.1 * (low @ x["w"][:, 0])
        return {"v": h, "w": jnp.stack([jnp.sin(h), h**2], axis=1)}

    guess = {"v": jnp.zeros(T), "w": jnp.zeros((T, 2))}
    u = jnp.asarray(rng.normal(size=T))
    run = jax.jit(
        lambda u: {
            m: solve_autoregressive(causal, guess, u, method=m) for m in ("sequential", "deer")
        }
    )
    results = run(u)
    assert bool(results["deer"].converged) and int(results["deer"].iterations) <= T
    assert tree_allclose(results["deer"].states, results["sequential"].states, atol=1e-9)


def test_bad_input_is_named():
    step = lambda s, x: s + x
    xs = {"a": jnp.ones((5, 2)), "b": jnp.ones((4, 2))}
    with pytest.raises(ValueError, match="leading axis"):
        solve_sequence(lambda s, x: s, jnp.zeros(2), xs)
    with pytest.raises(ValueError, match="method must be one of"):
        solve_sequence(step, jnp.zeros(2), jnp.ones((5, 2)), method="newton")
    with pytest.raises(ValueError, match=r"step\(init, inputs\[0\]\) has shape \(3,\)"):
        solve_sequence(lambda s, x: jnp.ones(3), jnp.zeros(2), jnp.ones((5, 2)))
    with pytest.raises(ValueError, match="every leaf of init must be floating"):
        solve_sequence(lambda s, x: s + 1, jnp.asarray(0), jnp.ones((5,)), method="deer")
    with pytest.raises(ValueError, match="pass length=T"):
        solve_sequence(lambda s, x: s, jnp.zeros(2), None)
    with pytest.raises(ValueError, match=r"init\['h'\] has 1 non-finite"):
        solve_sequence(lambda s, x: s, {"h": jnp.array([0.0, jnp.nan])}, jnp.ones((5, 2)))
    with pytest.raises(ValueError, match="block_size must be an integer >= 1"):
        solve_sequence(
            step, jnp.zeros(2), jnp.ones((5, 2)), method="block_gauss_seidel", block_size=0
        )
    with pytest.raises(ValueError, match="Markov form"):
        solve_autoregressive(lambda x, u: x, jnp.zeros(4), method="quasi_deer")
    with pytest.raises(ValueError, match="every leaf of guess must be floating"):
        solve_autoregressive(lambda x, u: x, jnp.zeros(4, jnp.int32), method="deer")
    with pytest.raises(ValueError, match="guess has shape"):
        solve_sequence(step, jnp.zeros(2), jnp.ones((5, 2)), guess=jnp.zeros((4, 2)))
