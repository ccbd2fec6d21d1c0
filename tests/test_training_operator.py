"""The matrix-free training Jacobian against jax.jacfwd of the whole run, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import jacscope
from jacscope import linalg
from jacscope.models import classification_loss, cnn_apply, init_cnn, init_mlp, mlp_apply
from jacscope.training import TrainingRun, training_jacobian_operator


def _adam_run(key, num_steps=7):
    """A tiny MLP trained by Adam, so the optimizer state is differentiated too."""
    k_init, k_x, k_y = jax.random.split(key, 3)
    params0 = init_mlp(k_init, (3, 4, 3))
    batches = {
        "x": jax.random.normal(k_x, (num_steps, 5, 3)),
        "y": jax.random.randint(k_y, (num_steps, 5), 0, 3),
    }
    return TrainingRun(params0, classification_loss(mlp_apply), optax.adam(0.1), batches)


@pytest.fixture(scope="module")
def adam_run():
    return _adam_run(jax.random.key(3))


@pytest.fixture(scope="module")
def exact_jacobian(adam_run):
    x0, unravel = ravel_pytree(adam_run.params0)
    flat_final = lambda x: ravel_pytree(adam_run.train(unravel(x))[0])[0]
    return np.asarray(jax.jit(jax.jacfwd(flat_final))(x0))


def test_products_equal_exact_jacobian(adam_run, exact_jacobian):
    J = exact_jacobian
    sweeps = []
    op = training_jacobian_operator(adam_run, on_sweep=sweeps.append)
    assert op.shape == J.shape == (31, 31)
    assert op.checkpoint_every == 3  # ceil(sqrt(7)): two segments of 3 and a remainder of 1
    V = jax.random.normal(jax.random.key(1), (31, 4))
    np.testing.assert_allclose(op.mv(V[:, 0]), J @ V[:, 0], atol=1e-10, rtol=0)
    np.testing.assert_allclose(op.rmv(V[:, 1]), J.T @ V[:, 1], atol=1e-10, rtol=0)
    np.testing.assert_allclose(op.mm(V), J @ V, atol=1e-10, rtol=0)
    np.testing.assert_allclose(op.rmm(V), J.T @ V, atol=1e-10, rtol=0)
    jax.effects_barrier()
    assert sweeps == ["mv", "rmv", "mv", "rmv"]  # a batched product is one sweep
    final, _ = adam_run.train()
    assert all(
        np.allclose(a, b, rtol=0, atol=1e-12)
        for a, b in zip(jax.tree.leaves(op.output()), jax.tree.leaves(final), strict=True)
    )


@pytest.mark.slow
def test_checkpointing_every_step_gives_the_same_transpose(adam_run, exact_jacobian):
    op = training_jacobian_operator(adam_run, checkpoint_every=1)
    u = jax.random.normal(jax.random.key(2), (31,))
    np.testing.assert_allclose(op.rmv(u), exact_jacobian.T @ u, atol=1e-10, rtol=0)


@pytest.mark.parametrize("built_from", [pytest.param("optimizer", marks=pytest.mark.slow), "step"])
def test_stored_trajectory_products_equal_exact_jacobian(adam_run, exact_jacobian, built_from):
    """Stored mode: per-step linearisations with reverse-mode Hessian products for an
    optax run, the linearisation of the whole run for a custom step."""
    run = adam_run
    if built_from == "step":
        run = TrainingRun.from_step(run.params0, run.step, run.init_state, run.batches)
    op = training_jacobian_operator(run, checkpoint_every=None)
    expected = "LinearizedRun" if built_from == "optimizer" else "JacobianOperator"
    assert type(op.linearized).__name__ == expected
    V = jax.random.normal(jax.random.key(7), (31, 2))
    J = exact_jacobian
    np.testing.assert_allclose(op.mv(V[:, 0]), J @ V[:, 0], atol=1e-10, rtol=0)
    np.testing.assert_allclose(op.rmv(V[:, 1]), J.T @ V[:, 1], atol=1e-10, rtol=0)
    assert op.cost().stored_bytes > 7 * 31 * 8


def test_cost_reports_checkpoints_and_memory():
    """A linear model fitted by SGD with momentum for T = 64 steps."""
    key_w, key_x = jax.random.split(jax.random.key(4))
    loss = lambda p, b: jnp.mean((b["x"] @ p["w"] - 1.0) ** 2)
    batches = {"x": jax.random.normal(key_x, (64, 8, 5))}
    run = TrainingRun({"w": jax.random.normal(key_w, (5,))}, loss, optax.sgd(0.1, 0.9), batches)
    stored = training_jacobian_operator(run, checkpoint_every=None).cost()
    sqrt = training_jacobian_operator(run).cost()
    assert (sqrt.checkpoint_every, sqrt.num_checkpoints, sqrt.rmv_sweeps) == (8, 8, 3)
    assert (stored.checkpoint_every, stored.num_checkpoints, stored.rmv_sweeps) == (None, 64, 1)
    assert sqrt.mv_sweeps == stored.mv_sweeps == 1
    assert sqrt.stored_bytes == 0
    # the stored trajectory grows with T; sqrt(T) checkpoints keep rmv's memory below it
    assert stored.stored_bytes > 64 * 5 * 8
    assert 0 < sqrt.rmv_bytes < stored.stored_bytes
    assert training_jacobian_operator(run, checkpoint_every=1000).checkpoint_every == 64


def test_linalg_estimators_on_the_operator(adam_run, exact_jacobian):
    J = exact_jacobian
    op = training_jacobian_operator(adam_run)
    key_t, key_f = jax.random.split(jax.random.key(5))
    tr = linalg.trace(op - jacscope.identity(31), key=key_t, method="hutchinson", num_matvecs=200)
    assert abs(tr.value - (np.trace(J) - 31)) <= 4 * tr.stderr + 1e-12
    fro = linalg.frobenius_sq(op, key=key_f, num_matvecs=200)
    assert abs(fro.value - np.sum(J**2)) <= 4 * fro.stderr


@pytest.mark.slow
def test_cnn_run_transpose_is_adjoint_of_forward():
    """<u, J v> = <J^T u, v>: the JVP and the checkpointed VJP through a CNN run agree."""
    key = jax.random.key(6)
    params0 = init_cnn(key, (18,), 3, channels=(2, 3), kernel_size=3, hidden=(4,))
    batches = {
        "x": jax.random.uniform(key, (3, 4, 18)),
        "y": jax.random.randint(key, (3, 4), 0, 3),
    }
    run = TrainingRun(params0, classification_loss(cnn_apply), optax.sgd(0.5, 0.9), batches)
    op = training_jacobian_operator(run, checkpoint_every=2)
    kv, ku = jax.random.split(key)
    v = jax.random.normal(kv, op.shape[:1])
    u = jax.random.normal(ku, op.shape[:1])
    np.testing.assert_allclose(jnp.vdot(u, op.mv(v)), jnp.vdot(op.rmv(u), v), rtol=1e-10)


def test_lenet5_sizes():
    """Shapes only (`jax.eval_shape`): LeNet-5's parameter count on digits, 1-D on MNIST-1D."""
    digits = jax.eval_shape(lambda: init_cnn(jax.random.key(0)))
    assert sum(leaf.size for leaf in jax.tree.leaves(digits)) == 61_706  # 32 x 32 canvas
    shape = lambda params, x: jax.eval_shape(cnn_apply, params, x).shape
    assert shape(digits, jnp.zeros((5, 64))) == (5, 10)
    assert shape(digits, jnp.zeros(64)) == (10,)
    signal = jax.eval_shape(lambda: init_cnn(jax.random.key(0), (40,)))
    assert signal["conv"][0]["w"].shape == (5, 1, 6)
    assert shape(signal, jnp.zeros((2, 40))) == (2, 10)
    with pytest.raises(ValueError, match="canvas=33"):
        init_cnn(jax.random.key(0), canvas=33)
    with pytest.raises(ValueError, match="63 features"):
        shape(digits, jnp.zeros((1, 63)))


