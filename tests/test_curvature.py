"""Curvature operators against dense references from `jax.hessian` and `jax.jacfwd`.

Float64 throughout (conftest). Each fast product is compared with a deliberately naive
dense matrix: the Hessian of the flattened loss from `jax.hessian`, the GGN from the
output Jacobian (`jax.jacfwd`) and per-example output Hessians (`jax.hessian` of a
separately written loss), the empirical Fisher and gradient covariance from the
per-example gradients (`jax.jacrev`).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jacscope
from jacscope import curvature
from jacscope._parameters import ravel_parameters

# models -------------------------------------------------------------------------------


class SmallCNN(eqx.Module):
    """Conv 1 -> 2 channels (3 x 3) on 5 x 5 images, ReLU, linear to 3 outputs."""

    conv: eqx.nn.Conv2d
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.conv = eqx.nn.Conv2d(1, 2, 3, key=k1)
        self.head = eqx.nn.Linear(2 * 3 * 3, 3, key=k2)

    def __call__(self, image):
        return self.head(jax.nn.relu(self.conv(image)).reshape(-1))


def _vmapped(model, x):
    return jax.vmap(model)(x)


def _dict_mlp(params, x):
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def make_model(name, outputs=3):
    """`(model_fn, params, inputs (6, ...))` of a tiny model."""
    k1, k2, k3 = jax.random.split(jax.random.key(7), 3)
    if name == "relu_mlp":  # an equinox Module whose activations are non-array leaves
        params = eqx.nn.MLP(3, outputs, 4, 2, activation=jax.nn.relu, key=k1)
        return _vmapped, params, jax.random.normal(k2, (6, 3))
    if name == "dict_mlp":
        params = {
            "w1": jax.random.normal(k1, (3, 4)) / 2,
            "b1": 0.1 * jnp.arange(4.0),
            "w2": jax.random.normal(k3, (4, outputs)) / 2,
            "b2": jnp.zeros(outputs),
        }
        return _dict_mlp, params, jax.random.normal(k2, (6, 3))
    if name == "cnn":
        return _vmapped, SmallCNN(k1), jax.random.normal(k2, (6, 1, 5, 5))
    raise AssertionError(name)


def make_targets(loss, outputs_shape):
    key = jax.random.key(3)
    if loss == "cross_entropy":
        return jax.random.randint(key, outputs_shape[:1], 0, outputs_shape[1])
    if loss == "mse":
        return jax.random.normal(key, outputs_shape)
    return jax.random.uniform(key, outputs_shape)


# reference losses, written apart from jacscope's ----------------------------------------


def reference_loss(loss, z, y):
    """One example's loss, from its definition."""
    if loss == "cross_entropy":
        return -jnp.log(jax.nn.softmax(z)[y])
    if loss == "mse":
        return jnp.sum((z - y) ** 2)
    sigma = jax.nn.sigmoid(z)
    return -jnp.sum(y * jnp.log(sigma) + (1 - y) * jnp.log(1 - sigma))


def per_example_losses(model_fn, loss, params, x, y):
    z = model_fn(params, x)
    return jax.vmap(lambda zn, yn: reference_loss(loss, zn, yn))(z, y)


def batch_loss(model_fn, loss, reduction):
    """`(params, (x, y)) -> scalar`, the mean or sum of the reference losses."""
    reduce = jnp.mean if reduction == "mean" else jnp.sum
    return lambda params, batch: reduce(per_example_losses(model_fn, loss, params, *batch))


def dense_hessian(loss_fn, params, batch):
    flat, unravel = ravel_parameters(params)
    return np.asarray(jax.jit(jax.hessian(lambda f: loss_fn(unravel(f), batch)))(flat))


def dense_ggn(model_fn, loss, params, x, y, reduction):
    flat, unravel = ravel_parameters(params)
    z = model_fn(params, x)
    jac = jax.jit(jax.jacfwd(lambda f: model_fn(unravel(f), x)))(flat)
    jac = jac.reshape(z.shape[0], -1, flat.size)
    hess = jax.jit(jax.vmap(jax.hessian(lambda zn, yn: reference_loss(loss, zn, yn))))(z, y)
    total = np.einsum("nip,nij,njq->pq", jac, hess, jac)
    return total / z.shape[0] if reduction == "mean" else total


