"""The MLP: initialisation statistics, forward pass (tanh GELU), loss and accuracy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jacscope.models import accuracy, classification_loss, cross_entropy, init_mlp, mlp_apply

# jax.nn.initializers.lecun_normal: a standard normal truncated to [-2, 2], divided by its
# standard deviation (this constant), times sqrt(1 / fan_in).
_TRUNC_STD = 0.87962566103423978


def _gelu_tanh(z):
    return 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))


def _gelu_erf(z):
    from scipy.special import erf

    return 0.5 * z * (1 + erf(z / np.sqrt(2)))


def _numpy_mlp(params, x, act):
    h = np.asarray(x, np.float64)
    for layer in params[:-1]:
        h = act(h @ np.asarray(layer["w"]) + np.asarray(layer["b"]))
    return h @ np.asarray(params[-1]["w"]) + np.asarray(params[-1]["b"])


@pytest.mark.parametrize("sizes", [(64, 64, 10), (5, 7, 9, 11, 3)])
def test_init_shapes_any_depth(key, sizes):
    params = init_mlp(key, sizes)
    assert len(params) == len(sizes) - 1
    for layer, fan_in, fan_out in zip(params, sizes[:-1], sizes[1:], strict=True):
        assert layer["w"].shape == (fan_in, fan_out)
        assert layer["b"].shape == (fan_out,)
        assert layer["w"].dtype == jnp.float64  # float64 is on in tests
    assert init_mlp(key, sizes)[0]["w"].tolist() == params[0]["w"].tolist()


def test_init_dtype_and_keys(key):
    params = init_mlp(key, (4, 2), dtype=jnp.float32)  # no hidden layer: one affine map
    assert [layer["w"].shape for layer in params] == [(4, 2)]
    assert params[0]["w"].dtype == jnp.float32 and params[0]["b"].dtype == jnp.float32
    other = init_mlp(jax.random.fold_in(key, 1))
    assert not np.allclose(other[0]["w"], init_mlp(key)[0]["w"])


def test_init_rejects_bad_sizes(key):
    with pytest.raises(ValueError, match="sizes"):
        init_mlp(key, (64,))
    with pytest.raises(ValueError, match="sizes"):
        init_mlp(key, (64, 0, 10))


# One wide network serves both statistics tests (one compilation): many kernel entries,
# and thin layers between wide ones for many biases. The first hidden width, 1500,
# sets the bias scale of every layer, the output layer included.
WIDE = (256, 1500, 3, 1500, 64)


@pytest.fixture(scope="module")
def wide_params():
    return init_mlp(jax.random.key(1), WIDE)


def test_kernels_truncated_lecun_normal(wide_params):
    # Scale each kernel by sqrt(fan_in): LeCun normal then has unit variance.
    z = np.concatenate(
        [
            np.asarray(layer["w"]).ravel() * np.sqrt(fan_in)
            for layer, fan_in in zip(wide_params, WIDE[:-1], strict=True)
        ]
    )
    n = z.size
    m4 = np.mean(z**4)
    assert abs(z.mean()) < 4 / np.sqrt(n)
    assert abs(z.var() - 1.0) < 4 * np.sqrt((m4 - 1.0) / n)
    # Truncation at two standard deviations of the underlying normal: nothing beyond,
    # and the bound is nearly reached (a plain normal exceeds it 4.55% of the time).
    bound = 2 / _TRUNC_STD
    assert np.abs(z).max() <= bound * (1 + 1e-12)
    assert np.abs(z).max() > 0.99 * bound
    # The standard normal truncated to [-2, 2] and rescaled to unit variance has
    # fourth moment about 2.36; a normal's would be 3.
    assert m4 < 2.7
    # Each layer has its own scale 1 / fan_in (checked on the two largest kernels).
    for layer, fan_in in zip(wide_params, WIDE[:-1], strict=True):
        w = np.asarray(layer["w"]).ravel() * np.sqrt(fan_in)
        if w.size > 10_000:
            assert abs(w.var() - 1.0) < 4 * np.sqrt((np.mean(w**4) - 1.0) / w.size)


def test_biases_normal_with_hidden_width_scale(wide_params):
    sigma = 1500**-0.5
    for layer in wide_params:
        b = np.asarray(layer["b"]) / sigma
        assert abs(b.mean()) < 4 / np.sqrt(b.size)
    b = np.concatenate([np.asarray(layer["b"]) for layer in wide_params]) / sigma
    n = b.size
    assert abs(b.var() - 1.0) < 4 * np.sqrt(2 / n)
    for layer in (wide_params[0], wide_params[-1]):  # first and output layers
        one = np.asarray(layer["b"]) / sigma
        assert abs(one.var() - 1.0) < 4 * np.sqrt(2 / one.size)
    # Not truncated: P(|z| > 2) = 4.55% for a standard normal.
    tail = np.mean(np.abs(b) > 2)
    assert abs(tail - 0.0455) < 4 * np.sqrt(0.0455 * 0.9545 / n)


def test_mlp_apply_tanh_gelu_reference(key):
    params = init_mlp(key, (5, 7, 9, 11, 3))
    x = 2.0 * np.random.default_rng(0).normal(size=(6, 5))
    out = np.asarray(mlp_apply(params, x))
    np.testing.assert_allclose(out, _numpy_mlp(params, x, _gelu_tanh), rtol=1e-12, atol=1e-12)
    # The tanh approximation, not the exact erf GELU (which differs by ~1e-4 here).
    assert np.max(np.abs(out - _numpy_mlp(params, x, _gelu_erf))) > 1e-6
    single = np.stack([np.asarray(mlp_apply(params, row)) for row in x])
    np.testing.assert_allclose(single, out, rtol=1e-12, atol=1e-12)
    assert mlp_apply(params, x[0]).shape == (3,)


def test_cross_entropy_and_accuracy():
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(7, 5)))
    labels = jnp.array([0, 1, 2, 3, 4, 0, 1])
    z = np.asarray(logits)
    log_probs = z - np.log(np.exp(z).sum(1, keepdims=True))
    expected = -np.mean(log_probs[np.arange(7), np.asarray(labels)])
    np.testing.assert_allclose(cross_entropy(logits, labels), expected, rtol=1e-12)
    np.testing.assert_allclose(
        accuracy(logits, labels), np.mean(z.argmax(1) == np.asarray(labels)), rtol=1e-6
    )
    perfect = 10.0 * np.eye(5)[np.asarray(labels)]
    assert float(accuracy(perfect, labels)) == 1.0


def test_classification_loss(key):
    params = init_mlp(key)
    batch = {"x": np.random.default_rng(0).normal(size=(4, 64)), "y": np.array([0, 9, 1, 2])}
    loss = classification_loss(mlp_apply)
    np.testing.assert_allclose(
        loss(params, batch), cross_entropy(mlp_apply(params, batch["x"]), batch["y"]), rtol=1e-14
    )
    grads = jax.jit(jax.grad(loss))(params, batch)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params)
