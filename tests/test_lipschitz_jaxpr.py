"""Lipschitz upper bounds of any function, from its jaxpr: lower <= sampled exact Jacobian
norms <= upper on MLPs of every activation, a trained MLP, a ReLU CNN and a function of many
primitives; exactness at eps = 0; crown <= interval; agreement with the MLP path; and
the refusal of what it cannot bound, by name."""

import functools
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jacscope.lipschitz import lipschitz_lower, lipschitz_upper
from jacscope.lipschitz._activations import ACTIVATIONS, derivative_bounds
from jacscope.lipschitz._intervals import Interval, interval_norm
from jacscope.lipschitz._preactivation import crown_bounds, ibp_bounds
from jacscope.lipschitz._upper import jacobian_interval
from jacscope.models import init_mlp, mlp_apply
from test_lipschitz import apply, ball_samples, exact_norm

EPS = (0.0, 0.05, 0.3)
NORMS = ("inf", "2")
METHODS = ("interval", "crown")
NUM_SAMPLES = 200
TOL = 1e-9


def bounds_fn(f, norms, with_lower):
    """Compiled (x0, eps (k,), samples {norm: (k, N, d)}) -> {norm: bounds per eps} for f
    (`with_lower`: also `lipschitz_lower`, a short ascent)."""

    def one(x0, eps, samples, norm):
        jac = jax.vmap(jax.jacfwd(f))(samples.reshape(-1, *x0.shape))
        lower = {}
        if with_lower:
            ascent = lipschitz_lower(f, x0, eps, norm, key=jax.random.key(1), num_steps=5)
            lower["lower"] = ascent.value
        return {
            **{m: lipschitz_upper(f, x0, eps, norm, m) for m in METHODS},
            **lower,
            "sampled": jnp.max(exact_norm(jac.reshape(jac.shape[0], -1, x0.size), norm)),
            "centre": exact_norm(jax.jacfwd(f)(x0).reshape(-1, x0.size), norm),
        }

    def every(x0, eps, samples):
        return {
            norm: jax.vmap(one, in_axes=(None, 0, 0, None))(x0, eps, samples[norm], norm)
            for norm in norms
        }

    return jax.jit(every)


def bounds_at(f, x0, norms=NORMS, with_lower=True):
    samples = {
        norm: jnp.asarray(
            np.stack([ball_samples(i, x0, eps, norm, NUM_SAMPLES) for i, eps in enumerate(EPS)])
        )
        for norm in norms
    }
    results = bounds_fn(f, norms, with_lower)(x0, jnp.asarray(EPS), samples)
    return {norm: {k: np.asarray(v) for k, v in r.items()} for norm, r in results.items()}


def check_bounds(r):
    """sampled <= crown <= interval, lower <= crown, and the exact norm at eps = 0."""
    for name in METHODS:
        assert np.all(r["sampled"] <= r[name] * (1 + TOL)), (name, r["sampled"], r[name])
        np.testing.assert_allclose(r[name][0], r["centre"][0], rtol=1e-10)
    assert np.all(r["crown"] <= r["interval"] * (1 + TOL))
    if "lower" in r:
        assert np.all(r["lower"] <= r["crown"] * (1 + TOL)), (r["lower"], r["crown"])
        assert np.all(r["lower"] >= r["centre"] * (1 - TOL))


def mlp_path(params, x0, eps, norm, activation):
    """The MLP path's Jacobian enclosure norms (interval, crown), before its l_2 minima."""
    act = ACTIVATIONS[activation]
    out = {}
    for name, boxes in (("interval", ibp_bounds), ("crown", crown_bounds)):
        derivs = [
            Interval(*derivative_bounds(act, *box)) for box in boxes(params, x0, eps, norm, act)
        ]
        out[name] = interval_norm(jacobian_interval(params, derivs), norm)
    return out


@pytest.mark.parametrize(
    "activation",
    [a if a == "relu" else pytest.param(a, marks=pytest.mark.slow) for a in sorted(ACTIVATIONS)],
)
def test_random_mlp_every_activation(activation):
    params = init_mlp(jax.random.key(0), (4, 10, 10, 3), dtype=jnp.float64)
    x0 = jax.random.normal(jax.random.key(3), (4,), jnp.float64)
    f = functools.partial(apply, params, activation=activation)
    results = bounds_at(f, x0, with_lower=activation in ("relu", "gelu"))
    reference = jax.jit(
        jax.vmap(lambda eps: {n: mlp_path(params, x0, eps, n, activation) for n in NORMS})
    )(jnp.asarray(EPS))
    for norm in NORMS:
        r = results[norm]
        check_bounds(r)
        # two hidden layers: the forward linear bounds are CROWN's back-substitution
        ref = {k: np.asarray(v) for k, v in reference[norm].items()}
        np.testing.assert_allclose(r["interval"], ref["interval"], rtol=1e-10)
        crown = ref["crown"] if norm == "inf" else np.minimum(ref["crown"], ref["interval"])
        np.testing.assert_allclose(r["crown"], crown, rtol=1e-10)
    # the relaxations tighten the bound, so crown <= interval is not vacuous
    assert results["inf"]["crown"][-1] < results["inf"]["interval"][-1] * (1 - 1e-3)


def test_deeper_mlp_interval_matches_and_crown_is_sound():
    params = init_mlp(jax.random.key(1), (4, 8, 8, 8, 2), dtype=jnp.float64)
    x0 = jax.random.normal(jax.random.key(2), (4,), jnp.float64)
    f = functools.partial(apply, params, activation="relu")
    results = bounds_at(f, x0, norms=("inf",))
    reference = jax.jit(jax.vmap(lambda eps: mlp_path(params, x0, eps, "inf", "relu")))(
        jnp.asarray(EPS)
    )
    check_bounds(results["inf"])
    np.testing.assert_allclose(results["inf"]["interval"], reference["interval"], rtol=1e-10)


