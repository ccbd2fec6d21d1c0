"""jacscope.dynamics fixed points: the Henon map's, the logistic map's period-doubling
points and the Lorenz system's Hopf point against their closed forms, a trained GRU's
fixed points checked by their residuals, and the refusals."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optax
import pytest

from jacscope.dynamics import continue_fixed_point, find_fixed_points, fixed_point_stability

A, B = 1.4, 0.3
SIGMA, BETA = 10.0, 8.0 / 3.0


def henon(s):
    x, y = s
    return jnp.stack([1 - A * x**2 + y, B * x])


def logistic(x, r):
    return r * x * (1 - x)


def lorenz(s, rho):
    x, y, z = s
    return jnp.stack([SIGMA * (y - x), x * (rho - z) - y, x * y - BETA * z])


def _grid(*axes):
    return jnp.asarray(np.stack(np.meshgrid(*axes), axis=-1).reshape(-1, len(axes)))


def test_henon_fixed_points_and_period_two_orbit_match_the_closed_form():
    candidates = _grid(np.linspace(-2, 2, 7), np.linspace(-1, 1, 5))
    found = find_fixed_points(henon, candidates)
    root = np.sqrt((1 - B) ** 2 + 4 * A)
    xs = np.sort([(-(1 - B) - root) / (2 * A), (-(1 - B) + root) / (2 * A)])
    assert found.points.shape == (2, 2)  # deduplicated to exactly two
    order = np.argsort(np.asarray(found.points[:, 0]))
    np.testing.assert_allclose(found.points[order], np.stack([xs, B * xs], 1), atol=1e-13)
    assert found.stability == ("saddle", "saddle")
    np.testing.assert_array_equal(found.unstable_dimension, [1, 1])
    assert np.all(np.asarray(found.residuals) < 1e-12)
    assert int(found.count.sum()) == found.num_converged == int(found.converged.sum())
    for point, eigenvalues in zip(found.points, found.eigenvalues, strict=True):
        reference = np.linalg.eigvals(np.asarray(jax.jacfwd(henon)(point)))
        reference = reference[np.argsort(-np.abs(reference))]
        np.testing.assert_allclose(eigenvalues, reference, atol=1e-12)
    # Jitted and vmapped, the stability alone gives the same.
    stability = jax.jit(jax.vmap(lambda x: fixed_point_stability(henon, x)))(found.points)
    np.testing.assert_allclose(stability.eigenvalues, found.eigenvalues, atol=1e-12)
    np.testing.assert_array_equal(stability.unstable_dimension, [1, 1])
    # F^2: the two fixed points (minimal period 1) and the period-2 orbit, x0 + x1 = (1-b)/a.
    twice = find_fixed_points(henon, candidates, period=2)
    periods = np.asarray(twice.minimal_period)
    assert sorted(periods.tolist()) == [1, 1, 2, 2]
    orbit = np.asarray(twice.points)[periods == 2]
    np.testing.assert_allclose(orbit[:, 0].sum(), (1 - B) / A, atol=1e-12)
    np.testing.assert_allclose(np.asarray(henon(orbit[0])), orbit[1], atol=1e-12)


def test_logistic_period_doubling_points():
    # x* = 1 - 1/r has multiplier 2 - r: through -1 at r = 3.
    r = jnp.linspace(2.5, 3.5, 21)
    branch = continue_fixed_point(logistic, jnp.array([1 - 1 / 2.5]), r)
    assert branch.stopped_at is None and branch.stop_reason is None
    np.testing.assert_allclose(branch.points[:, 0], 1 - 1 / r, atol=1e-13)
    np.testing.assert_allclose(branch.eigenvalues[:, 0].real, 2 - r, atol=1e-12)
    (doubling,) = branch.bifurcations
    assert doubling.type == "period-doubling" and doubling.unstable_dimension == (0, 1)
    assert abs(doubling.parameter - 3.0) < 1e-8
    # The period-2 orbit's multiplier -r^2 + 2r + 4 goes through -1 at r = 1 + sqrt(6).
    r0 = 3.2
    x0 = ((r0 + 1) + np.sqrt((r0 + 1) * (r0 - 3))) / (2 * r0)
    orbit = continue_fixed_point(logistic, jnp.array([x0]), jnp.linspace(r0, 3.6, 17), period=2)
    (doubling,) = orbit.bifurcations
    assert doubling.type == "period-doubling"
    assert abs(doubling.parameter - (1 + np.sqrt(6))) < 1e-8
    np.testing.assert_allclose(doubling.critical_eigenvalue, -1.0, atol=1e-6)
    # The trivial branch x = 0, multiplier r: through +1 at r = 1 (a transcritical point).
    trivial = continue_fixed_point(logistic, jnp.array([0.0]), jnp.linspace(0.55, 1.45, 10))
    (fold,) = trivial.bifurcations
    assert fold.type == "fold" and abs(fold.parameter - 1.0) < 1e-8


def test_lorenz_equilibria_and_hopf_point():
    rho = 28.0
    candidates = _grid(np.linspace(-10, 10, 3), np.linspace(-10, 10, 3), np.linspace(0, 40, 3))
    found = find_fixed_points(lambda s: lorenz(s, rho), candidates, kind="flow")
    c = np.sqrt(BETA * (rho - 1))
    expected = np.array([[-c, -c, rho - 1], [0, 0, 0], [c, c, rho - 1]])
    order = np.argsort(np.asarray(found.points[:, 0]))
    np.testing.assert_allclose(found.points[order], expected, atol=1e-12)
    # The origin has one unstable direction, C+- a complex unstable pair.
    np.testing.assert_array_equal(np.asarray(found.unstable_dimension)[order], [2, 1, 2])
    # C+ continued in rho loses stability through a Hopf point.
    start = 20.0
    c0 = np.sqrt(BETA * (start - 1))
    branch = continue_fixed_point(
        lorenz, jnp.array([c0, c0, start - 1]), jnp.linspace(start, 30.0, 21), kind="flow"
    )
    (hopf,) = branch.bifurcations
    assert hopf.type == "Hopf" and hopf.unstable_dimension == (0, 2)
    exact = SIGMA * (SIGMA + BETA + 3) / (SIGMA - BETA - 1)
    assert abs(hopf.parameter - exact) < 1e-8
    # The origin: a real eigenvalue through 0 at rho = 1 (the pitchfork), rho = 1 on the grid.
    origin = continue_fixed_point(lorenz, jnp.zeros(3), jnp.linspace(0.5, 1.5, 11), kind="flow")
    (pitchfork,) = origin.bifurcations
    assert pitchfork.type == "fold" and abs(pitchfork.parameter - 1.0) < 1e-8


def test_a_branch_that_turns_back_stops_and_says_so():
    # dx/dt = p - x^2: the branch x = sqrt(p) ends at p = 0.
    branch = continue_fixed_point(
        lambda x, p: p - x**2, jnp.ones(1), jnp.linspace(1.0, -0.5, 16), kind="flow"
    )
    assert branch.stopped_at == pytest.approx(-0.1)
    assert "did not converge at parameter -0.1" in branch.stop_reason
    assert branch.parameters.shape == (11,) and float(branch.parameters[-1]) > -1e-12
    np.testing.assert_allclose(branch.points[:9, 0], np.sqrt(branch.parameters[:9]), atol=1e-12)


def test_slow_points_are_reported_as_not_converged():
    # G(x) = (x^2 + 0.1)(x - 3): one zero, and a minimum of q = G^2 / 2 with q > 0 where
    # G'(x) = 0, x = 1 - sqrt(34.8) / 6: a slow point, which is not a fixed point.
    found = find_fixed_points(
        lambda x: x + (x**2 + 0.1) * (x - 3), jnp.array([[0.0], [0.3], [2.5], [3.5]])
    )
    np.testing.assert_array_equal(found.converged, [False, False, True, True])
    np.testing.assert_allclose(found.points, [[3.0]], atol=1e-14)
    np.testing.assert_array_equal(found.candidate, [2])
    slow = 1 - np.sqrt(34.8) / 6
    np.testing.assert_allclose(found.candidate_points[:2, 0], slow, atol=1e-5)
    assert np.all(np.asarray(found.candidate_residuals[:2]) > 0.29)


@eqx.filter_jit
def _trained_gru(key):
    """A GRU trained 200 Adam steps to remember the sign of its last input pulse (a
    one-bit flip-flop); the model, the losses and the hidden states it visits. One
    compiled program: built eagerly, its setup alone would compile dozens."""
    keys = jax.random.split(key, 4)
    cell = eqx.nn.GRUCell(1, 8, key=keys[0])
    readout = eqx.nn.Linear(8, 1, key=keys[1])
    steps, batch = 16, 32
    pulses = jax.random.bernoulli(keys[2], 0.15, (batch, steps))
    signs = jnp.where(jax.random.bernoulli(keys[3], 0.5, (batch, steps)), 1.0, -1.0)
    inputs = (pulses * signs)[..., None]
    last = jax.lax.associative_scan(lambda a, b: jnp.where(b != 0, b, a), inputs, axis=1)

    def run(model, u):
        cell, readout = model

        def one(h, u_t):
            h = cell(u_t, h)
            return h, (h, readout(h))

        _, (hs, ys) = jax.lax.scan(one, jnp.zeros(8), u)
        return hs, ys

    def loss(model):
        _, ys = jax.vmap(run, in_axes=(None, 0))(model, inputs)
        return jnp.mean((ys - last) ** 2)

    optimizer = optax.adam(1e-2)

    def body(carry, _):
        model, state = carry
        value, grads = eqx.filter_value_and_grad(loss)(model)
        updates, state = optimizer.update(grads, state)
        return (eqx.apply_updates(model, updates), state), value

    model = (cell, readout)
    state = optimizer.init(eqx.filter(model, eqx.is_array))
    (model, _), losses = jax.lax.scan(body, (model, state), None, length=200)
    hs, _ = jax.vmap(run, in_axes=(None, 0))(model, inputs)
    return model[0], losses, hs.reshape(-1, 8)


def test_a_trained_gru_fixed_points_have_small_residuals():
    cell, losses, visited = _trained_gru(jax.random.key(0))
    assert float(losses[-1]) < 0.1 * float(losses[0])  # it learned
    step = lambda h: cell(jnp.zeros(1), h)  # noqa: E731
    visited = visited[::8]
    candidates = visited + 0.1 * jax.random.normal(jax.random.key(1), visited.shape)
    tol = 1e-10
    found = find_fixed_points(step, candidates, tol=tol)
    assert found.points.shape[0] >= 1
    moved = jax.jit(jax.vmap(step))(found.points) - found.points
    assert np.all(np.linalg.norm(moved, axis=1) < tol) and np.all(found.residuals < tol)
    # The candidates each point came from converged; those that did not are no point.
    converged = np.asarray(found.converged)
    assert converged[np.asarray(found.candidate)].all()
    assert np.all(np.asarray(found.candidate_residuals)[~converged] > tol)
    assert found.num_converged == converged.sum() == int(found.count.sum())
    assert set(found.stability) <= {"stable", "saddle", "unstable"}
    # Distinct points are apart; matrix-free GMRES Newton steps from near them return them.
    distances = np.linalg.norm(found.points[:, None] - found.points[None], axis=-1)
    assert np.all(distances[~np.eye(len(distances), dtype=bool)] > 1e-6)
    near = found.points + 1e-3 * jax.random.normal(jax.random.key(2), found.points.shape)
    gmres = find_fixed_points(
        step,
        near,
        tol=tol,
        num_steps=0,
        solver=lx.GMRES(rtol=1e-12, atol=1e-14),
        classify=False,
    )
    np.testing.assert_allclose(gmres.points, found.points, atol=1e-10)


def test_pytree_states_and_vmap_over_a_closed_over_parameter():
    # A pytree state: the Henon map on {"x", "y"}.
    def step(s):
        return {"x": 1 - A * s["x"] ** 2 + s["y"], "y": B * s["x"]}

    candidates = {"x": jnp.linspace(-1.5, 1.5, 6), "y": jnp.zeros(6)}
    found = find_fixed_points(step, candidates, classify=False)
    assert found.points["x"].shape == (2,) and found.eigenvalues is None
    assert found.stability is None

    def multiplier(r):
        return fixed_point_stability(lambda x: logistic(x, r), 1 - 1 / r).eigenvalues[0]

    r = jnp.array([2.5, 2.9, 3.2])
    np.testing.assert_allclose(jax.jit(jax.vmap(multiplier))(r).real, 2 - r, atol=1e-12)


def test_bad_input_is_refused_in_one_line():
    ok = jnp.zeros((3, 2))
    with pytest.raises(ValueError, match=r"candidates\['h'\] has 1 non-finite"):
        find_fixed_points(lambda s: s, {"h": jnp.array([[0.0, 1.0], [jnp.nan, 0.0]])})
    with pytest.raises(ValueError, match=r"returns shapes \[\(3,\)\] from a state of shapes"):
        find_fixed_points(lambda x: jnp.ones(3), ok)
    with pytest.raises(ValueError, match="kind must be 'map' or 'flow', got 'ode'"):
        find_fixed_points(henon, ok, kind="ode")
    with pytest.raises(ValueError, match="a flow takes period=1"):
        find_fixed_points(henon, ok, kind="flow", period=2)
    with pytest.raises(ValueError, match=r"candidates\['b'\] has shape \(2, 2\)"):
        find_fixed_points(lambda s: s, {"a": jnp.zeros((3, 2)), "b": jnp.zeros((2, 2))})
    with pytest.raises(ValueError, match="must be floating point"):
        find_fixed_points(lambda x: x, jnp.zeros((3, 2), int))
    with pytest.raises(ValueError, match=r"2 x 2 Jacobian needs 32 bytes .* classify=False"):
        find_fixed_points(henon, ok, max_bytes=16)
    with pytest.raises(ValueError, match="does not bring x0 to a fixed point"):
        continue_fixed_point(lambda x, p: x**2 + p, jnp.ones(1), jnp.array([1.0, 2.0]), kind="flow")
    with pytest.raises(ValueError, match="strictly increasing or decreasing"):
        continue_fixed_point(logistic, jnp.array([0.5]), jnp.array([2.0, 2.5, 2.2]))
    with pytest.raises(ValueError, match="parameters has 1 non-finite"):
        continue_fixed_point(logistic, jnp.array([0.5]), jnp.array([2.0, jnp.inf]))
    with pytest.raises(ValueError, match="x has 1 non-finite"):
        fixed_point_stability(henon, jnp.array([jnp.nan, 0.0]))
