"""jacscope.descent in training: the objective Jacobian and Gramian against jax.jacrev,
the optax transformation and the multi-task Jacobians, and the aggregators solved by
iterations (CAGrad, Nash-MTL, FairGrad, GradVac) against their optimality conditions."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import jacscope
from jacscope import descent


def _matrix(m, n, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((m, n)))


def _gru_losses():
    """Per-example losses of a GRU over a sequence (a `lax.scan`), and its parameters."""
    cell = eqx.nn.GRUCell(3, 4, key=jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (5, 6, 3))  # (examples, time, features)
    ys = jax.random.normal(jax.random.key(2), (5, 4))

    def losses(cell, xs, ys):
        def run(x):
            h, _ = jax.lax.scan(lambda h, xt: (cell(xt, h), None), jnp.zeros(4), x)
            return h

        return jnp.sum((jax.vmap(run)(xs) - ys) ** 2, axis=1)

    return losses, cell, xs, ys


def _dense_jacobian(losses, params, *args):
    arrays, static = eqx.partition(params, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(arrays)
    return jax.jacrev(lambda q: losses(eqx.combine(unravel(q), static), *args))(flat)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_objective_jacobian_and_gramian_match_jacrev_through_a_scan(mode):
    losses, cell, xs, ys = _gru_losses()
    dense = _dense_jacobian(losses, cell, xs, ys)
    J = descent.objective_jacobian(losses, cell, xs, ys, mode=mode, chunk_size=2)
    np.testing.assert_allclose(J, dense, rtol=1e-12, atol=1e-12)
    for method in ("jacobian", "products"):
        G = descent.objective_gramian(losses, cell, xs, ys, method=method, chunk_size=2)
        np.testing.assert_allclose(G, dense @ dense.T, rtol=1e-12, atol=1e-12)


def test_objective_errors_name_the_problem():
    losses, cell, xs, ys = _gru_losses()
    with pytest.raises(jacscope.DenseTooLarge, match="bytes"):
        descent.objective_jacobian(losses, cell, xs, ys, max_bytes=100)
    with pytest.raises(ValueError, match="one vector of m losses"):
        descent.objective_gramian(lambda c, x, y: jnp.sum(losses(c, x, y)), cell, xs, ys)
    with pytest.raises(ValueError, match="method must be one of"):
        descent.objective_gramian(losses, cell, xs, ys, method="dense")
    with pytest.raises(ValueError, match="mode must be one of"):
        descent.objective_jacobian(losses, cell, xs, ys, mode="both")


def test_jacobian_descent_chains_with_optax():
    params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
    x = _matrix(4, 2, seed=3)

    def losses(p):
        return jnp.sum((x @ p["w"] + p["b"]) ** 2, axis=1)

    jacobian = jax.jacrev(losses)(params)
    tx = optax.chain(descent.jacobian_descent(descent.upgrad), optax.sgd(0.1))
    updates, _ = tx.update(jacobian, tx.init(params), params)
    J = _dense_jacobian(losses, params)
    expected = -0.1 * descent.upgrad(J)
    np.testing.assert_allclose(ravel_pytree(updates)[0], expected, rtol=1e-12)
    # The mean aggregator gives the gradient of the mean loss.
    mean_tx = descent.jacobian_descent(descent.mean)
    mean_update, _ = mean_tx.update(jacobian, mean_tx.init(params))
    grad = jax.grad(lambda p: jnp.mean(losses(p)))(params)
    np.testing.assert_allclose(ravel_pytree(mean_update)[0], ravel_pytree(grad)[0], rtol=1e-12)
    # A random aggregator draws a new key at every step.
    random_tx = descent.jacobian_descent(descent.random, key=jax.random.key(0))
    state = random_tx.init(params)
    first, state = random_tx.update(jacobian, state)
    second, _ = random_tx.update(jacobian, state)
    assert not np.allclose(ravel_pytree(first)[0], ravel_pytree(second)[0])
    disagree = r"leaf \['b'\] has shape \(3,\) and leaf \['w'\] \(4, 2, 3\)"
    with pytest.raises(ValueError, match=disagree):
        mean_tx.update({"w": jacobian["w"], "b": jnp.ones(3)}, mean_tx.init(params))


def test_multitask_jacobians_equal_jacrev_of_the_whole_model():
    trunk = eqx.nn.MLP(3, 5, 4, 1, key=jax.random.key(0))
    heads = {"class": _matrix(5, 3, seed=1), "parity": _matrix(5, 1, seed=2)}
    x = _matrix(8, 3, seed=4)

    def trunk_fn(trunk, x):
        return jax.vmap(trunk)(x)

    def heads_fn(heads, z):
        return jnp.stack(
            [jnp.mean((z @ heads["class"]) ** 2), jnp.mean(jnp.tanh(z @ heads["parity"]))]
        )

    result = descent.multitask_jacobians(trunk_fn, heads_fn, trunk, heads, x)
    shared_dense = _dense_jacobian(lambda t: heads_fn(heads, trunk_fn(t, x)), trunk)
    rows = jax.vmap(lambda r: ravel_pytree(eqx.filter(r, eqx.is_inexact_array))[0])(
        eqx.filter(result.shared, eqx.is_inexact_array)
    )
    np.testing.assert_allclose(rows, shared_dense, rtol=1e-12, atol=1e-14)
    heads_grad = jax.grad(lambda h: jnp.sum(heads_fn(h, trunk_fn(trunk, x))))(heads)
    for name in heads:
        np.testing.assert_allclose(result.heads[name], heads_grad[name], rtol=1e-12)
    np.testing.assert_allclose(result.losses, heads_fn(heads, trunk_fn(trunk, x)), rtol=1e-12)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_fair_weights_solve_their_stationarity_conditions(alpha):
    J = _matrix(6, 4, seed=5)  # m > n: a singular Gramian, made definite by reg_eps
    G = J @ J.T
    w = descent.fairgrad_weights(G, alpha)
    Gn = G / jnp.linalg.norm(G) + 1e-4 * jnp.eye(6)
    assert bool(jnp.all(w > 0))
    np.testing.assert_allclose(Gn @ w, w ** (-1 / alpha), rtol=1e-9)
    if alpha == 1.0:
        np.testing.assert_allclose(descent.nash_mtl_weights(G, max_norm=0), w, rtol=1e-12)
        clipped = descent.nash_mtl(J, max_norm=0.1)
        np.testing.assert_allclose(jnp.linalg.norm(clipped), 0.1, rtol=1e-9)


@pytest.mark.parametrize("c", [0.2, 0.5, 2.0])
def test_cagrad_closes_the_duality_gap(c):
    """d = A(J) is feasible (||d - g_0|| <= c ||g_0||) and min_i g_i^T d equals the dual
    value F(w) of the simplex weights w it came from: optimal to the solver's tolerance."""
    J = _matrix(5, 8, seed=6)
    weights = descent.cagrad_weights(J @ J.T, c)
    d, g0 = weights @ J, jnp.mean(J, axis=0)
    radius = c * jnp.linalg.norm(g0)
    assert float(jnp.linalg.norm(d - g0)) <= float(radius) * (1 + 1e-9)
    w = (weights - 1 / 5) / jnp.sum(weights - 1 / 5)
    dual = (w @ J) @ g0 + radius * jnp.linalg.norm(w @ J)
    primal = jnp.min(J @ d)
    assert float(dual - primal) <= 1e-6 * float(jnp.abs(dual))
    np.testing.assert_allclose(descent.cagrad(J, 0.0), g0, rtol=1e-12)