def per_example_gradients(model_fn, loss, params, x, y):
    flat, unravel = ravel_parameters(params)
    return np.asarray(
        jax.jit(jax.jacrev(lambda f: per_example_losses(model_fn, loss, unravel(f), x, y)))(flat)
    )


def close(a, b, tol=1e-10):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(1.0, float(np.abs(b).max()))
    return np.allclose(a, b, rtol=0, atol=tol * scale)


def split_batches(x, y, sizes=(4, 2)):
    """A zero-argument function yielding (x, y) in batches of `sizes` examples."""
    edges = np.cumsum((0,) + tuple(sizes))
    return lambda: ((x[a:b], y[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True))


def dense(op):
    """`dense(op)` in one chunk (no memory analysis: tests build small matrices)."""
    return np.asarray(op.materialize(chunk_size=op.shape[1]))


_slow = pytest.mark.slow
CASES = [  # (model, loss, reduction): every model, loss and reduction at least once
    ("relu_mlp", "cross_entropy", "mean"),
    pytest.param("relu_mlp", "mse", "sum", marks=_slow),
    ("relu_mlp", "bernoulli", "sum"),
    pytest.param("dict_mlp", "cross_entropy", "sum", marks=_slow),
    pytest.param("cnn", "cross_entropy", "mean", marks=_slow),
    ("cnn", "mse", "mean"),
]


# the loss Hessian -------------------------------------------------------------------------


@pytest.mark.parametrize("model, loss, reduction", CASES)
def test_hessian_matches_jax_hessian(model, loss, reduction):
    model_fn, params, x = make_model(model)
    y = make_targets(loss, model_fn(params, x).shape)
    loss_fn = batch_loss(model_fn, loss, reduction)
    op = curvature.hessian_operator(loss_fn, params, (x, y), reduction=reduction)
    reference = dense_hessian(loss_fn, params, (x, y))
    assert op.shape == reference.shape
    assert close(dense(op), reference)
    v = jax.random.normal(jax.random.key(1), (op.shape[0],))
    assert close(op.mv(v), reference @ v)
    assert close(op.rmv(v), op.mv(v), 1e-14)


@pytest.mark.parametrize("reduction", ["mean", pytest.param("sum", marks=_slow)])
def test_hessian_streamed_equals_one_batch(reduction):
    model_fn, params, x = make_model("dict_mlp")
    y = make_targets("cross_entropy", (6, 3))
    loss_fn = batch_loss(model_fn, "cross_entropy", reduction)
    op = curvature.hessian_operator(loss_fn, params, split_batches(x, y), reduction=reduction)
    assert op.streamed()
    reference = dense_hessian(loss_fn, params, (x, y))
    v = jax.random.normal(jax.random.key(2), (op.shape[0],))
    assert close(op.mv(v), reference @ v)
    assert close(jax.jit(lambda o, v: o.mv(v))(op, v), reference @ v)


def test_hessian_of_a_dict_batch_and_a_list_of_params():
    key1, key2 = jax.random.split(jax.random.key(4))
    params = [jax.random.normal(key1, (3,)), {"scale": jnp.asarray(0.7), "steps": 3}]
    batch = {"x": jax.random.normal(key2, (5, 3)), "t": jnp.linspace(-1.0, 1.0, 5)}

    def loss_fn(p, b):
        pred = jnp.sin(b["x"] @ p[0]) * p[1]["scale"] ** p[1]["steps"]
        return jnp.mean((pred - b["t"]) ** 2)

    op = curvature.hessian_operator(loss_fn, params, batch)
    assert op.shape == (4, 4)  # the integer leaf is held fixed
    assert close(dense(op), dense_hessian(loss_fn, params, batch))
    tree = op.unravel_params(jnp.arange(4.0))
    assert tree[1]["steps"] == 3 and close(op.ravel_params(tree), jnp.arange(4.0))


# GGN, empirical Fisher, gradient covariance ----------------------------------------------


@pytest.mark.parametrize("model, loss, reduction", CASES)
def test_ggn_matches_dense(model, loss, reduction):
    model_fn, params, x = make_model(model)
    y = make_targets(loss, model_fn(params, x).shape)
    op = curvature.ggn_operator(model_fn, params, (x, y), loss=loss, reduction=reduction)
    reference = dense_ggn(model_fn, loss, params, x, y, reduction)
    matrix = dense(op)
    assert close(matrix, reference)
    assert close(matrix, matrix.T, 1e-14)
    assert np.linalg.eigvalsh(matrix).min() > -1e-10 * np.abs(reference).max()


def test_ggn_equals_hessian_for_a_linear_model_and_mse():
    key1, key2, key3 = jax.random.split(jax.random.key(5), 3)
    params = {"w": jax.random.normal(key1, (4, 2)), "b": jnp.ones(2)}
    x, y = jax.random.normal(key2, (7, 4)), jax.random.normal(key3, (7, 2))

    def linear(p, inputs):
        return inputs @ p["w"] + p["b"]

    ggn = curvature.ggn_operator(linear, params, (x, y), loss="mse")
    hessian = curvature.hessian_operator(batch_loss(linear, "mse", "mean"), params, (x, y))
    assert close(dense(ggn), dense(hessian))


def test_ggn_with_one_hot_class_weights_equals_labels():
    model_fn, params, x = make_model("dict_mlp")
    labels = make_targets("cross_entropy", (6, 3))
    one_hot = jax.nn.one_hot(labels, 3)
    by_labels = curvature.ggn_operator(model_fn, params, (x, labels), loss="cross_entropy")
    by_weights = curvature.ggn_operator(model_fn, params, (x, one_hot), loss="cross_entropy")
    assert close(dense(by_labels), dense(by_weights))


def test_ggn_is_jt_h_j_of_the_output_jacobian():
    model_fn, params, x = make_model("cnn")
    y = make_targets("bernoulli", (6, 3))
    jac_op = curvature.output_jacobian_operator(model_fn, params, x)
    flat, unravel = ravel_parameters(params)
    jac = np.asarray(jax.jit(jax.jacfwd(lambda f: model_fn(unravel(f), x).reshape(-1)))(flat))
    assert jac_op.shape == (18, flat.size)
    assert close(dense(jac_op), jac)
    u = jax.random.normal(jax.random.key(6), (18,))
    assert close(jac_op.rmv(u), jac.T @ u)
    sigma = jax.nn.sigmoid(model_fn(params, x)).reshape(-1)
    expected = jac.T @ np.diag(sigma * (1 - sigma)) @ jac
    ggn = curvature.ggn_operator(model_fn, params, (x, y), loss="bernoulli", reduction="sum")
    assert close(dense(ggn), expected)


@pytest.mark.parametrize(
    "model, loss, reduction",
    [("relu_mlp", "cross_entropy", "mean"), pytest.param("cnn", "mse", "sum", marks=_slow)],
)
def test_empirical_fisher_matches_per_example_gradients(model, loss, reduction):
    model_fn, params, x = make_model(model)
    y = make_targets(loss, model_fn(params, x).shape)
    grads = per_example_gradients(model_fn, loss, params, x, y)
    expected = grads.T @ grads / (len(grads) if reduction == "mean" else 1)
    op = curvature.empirical_fisher_operator(
        model_fn, params, (x, y), loss=loss, reduction=reduction
    )
    assert close(dense(op), expected)


@pytest.mark.parametrize("loss", ["cross_entropy", pytest.param("bernoulli", marks=_slow)])
def test_gradient_covariance_matches_per_example_gradients(loss):
    model_fn, params, x = make_model("relu_mlp")
    y = make_targets(loss, model_fn(params, x).shape)
    grads = per_example_gradients(model_fn, loss, params, x, y)
    centred = grads - grads.mean(axis=0)
    expected = centred.T @ centred / len(grads)
    op = curvature.gradient_covariance_operator(model_fn, params, (x, y), loss=loss)
    assert close(dense(op), expected)
    streamed = curvature.gradient_covariance_operator(
        model_fn, params, split_batches(x, y), loss=loss
    )
    assert close(dense(streamed), expected)


@pytest.mark.parametrize(
    "factory",
    [
        curvature.ggn_operator,
        pytest.param(curvature.empirical_fisher_operator, marks=_slow),
        pytest.param(curvature.gradient_covariance_operator, marks=_slow),
    ],
)
def test_model_operators_streamed_equal_one_batch(factory):
    model_fn, params, x = make_model("relu_mlp")
    y = make_targets("cross_entropy", (6, 3))
    whole = factory(model_fn, params, (x, y), loss="cross_entropy")
    streamed = factory(model_fn, params, split_batches(x, y), loss="cross_entropy")
    V = jax.random.normal(jax.random.key(8), (whole.shape[0], 2))
    assert close(streamed.mm(V), whole.mm(V))
    assert close(jax.jit(lambda o, v: o.mv(v))(streamed, V[:, 0]), whole.mv(V[:, 0]))
    assert close(eqx.filter_jit(lambda o, v: o.rmv(v))(whole, V[:, 1]), whole.mv(V[:, 1]))


def test_ggn_sum_reduction_over_streamed_batches():
    model_fn, params, x = make_model("dict_mlp")
    y = make_targets("mse", (6, 3))
    op = curvature.ggn_operator(model_fn, params, split_batches(x, y), loss="mse", reduction="sum")
    assert close(dense(op), dense_ggn(model_fn, "mse", params, x, y, "sum"))


# materialisation and jacscope.linalg, unchanged ------------------------------------------


def test_materialize_under_a_tiny_budget_raises():
    model_fn, params, x = make_model("relu_mlp")
    y = make_targets("cross_entropy", (6, 3))
    op = curvature.ggn_operator(model_fn, params, (x, y), loss="cross_entropy")
    with pytest.raises(jacscope.DenseTooLarge) as info:
        op.materialize(max_bytes=64)
    assert info.value.needed_bytes == op.shape[0] ** 2 * 8
    assert close(op.materialize(max_bytes=10**6), dense(op))


def _small_loss():
    model_fn, params, x = make_model("dict_mlp")
    y = make_targets("cross_entropy", (6, 3))
    return batch_loss(model_fn, "cross_entropy", "mean"), params, x, y


@pytest.mark.parametrize("streamed", [False, pytest.param(True, marks=_slow)])
def test_eigh_topk_of_the_hessian_matches_numpy(streamed):
    loss_fn, params, x, y = _small_loss()
    data = split_batches(x, y) if streamed else (x, y)
    op = curvature.hessian_operator(loss_fn, params, data)
    exact = np.linalg.eigvalsh(dense_hessian(loss_fn, params, (x, y)))
    values, vectors, info = jacscope.linalg.eigh_topk(op, 3, key=jax.random.key(0), depth=23)
    assert np.allclose(values, exact[::-1][:3], atol=1e-9)
    assert info.num_matvecs == 26


def test_hutchinson_trace_within_four_standard_errors():
    model_fn, params, x = make_model("cnn")
    y = make_targets("cross_entropy", (6, 3))
    loss_fn = batch_loss(model_fn, "cross_entropy", "mean")
    op = curvature.hessian_operator(loss_fn, params, (x, y))
    exact = np.trace(dense_hessian(loss_fn, params, (x, y)))
    estimate = jacscope.linalg.trace(
        op, key=jax.random.key(11), method="hutchinson", num_matvecs=40
    )
    assert estimate.num_matvecs == 40 and estimate.stderr > 0
    assert abs(estimate.value - exact) < 4 * estimate.stderr


def test_logdet_of_a_damped_ggn():
    model_fn, params, x = make_model("dict_mlp")
    y = make_targets("cross_entropy", (6, 3))
    op = curvature.ggn_operator(model_fn, params, (x, y), loss="cross_entropy")
    damped = op + 0.1 * jacscope.identity(op.shape[0])
    dense = dense_ggn(model_fn, "cross_entropy", params, x, y, "mean") + 0.1 * np.eye(op.shape[0])
    estimate = jacscope.linalg.logdet(damped, key=jax.random.key(0))
    assert np.isclose(estimate.value, np.linalg.slogdet(dense)[1], atol=1e-9)


@pytest.mark.slow
def test_spectral_density_of_the_ggn():
    model_fn, params, x = make_model("dict_mlp")
    y = make_targets("cross_entropy", (6, 3))
    op = curvature.ggn_operator(model_fn, params, (x, y), loss="cross_entropy")
    density = jacscope.linalg.spectral_density(
        op, key=jax.random.key(0), kind="eigen", num_probes=4, depth=10
    )
    assert density.dimension == op.shape[0] and np.all(np.isfinite(density.density))


# errors: one line, naming the culprit ---------------------------------------------------


def _mlp_case():
    model_fn, params, x = make_model("dict_mlp")
    return model_fn, params, x, make_targets("cross_entropy", (6, 3))


def test_unknown_loss_lists_the_valid_ones():
    model_fn, params, x, y = _mlp_case()
    with pytest.raises(ValueError, match=r"loss must be one of \('cross_entropy', 'mse', "):
        curvature.ggn_operator(model_fn, params, (x, y), loss="hinge")


def test_unknown_reduction():
    model_fn, params, x, y = _mlp_case()
    with pytest.raises(ValueError, match="reduction must be one of"):
        curvature.empirical_fisher_operator(model_fn, params, (x, y), loss="mse", reduction="max")


@pytest.mark.parametrize(
    "loss, targets, message",
    [
        ("cross_entropy", jnp.zeros((5,), int), r"labels of shape \(5,\) do not match outputs"),
        ("cross_entropy", jnp.zeros((6, 4)), r"targets of shape \(6, 4\) do not match"),
        ("mse", jnp.zeros((6, 1)), r"targets of shape \(6, 1\) do not match outputs of shape"),
        ("bernoulli", jnp.full((6, 3), 2.0), r"needs targets in \[0, 1\]"),
        ("cross_entropy", jnp.full((6,), 3), r"label 3 is outside \[0, 3\)"),
    ],
)
def test_targets_that_do_not_fit_the_outputs(loss, targets, message):
    model_fn, params, x, _ = _mlp_case()
    with pytest.raises(ValueError, match=message):
        curvature.ggn_operator(model_fn, params, (x, targets), loss=loss)


def test_non_finite_parameter_leaf_is_named():
    model_fn, params, x, y = _mlp_case()
    params = dict(params, b1=params["b1"].at[2].set(jnp.nan))
    with pytest.raises(ValueError, match=r"params\['b1'\] has 1 non-finite"):
        curvature.hessian_operator(batch_loss(model_fn, "mse", "mean"), params, (x, y))
    with pytest.raises(ValueError, match=r"params\['b1'\]"):
        curvature.output_jacobian_operator(model_fn, params, x)


def test_bad_data_is_refused():
    model_fn, params, x, y = _mlp_case()
    loss_fn = batch_loss(model_fn, "cross_entropy", "mean")
    with pytest.raises(TypeError, match="data is an iterator"):
        curvature.hessian_operator(loss_fn, params, iter([(x, y)]))
    with pytest.raises(ValueError, match="yielded no batches"):
        curvature.hessian_operator(loss_fn, params, lambda: [])
    with pytest.raises(ValueError, match=r"must be a pair \(inputs, targets\), received a dict"):
        curvature.ggn_operator(model_fn, params, {"x": x, "y": y}, loss="mse")
    with pytest.raises(ValueError, match=r"differ in their example axis"):
        curvature.hessian_operator(loss_fn, params, lambda: [(x, y[:4])])
    with pytest.raises(ValueError, match="loss_fn must return a floating-point scalar"):
        curvature.hessian_operator(lambda p, b: model_fn(p, b[0]), params, (x, y))
    with pytest.raises(ValueError, match="loss_fn fails on params and the batch"):
        curvature.hessian_operator(lambda p, b: model_fn(p, b[1]).sum(), params, (x, y))
    with pytest.raises(ValueError, match=r"outputs of shape \(6, 3\) for 5 inputs"):
        curvature.output_jacobian_operator(lambda p, b: model_fn(p, x), params, x[:5])