@pytest.mark.slow
def test_trained_mlp_matches_the_mlp_path():
    key_x, key_w = jax.random.split(jax.random.key(4))
    x = jax.random.normal(key_x, (128, 5), jnp.float64)
    y = (x[:, 0] * x[:, 1] > 0).astype(int)
    params = init_mlp(key_w, (5, 12, 12, 2), dtype=jnp.float64)
    optimizer = optax.adam(1e-2)
    state = optimizer.init(params)

    @jax.jit
    def step(params, state):
        def loss(p):
            return optax.softmax_cross_entropy_with_integer_labels(mlp_apply(p, x), y).mean()

        value, grads = jax.value_and_grad(loss)(params)
        updates, state = optimizer.update(grads, state)
        return optax.apply_updates(params, updates), state, value

    losses = []
    for _ in range(30):
        params, state, value = step(params, state)
        losses.append(float(value))
    assert losses[-1] < 0.9 * losses[0]  # it did train
    f = functools.partial(mlp_apply, params)
    results = bounds_at(f, x[0], norms=("inf",))
    check_bounds(results["inf"])
    mlp = jax.jit(
        jax.vmap(lambda eps: {m: lipschitz_upper(params, x[0], eps, "inf", m) for m in METHODS})
    )(jnp.asarray(EPS))
    for method in METHODS:
        np.testing.assert_allclose(results["inf"][method], mlp[method], rtol=1e-10)


def relu_cnn(kernel, dense, x):
    """conv_general_dilated -> relu -> reshape -> dense, on a (1, 6, 6, 1) image."""
    h = jax.lax.conv_general_dilated(
        x.reshape(1, 6, 6, 1), kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return jax.nn.relu(h).reshape(-1) @ dense


def test_relu_cnn():
    key_k, key_d, key_x = jax.random.split(jax.random.key(7), 3)
    kernel = jax.random.normal(key_k, (3, 3, 1, 2), jnp.float64)
    dense = jax.random.normal(key_d, (32, 3), jnp.float64) / 4
    x0 = jax.random.normal(key_x, (36,), jnp.float64)
    results = bounds_at(functools.partial(relu_cnn, kernel, dense), x0)
    for norm in NORMS:
        check_bounds(results[norm])


def many_primitives(x):
    """Products, erf-GELU, softplus, exp, powers, max / min, reshapes, slices, sums."""
    a = jnp.tanh(x[:3]) * jax.nn.sigmoid(x[1:4])
    b = jax.nn.gelu(x - 0.5, approximate=False) / 3.0 + jnp.exp(-(x**2)) - jnp.square(x) / 4
    c = jnp.minimum(jnp.maximum(x, -0.2), 0.7).reshape(2, 2).T.reshape(-1)
    d = jnp.where(jnp.arange(4) % 2 == 0, jax.nn.softplus(x), -x)
    e = jnp.concatenate([a, b, c[::-1], d, jnp.ones(2)])
    return jnp.stack([e.sum(), (e[:5] * 2.0).sum(), e[3], -e[7]]) + jnp.expm1(x[0] / 2) * x[3]


def test_many_primitives():
    x0 = jnp.asarray([0.3, -0.8, 1.2, 0.1])
    results = bounds_at(many_primitives, x0, norms=("inf",))
    check_bounds(results["inf"])


def test_constants_have_zero_jacobian():
    w = jnp.asarray([[1.0, -2.0], [0.5, 3.0]])
    x0 = jnp.asarray([0.2, -0.1])
    bound = lipschitz_upper(lambda x: jnp.concatenate([x @ w, w[0] * 2.0]), x0, 0.1, "inf")
    np.testing.assert_allclose(bound, np.max(np.sum(np.abs(np.asarray(w).T), axis=1)))


def test_refusals_name_the_primitive():
    x0 = jnp.asarray([0.3, -0.8, 1.2])
    with pytest.raises(ValueError, match="cannot bound the primitive 'sort'"):
        lipschitz_upper(jnp.sort, x0, 0.1)
    with pytest.raises(ValueError, match="cannot bound the primitive 'gt'"):
        lipschitz_upper(lambda x: jnp.where(x > 0, x, 0.0), x0, 0.1)
    with pytest.raises(ValueError, match="cannot bound the primitive 'div'"):
        lipschitz_upper(lambda x: 1.0 / x, x0, 0.1)
    with pytest.raises(ValueError, match="cannot bound the primitive 'dot_general'"):
        lipschitz_upper(lambda x: x @ x, x0, 0.1)
    with pytest.raises(ValueError, match="method"):
        lipschitz_upper(jnp.tanh, x0, 0.1, method="naive")
    with pytest.raises(ValueError, match="activation"):
        lipschitz_upper(jnp.tanh, x0, 0.1, activation="tanh")
    with pytest.raises(ValueError, match="eps"):
        lipschitz_upper(jnp.tanh, x0, -0.1)
    with pytest.raises(ValueError, match="floating-point"):
        lipschitz_upper(jnp.tanh, jnp.arange(3), 0.1)


def test_readme_lipschitz_example_runs():
    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)
    (example,) = [block for block in blocks if "lipschitz_upper(" in block]
    namespace: dict = {}
    exec(compile(example, str(readme), "exec"), namespace)  # noqa: S102
    assert 0 < float(namespace["lower"]) <= float(namespace["upper"]) * (1 + 1e-9)
