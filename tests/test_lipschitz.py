"""Local Lipschitz bounds: lower <= sampled exact Jacobian norms <= upper on random and
trained MLPs, exactness at eps = 0, crown <= interval <= naive, and the soundness of
every ingredient (activation ranges, linear relaxations, pre-activation boxes)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jacscope.lipschitz import lipschitz_lower, lipschitz_upper
from jacscope.lipschitz._activations import (
    ACTIVATIONS,
    derivative_bounds,
    linear_relaxation,
    value_bounds,
)
from jacscope.lipschitz._preactivation import crown_bounds, ibp_bounds
from jacscope.lipschitz._upper import upper_bounds
from jacscope.models import init_mlp

EPS = (0.0, 0.03, 0.3)
NUM_SAMPLES = 500
NORMS = ("inf", "2")


def apply(params, x, activation):
    """Reference MLP: activation after every layer but the last."""
    fn = ACTIVATIONS[activation].fn
    for layer in params[:-1]:
        x = fn(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def exact_norm(jac, norm):
    """||J||_{p->p} from the dense matrix: max row l1 norm, or the largest singular value."""
    if norm == "inf":
        return jnp.max(jnp.sum(jnp.abs(jac), axis=-1), axis=-1)
    return jnp.linalg.norm(jac, ord=2, axis=(-2, -1))


def ball_samples(seed, x0, eps, norm, num):
    """`num` uniform samples of the p-ball of radius eps around x0 (numpy: no compilation)."""
    rng = np.random.default_rng(seed)
    x0 = np.asarray(x0)
    if norm == "inf":
        return x0 + eps * rng.uniform(-1.0, 1.0, (num, x0.size))
    direction = rng.normal(size=(num, x0.size))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return x0 + eps * direction * rng.uniform(size=(num, 1)) ** (1 / x0.size)


@functools.cache
def bounds_fn(activation):
    """Compiled (params, x0, eps (k,), samples {norm: (k, N, d)}) -> {norm: bounds per eps}."""

    def one(params, x0, eps, samples, norm):
        f = functools.partial(apply, params, activation=activation)
        # all three methods in one pass (lipschitz_upper computes them in this order)
        upper = upper_bounds(params, x0, eps, norm, ACTIVATIONS[activation], "crown")
        lower = lipschitz_lower(f, x0, eps, norm, key=jax.random.key(1))
        sampled = exact_norm(jax.vmap(jax.jacrev(f))(samples), norm)
        at_lower = exact_norm(jax.jacrev(f)(lower.x), norm)
        distance = (
            jnp.max(jnp.abs(lower.x - x0)) if norm == "inf" else jnp.linalg.norm(lower.x - x0)
        )
        return dict(
            upper,
            lower=lower.value,
            at_lower=at_lower,
            distance=distance,
            sampled=jnp.max(sampled),
            centre=exact_norm(jax.jacrev(f)(x0), norm),
        )

    def both(params, x0, eps, samples):
        return {
            norm: jax.vmap(one, in_axes=(None, None, 0, 0, None))(
                params, x0, eps, samples[norm], norm
            )
            for norm in NORMS
        }

    return jax.jit(both)


def intervals_at(params, x0, activation):
    """The bounds of `bounds_fn` at every radius of EPS, for both norms."""
    samples = {
        norm: jnp.asarray(
            np.stack([ball_samples(i, x0, eps, norm, NUM_SAMPLES) for i, eps in enumerate(EPS)])
        )
        for norm in NORMS
    }
    return bounds_fn(activation)(params, x0, jnp.asarray(EPS), samples)


def check_interval(result, activation, norm):
    r = {k: np.asarray(v) for k, v in result.items()}
    tol = 1e-9
    # eps = 0: the interval and CROWN bounds and the lower bound are the exact norm
    for name in ("interval", "crown", "lower"):
        np.testing.assert_allclose(r[name][0], r["centre"][0], rtol=1e-10)
    # soundness: every sampled exact value lies below every upper bound
    for name in ("naive", "interval", "crown"):
        assert np.all(r["sampled"] <= r[name] * (1 + tol)), (name, r["sampled"], r[name])
    # ordering crown <= interval <= naive
    assert np.all(r["crown"] <= r["interval"] * (1 + tol))
    assert np.all(r["interval"] <= r["naive"] * (1 + tol))
    # the lower bound is a value attained inside the ball, at least the centre's
    np.testing.assert_allclose(r["at_lower"], r["lower"], rtol=1e-10)
    assert np.all(r["distance"] <= np.asarray(EPS) * (1 + 1e-12) + 1e-15)
    assert np.all(r["lower"] >= r["centre"] * (1 - tol))
    assert np.all(r["lower"] <= r["crown"] * (1 + tol))
    if activation != "relu":
        # smooth networks: the ascent beats uniform sampling of the ball
        assert np.all(r["lower"] >= r["sampled"] * (1 - 1e-6)), (r["lower"], r["sampled"])


@pytest.fixture(scope="module")
def random_mlp():
    return init_mlp(jax.random.key(0), (5, 12, 12, 3), dtype=jnp.float64)


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_random_mlp_interval(random_mlp, activation):
    x0 = jax.random.normal(jax.random.key(3), (5,), jnp.float64)
    results = intervals_at(random_mlp, x0, activation)
    for norm in NORMS:
        check_interval(results[norm], activation, norm)
    # the linear relaxation is strictly tighter somewhere, so the ordering is not vacuous
    assert float(results["inf"]["crown"][1]) < float(results["inf"]["interval"][1]) * (1 - 1e-3)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_trained_mlp_interval(activation):
    key_x, key_w = jax.random.split(jax.random.key(4))
    x = jax.random.normal(key_x, (256, 5), jnp.float64)
    y = (x[:, 0] * x[:, 1] > 0).astype(int) + (x[:, 2] > 0.5).astype(int)
    params = init_mlp(jax.random.key(5), (5, 12, 12, 3), dtype=jnp.float64)
    optimizer = optax.adam(1e-2)

    def loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(apply(p, x, activation), y).mean()

    def step(carry, _):
        p, state = carry
        value, grads = jax.value_and_grad(loss)(p)
        updates, state = optimizer.update(grads, state)
        return (optax.apply_updates(p, updates), state), value

    (trained, _), losses = jax.jit(
        lambda p: jax.lax.scan(step, (p, optimizer.init(p)), length=300)
    )(params)
    assert float(losses[-1]) < 0.5 * float(losses[0])  # it did train
    results = intervals_at(trained, x[0], activation)
    for norm in NORMS:
        check_interval(results[norm], activation, norm)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_activation_ranges_and_relaxations_are_sound(activation):
    act = ACTIVATIONS[activation]
    key_a, key_b = jax.random.split(jax.random.key(6))
    centre = 3.0 * jax.random.normal(key_a, (400,), jnp.float64)
    width = jnp.abs(2.0 * jax.random.normal(key_b, (400,), jnp.float64))
    lo, hi = centre - width, centre + width

    @jax.jit
    def compute(lo, hi):
        z = lo[:, None] + (hi - lo)[:, None] * jnp.linspace(0.0, 1.0, 2001)
        derivs = jax.vmap(jax.vmap(jax.grad(act.fn)))(z)
        bounds = value_bounds(act, lo, hi), derivative_bounds(act, lo, hi)
        closed_form = act.derivative(z)
        return z, act.fn(z), derivs, closed_form, bounds, linear_relaxation(act, lo, hi)

    z, values, derivs, closed_form, ((v_lo, v_hi), (d_lo, d_hi)), rel = compute(lo, hi)
    np.testing.assert_allclose(closed_form, derivs, rtol=1e-12, atol=1e-14)
    tol = 1e-12
    assert np.all(values >= v_lo[:, None] - tol) and np.all(values <= v_hi[:, None] + tol)
    assert np.all(derivs >= d_lo[:, None] - tol) and np.all(derivs <= d_hi[:, None] + tol)
    below = rel.lower_slope[:, None] * z + rel.lower_icpt[:, None]
    above = rel.upper_slope[:, None] * z + rel.upper_icpt[:, None]
    assert np.all(below <= values + tol) and np.all(values <= above + tol)
    # the ranges are exact (attained up to the grid spacing), not merely sound
    np.testing.assert_allclose(values.min(axis=1), v_lo, atol=1e-4)
    np.testing.assert_allclose(values.max(axis=1), v_hi, atol=1e-4)
    if activation != "relu":
        np.testing.assert_allclose(derivs.min(axis=1), d_lo, atol=1e-4)
        np.testing.assert_allclose(derivs.max(axis=1), d_hi, atol=1e-4)
        # each line touches sigma: the relaxation is as tight as its slope allows
        np.testing.assert_allclose(np.min(values - below, axis=1), 0.0, atol=1e-4)
        np.testing.assert_allclose(np.min(above - values, axis=1), 0.0, atol=1e-4)


def test_gelu_critical_points():
    act = ACTIVATIONS["gelu"]
    d1 = jax.grad(act.fn)
    d2 = jax.grad(d1)
    for point in act.inflections:
        assert abs(float(d2(point))) < 1e-12
        assert float(d2(point - 1e-6)) * float(d2(point + 1e-6)) < 0
    (minimum,) = act.stationary
    assert abs(float(d1(minimum))) < 1e-12
    np.testing.assert_allclose(act.lipschitz, float(d1(act.inflections[1])), rtol=1e-14)


def test_preactivation_boxes_are_sound_and_nested(random_mlp):
    x0 = jax.random.normal(jax.random.key(7), (5,), jnp.float64)
    act = ACTIVATIONS["gelu"]
    eps = 0.5
    boxes = jax.jit(
        lambda p, x: {
            n: (ibp_bounds(p, x, eps, n, act), crown_bounds(p, x, eps, n, act))
            for n in ("inf", "2")
        }
    )(random_mlp, x0)
    for norm, (ibp, crown) in boxes.items():
        h = ball_samples(8, x0, eps, "inf" if norm == "inf" else 2, 2000)
        for layer, box_i, box_c in zip(random_mlp[:-1], ibp, crown, strict=True):
            z = h @ np.asarray(layer["w"]) + np.asarray(layer["b"])
            assert np.all(z >= box_c.lower - 1e-12) and np.all(z <= box_c.upper + 1e-12)
            assert np.all(box_c.lower >= box_i.lower) and np.all(box_c.upper <= box_i.upper)
            h = np.asarray(act.fn(z))
        assert np.all(crown[-1].upper - crown[-1].lower < ibp[-1].upper - ibp[-1].lower)


def test_public_upper_bound_matches_the_methods(random_mlp):
    methods = ("naive", "interval", "crown")

    @jax.jit
    def compute(params, x0):
        public = [lipschitz_upper(params, x0, 0.2, 2, m, activation="relu") for m in methods]
        return public, upper_bounds(params, x0, 0.2, "2", ACTIVATIONS["relu"], "crown")

    public, every = compute(random_mlp, jnp.linspace(-1.0, 1.0, 5))
    np.testing.assert_allclose(public, [every[m] for m in methods], rtol=1e-14)


def test_bad_arguments_are_named(random_mlp):
    x0 = jnp.zeros(5)
    with pytest.raises(ValueError, match=r"x0 expects shape \(5,\)"):
        lipschitz_upper(random_mlp, jnp.zeros(4), 0.1)
    broken = [random_mlp[0], {"w": random_mlp[1]["w"][:3], "b": random_mlp[1]["b"]}]
    with pytest.raises(ValueError, match=r"params\[1\]\['w'\] has 3 inputs"):
        lipschitz_upper(broken, x0, 0.1)
    with pytest.raises(ValueError, match="norm"):
        lipschitz_upper(random_mlp, x0, 0.1, norm=1)
    with pytest.raises(ValueError, match="method"):
        lipschitz_upper(random_mlp, x0, 0.1, method="lp")
    with pytest.raises(ValueError, match="activation"):
        lipschitz_upper(random_mlp, x0, 0.1, activation="swish")
    with pytest.raises(ValueError, match="eps"):
        lipschitz_lower(jnp.sin, x0, -0.1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="num_steps"):
        lipschitz_lower(jnp.sin, x0, 0.1, key=jax.random.key(0), num_steps=0)