def test_diverging_run_names_the_step():
    params0 = {"w": jnp.ones(3)}
    batches = {"x": jnp.ones((6, 3))}
    loss = lambda p, b: jnp.sum(jnp.exp(p["w"] * b["x"]))
    run = TrainingRun(params0, loss, optax.sgd(-50.0), batches)  # ascent: exp overflows
    with pytest.raises(FloatingPointError, match=r"at step \d+ \(of 6;"):
        training_jacobian_operator(run)
    with pytest.raises(ValueError, match=r"params0\['w'\]"):
        training_jacobian_operator(
            TrainingRun({"w": jnp.array([1.0, jnp.nan, 0.0])}, loss, optax.sgd(0.1), batches)
        )


def test_bad_arguments(adam_run):
    with pytest.raises(ValueError, match="checkpoint_every"):
        training_jacobian_operator(adam_run, checkpoint_every=0)
    with pytest.raises(ValueError, match="checkpoint_every"):
        training_jacobian_operator(adam_run, checkpoint_every="log")
    with pytest.raises(TypeError, match="TrainingRun"):
        training_jacobian_operator(lambda p: p)
    op = training_jacobian_operator(adam_run)
    with pytest.raises(ValueError, match=r"expects shape \(31,\)"):
        op.mv(jnp.ones(30))
