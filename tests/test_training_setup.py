"""The embedded default run reproduces the setting of Belrose & Scherlis (arXiv 2412.07003)."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jacscope.data import load_digits
from jacscope.models import classification_loss, mlp_apply
from jacscope.training import TrainingConfig, build_run


@pytest.fixture(scope="module")
def default():
    return build_run(TrainingConfig())


def test_default_sizes_steps_and_batches(default):
    run, data = default.run, default.dataset
    assert ravel_pytree(run.params0)[0].size == 4810
    assert run.num_steps == 625
    assert data.x_train.shape == (1600, 64) and data.x_test.shape == (197, 64)
    assert run.batches["x"].shape == (625, 64, 64)
    assert run.batches["y"].shape == (625, 64)
    assert run.batches["x"].dtype == jnp.float32
    assert [(layer["w"].shape, layer["b"].shape) for layer in run.params0] == [
        ((64, 64), (64,)),
        ((64, 10), (10,)),
    ]
    # digits / 16, split by train_test_split(test_size=197, random_state=0).
    reference = load_digits()
    np.testing.assert_array_equal(data.x_train, reference.x_train)
    assert 0.0 <= data.x_train.min() and data.x_train.max() == 1.0
    # Fixed order, no shuffling: step t sees examples 64 (t mod 25) ... of the training set.
    for step in (0, 7, 24, 25, 624):
        start = 64 * (step % 25)
        np.testing.assert_array_equal(run.batches["x"][step], data.x_train[start : start + 64])
        np.testing.assert_array_equal(run.batches["y"][step], data.y_train[start : start + 64])


def test_default_schedule(default):
    schedule = default.schedule
    assert float(schedule(0)) == pytest.approx(0.1)
    assert float(schedule(625)) == pytest.approx(0.0, abs=1e-12)
    assert float(schedule(624)) == pytest.approx(0.05 * (1 + np.cos(np.pi * 624 / 625)), rel=1e-5)
    assert float(schedule(312)) == pytest.approx(0.05 * (1 + np.cos(np.pi * 312 / 625)), rel=1e-5)
    assert default.config.learning_rate == 0.1


def test_default_init_statistics(default):
    w1, b1 = (np.asarray(default.run.params0[0][k], np.float64) for k in ("w", "b"))
    w2, b2 = (np.asarray(default.run.params0[1][k], np.float64) for k in ("w", "b"))
    # LeCun normal: variance 1 / fan_in = 1 / 64 in both layers (truncated at 2 sd).
    z = np.concatenate([w1.ravel(), w2.ravel()]) * 8.0
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert abs(z.var() - 1) < 4 * np.sqrt((np.mean(z**4) - 1) / z.size)
    assert np.abs(z).max() <= 2 / 0.87962566103423978 + 1e-6
    # Biases normal with standard deviation 64^-1/2 in every layer, output included.
    b = np.concatenate([b1, b2]) * 8.0
    assert abs(b.mean()) < 4 / np.sqrt(b.size)
    assert abs(b.var() - 1) < 4 * np.sqrt(2 / b.size)


def test_sgd_momentum_steps_match_manual_update(default):
    run = default.run
    loss_fn = classification_loss(mlp_apply)
    theta0, unravel = ravel_pytree(run.params0)
    batch0 = jax.tree_util.tree_map(lambda b: b[0], run.batches)
    batch1 = jax.tree_util.tree_map(lambda b: b[1], run.batches)
    step = jax.jit(run.step)
    state = run.init_state(run.params0)
    params1, state, loss0 = step(run.params0, state, batch0)
    params2, _, _ = step(params1, state, batch1)

    @jax.jit
    def grad(theta, batch):
        return ravel_pytree(jax.grad(loss_fn)(unravel(theta), batch))[0]

    g0 = grad(theta0, batch0)
    expected1 = theta0 - 0.1 * g0
    np.testing.assert_allclose(ravel_pytree(params1)[0], expected1, rtol=1e-5, atol=1e-7)
    lr1 = 0.05 * (1 + np.cos(np.pi / 625))
    expected2 = expected1 - lr1 * (0.9 * g0 + grad(expected1, batch1))
    np.testing.assert_allclose(ravel_pytree(params2)[0], expected2, rtol=1e-5, atol=1e-6)
    assert float(loss0) == pytest.approx(float(loss_fn(run.params0, batch0)))


def test_adam_option_matches_manual_first_step():
    setup = build_run(TrainingConfig(optimizer="adam", epochs=1))
    assert setup.config.learning_rate == 3e-3 and float(setup.schedule(0)) == pytest.approx(3e-3)
    run = setup.run
    theta0, unravel = ravel_pytree(run.params0)
    batch0 = jax.tree_util.tree_map(lambda b: b[0], run.batches)
    params1, _, _ = jax.jit(run.step)(run.params0, run.init_state(run.params0), batch0)
    g = np.asarray(ravel_pytree(jax.grad(setup.loss_fn)(run.params0, batch0))[0], np.float64)
    # Bias-corrected first step: m_hat = g, v_hat = g^2; eps_root inside the root.
    expected = np.asarray(theta0, np.float64) - 3e-3 * g / (np.sqrt(g**2 + 1e-8) + 1e-8)
    np.testing.assert_allclose(ravel_pytree(params1)[0], expected, rtol=1e-4, atol=1e-7)


def test_options_change_the_run():
    config = TrainingConfig(
        hidden=16, hidden_layers=2, epochs=3, batch_size=50, train_size=200, lr=0.05, seed=4
    )
    setup = build_run(config)
    sizes = [(layer["w"].shape, layer["b"].shape) for layer in setup.run.params0]
    assert sizes == [((64, 16), (16,)), ((16, 16), (16,)), ((16, 10), (10,))]
    assert setup.run.num_steps == 3 * (200 // 50)
    assert setup.run.batches["x"].shape == (12, 50, 64)
    assert float(setup.schedule(0)) == pytest.approx(0.05)
    other = build_run(dataclasses.replace(config, seed=5))
    assert not np.allclose(ravel_pytree(other.run.params0)[0], ravel_pytree(setup.run.params0)[0])
    np.testing.assert_array_equal(other.run.batches["x"], setup.run.batches["x"])
    shuffled = build_run(dataclasses.replace(config, labels="shuffled"))
    assert "shuffled" in shuffled.dataset.name
    assert not np.array_equal(shuffled.dataset.y_train, setup.dataset.y_train)
    noise = build_run(dataclasses.replace(config, inputs="noise"))
    assert "noise" in noise.dataset.name
    # Same seed, same data shape: the same initialisation theta_0 for every control.
    np.testing.assert_array_equal(
        ravel_pytree(noise.run.params0)[0], ravel_pytree(setup.run.params0)[0]
    )


def test_float64_dtype():
    setup = build_run(TrainingConfig(dtype="float64", epochs=1, hidden=4))
    assert ravel_pytree(setup.run.params0)[0].dtype == jnp.float64
    assert setup.run.batches["x"].dtype == jnp.float64


def test_config_is_frozen_and_json_round_trips():
    config = TrainingConfig(optimizer="adam", hidden=32, train_size=100)
    text = json.dumps(dataclasses.asdict(config))
    assert TrainingConfig(**json.loads(text)) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hidden = 3


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dataset", "cifar"),
        ("optimizer", "rmsprop"),
        ("hidden", 0),
        ("epochs", 1.5),
        ("lr", -1.0),
        ("train_size", 0),
        ("momentum", 1.0),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        TrainingConfig(**{field: value})


def test_build_run_rejects_batch_larger_than_data():
    with pytest.raises(ValueError, match="batch_size"):
        build_run(TrainingConfig(train_size=10, batch_size=64))


@pytest.mark.parametrize(
    ("dataset", "convolution_rank"),
    [pytest.param(*case, marks=pytest.mark.slow) for case in (("digits", 2), ("mnist1d", 1))],
)
def test_cnn_model_is_lenet5_like(dataset, convolution_rank):
    setup = build_run(TrainingConfig(model="cnn", dataset=dataset, epochs=1))
    params0 = setup.run.params0
    if dataset == "digits":  # 8 x 8 images on LeNet-5's 32 x 32 canvas
        assert ravel_pytree(params0)[0].size == 61706
    assert params0["conv"][0]["w"].ndim == convolution_rank + 2
    assert setup.apply_fn(params0, setup.dataset.x_test[:3]).shape == (3, 10)
    batch = jax.tree.map(lambda b: b[0], setup.run.batches)
    assert np.isfinite(float(setup.loss_fn(params0, batch)))