def test_gradvac_reaches_its_target_and_updates_it():
    J = jnp.array([[1.0, 0.0], [0.1, 0.995]])  # cos(g_1, g_2) < 0.5
    cos = float(J[0] @ J[1] / (jnp.linalg.norm(J[0]) * jnp.linalg.norm(J[1])))
    # Row 0 aims at 0.5; row 1's target -1 is never undershot, so row 1 stays g_2.
    state = descent.GradVacState(targets=jnp.array([[0.0, 0.5], [-1.0, 0.0]]))
    weights, new = descent.gradvac_weights(J @ J.T, state, beta=0.25)
    np.testing.assert_allclose(weights[0], 1.0, rtol=1e-12)
    moved = J[0] + (weights[1] - 1) * J[1]  # g_1'
    cos_moved = moved @ J[1] / (jnp.linalg.norm(moved) * jnp.linalg.norm(J[1]))
    np.testing.assert_allclose(cos_moved, 0.5, rtol=1e-12)
    np.testing.assert_allclose(new.targets[0, 1], 0.75 * 0.5 + 0.25 * cos, rtol=1e-12)
    np.testing.assert_allclose(new.targets[1, 0], 0.75 * -1 + 0.25 * cos, rtol=1e-12)
    # With zero targets, GradVac is PCGrad.
    K = _matrix(4, 6, seed=8)
    got, _ = descent.gradvac(K, descent.gradvac_init(4), jax.random.key(2))
    np.testing.assert_allclose(got, descent.pcgrad(K, jax.random.key(2)), rtol=1e-12)
