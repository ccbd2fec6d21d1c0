"""The exact training Jacobian against dense references (float64), and its bookkeeping:
chunking, sharding over devices and processes, resuming, refusing, NaN handling."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from jacscope.training import TrainingRun, training_jacobian
from jacscope.training._propagate import TangentPropagation

STEPS = 3
HERE = os.path.dirname(os.path.abspath(__file__))


def mlp_params(rng, sizes=(3, 4, 2)):
    return [
        {
            "w": jnp.asarray(0.7 * rng.normal(size=(a, b))),
            "b": jnp.asarray(0.3 * rng.normal(size=b)),
        }
        for a, b in zip(sizes[:-1], sizes[1:], strict=False)
    ]


def mlp_loss(params, batch):
    h = batch["x"]
    for layer in params[:-1]:
        h = jax.nn.gelu(h @ layer["w"] + layer["b"], approximate=True)
    logits = h @ params[-1]["w"] + params[-1]["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


def mlp_batches(rng, steps=STEPS, batch=5, dim=3, classes=2):
    return {
        "x": jnp.asarray(rng.normal(size=(steps, batch, dim))),
        "y": jnp.asarray(rng.integers(0, classes, size=(steps, batch)), jnp.int32),
    }


OPTIMIZERS = {
    "sgd": lambda: optax.sgd(0.4),
    "momentum": lambda: optax.sgd(optax.cosine_decay_schedule(0.4, STEPS), momentum=0.9),
    "adam": lambda: optax.adam(0.05),
}


def mlp_run(name="momentum", seed=0):
    rng = np.random.default_rng(seed)
    return TrainingRun(mlp_params(rng), mlp_loss, OPTIMIZERS[name](), mlp_batches(rng))


def plain_loop_jacobian(params0, loss_fn, optimizer, batches):
    """jax.jacfwd of the obvious Python for-loop of optax steps."""
    flat0, unravel = ravel_pytree(params0)
    steps = jax.tree.leaves(batches)[0].shape[0]

    def train(flat):
        params = unravel(flat)
        state = optimizer.init(params)
        for t in range(steps):
            batch = jax.tree.map(lambda b, t=t: b[t], batches)
            grads = jax.grad(loss_fn)(params, batch)
            updates, state = optimizer.update(grads, state, params)
            params = optax.apply_updates(params, updates)
        return ravel_pytree(params)[0]

    return np.asarray(jax.jit(jax.jacfwd(train))(flat0))


@pytest.fixture(scope="module")
def momentum_case():
    """The momentum run, its dense reference, the one-chunk result (26 columns) and the
    result in chunks of 7 (the layout of the resume and sharding tests)."""
    run = mlp_run("momentum")
    reference = plain_loop_jacobian(run.params0, mlp_loss, OPTIMIZERS["momentum"](), run.batches)
    return run, reference, training_jacobian(run), training_jacobian(run, chunk_size=7)


@pytest.mark.parametrize("name", ["sgd", pytest.param("adam", marks=pytest.mark.slow)])
def test_matches_jacfwd_of_plain_loop(name):
    run = mlp_run(name)
    reference = plain_loop_jacobian(run.params0, mlp_loss, OPTIMIZERS[name](), run.batches)
    jac = training_jacobian(run)
    assert jac.shape == (26, 26) and jac.dtype == np.float64
    np.testing.assert_allclose(jac, reference, rtol=0, atol=1e-10 * np.abs(reference).max())
    assert np.abs(jac - np.eye(26)).max() > 1e-2  # training moved something


def test_momentum_matches_jacfwd_and_chunking_is_exact(momentum_case):
    run, reference, jac, jac7 = momentum_case
    scale = np.abs(reference).max()
    np.testing.assert_allclose(jac, reference, rtol=0, atol=1e-10 * scale)
    # 26 = 3*7+5 = 5*5+1: the last chunk is partial.
    for chunked in (jac7, training_jacobian(run, chunk_size=5)):
        np.testing.assert_allclose(chunked, jac, rtol=0, atol=1e-12 * scale)


def test_quadratic_gradient_descent_is_product_of_contractions():
    """theta <- theta - eta (H_t theta - b_t): J = prod_t (I - eta H_t), newest left."""
    n, steps, eta = 6, 4, 0.15
    rng = np.random.default_rng(2)
    a = rng.normal(size=(steps, n, n))
    hessians = np.einsum("tij,tkj->tik", a, a) / n + 0.1 * np.eye(n)
    batches = {"h": jnp.asarray(hessians), "b": jnp.asarray(rng.normal(size=(steps, n)))}

    def step(theta, state, batch):
        loss, grad = jax.value_and_grad(lambda th: 0.5 * th @ batch["h"] @ th - batch["b"] @ th)(
            theta
        )
        return theta - eta * grad, state, loss

    run = TrainingRun.from_step(jnp.ones(n), step, lambda p: (), batches)
    expected = np.eye(n)
    for h in hessians:
        expected = (np.eye(n) - eta * h) @ expected
    np.testing.assert_allclose(training_jacobian(run, chunk_size=4), expected, atol=1e-13)


def test_zero_learning_rate_gives_identity():
    run = TrainingRun(mlp_run().params0, mlp_loss, optax.sgd(0.0, momentum=0.9), mlp_run().batches)
    np.testing.assert_array_equal(training_jacobian(run, chunk_size=10), np.eye(26))


@pytest.mark.slow
def test_custom_step_with_clipping_and_unusual_ops():
    """A hand-written step (global-norm clipping, weight decay, a cumulative sum and a
    convolution in the model): exercises the generic per-equation path."""
    rng = np.random.default_rng(3)
    kernel = jnp.asarray(rng.normal(size=(2, 1, 3)))

    def loss_fn(params, batch):
        h = jnp.tanh(batch["x"] @ params["w"])  # (B, 4)
        h = jnp.cumsum(h, axis=1)[:, None, :]  # (B, 1, 4)
        h = jax.lax.conv_general_dilated(h, kernel * params["s"], (1,), "SAME")  # (B, 2, 4)
        return jnp.mean((h.sum(axis=(1, 2)) - batch["y"]) ** 2)

    optimizer = optax.chain(
        optax.clip_by_global_norm(0.5), optax.add_decayed_weights(0.01), optax.sgd(0.2, 0.5)
    )

    def step(params, state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    params0 = {"w": jnp.asarray(rng.normal(size=(3, 4))), "s": jnp.asarray(0.7)}
    batches = {
        "x": jnp.asarray(rng.normal(size=(STEPS, 5, 3))),
        "y": jnp.asarray(rng.normal(size=(STEPS, 5))),
    }
    run = TrainingRun.from_step(params0, step, optimizer.init, batches)
    reference = plain_loop_jacobian(params0, loss_fn, optimizer, batches)
    np.testing.assert_allclose(
        training_jacobian(run, chunk_size=6), reference, atol=1e-10 * np.abs(reference).max()
    )


def test_max_bytes_sizes_chunks_and_falls_back_to_recomputing(momentum_case, tmp_path):
    run, reference, _, _ = momentum_case
    with pytest.raises(ValueError, match="max_bytes=100 is too small"):
        training_jacobian(run, max_bytes=100)
    # A budget under twice the stored linearisation, room for a few tangent columns.
    prop = TangentPropagation(run)
    stored = STEPS * sum(s.size * s.dtype.itemsize for s in prop.prepared_shapes)
    per_column = 8 * (prop.program.buffer_elements() + 3 * prop.carry_elements() + 26)
    budget = min(2 * stored - 1, 3 * per_column)
    assert budget >= per_column
    jac = training_jacobian(run, max_bytes=budget, out=tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["mode"] == "recompute"
    assert manifest["chunk_size"] == budget // per_column < 26
    np.testing.assert_allclose(jac, reference, atol=1e-10 * np.abs(reference).max())


def _chunk_counter(stop_after=None):
    calls = []

    def progress(update):
        calls.append((update.done, update.total, update.elapsed, update.flops))
        if stop_after is not None and len(calls) > stop_after:
            raise KeyboardInterrupt

    return calls, progress


def test_resume_is_bitwise_identical(momentum_case, tmp_path):
    run, _, _, uninterrupted = momentum_case
    calls, progress = _chunk_counter(stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        training_jacobian(run, chunk_size=7, out=tmp_path, progress=progress)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["finished"] == [0, 1] and manifest["chunks"][:2] == [[0, 7], [7, 14]]
    assert calls[0][:2] == (0, 26) and calls[2][0] == 14 and calls[2][3] > 0
    calls, progress = _chunk_counter()
    resumed = training_jacobian(run, out=tmp_path, progress=progress)  # layout from manifest
    assert [c[0] for c in calls] == [14, 21, 26]
    assert isinstance(resumed, np.memmap) or isinstance(resumed.base, np.memmap)
    np.testing.assert_array_equal(np.asarray(resumed), uninterrupted)
    np.testing.assert_array_equal(np.load(tmp_path / "jacobian.npy"), uninterrupted)


def test_different_configuration_is_refused_unless_forced(momentum_case, tmp_path):
    run, reference, _, _ = momentum_case
    _, progress = _chunk_counter(stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        training_jacobian(run, chunk_size=13, out=tmp_path, config={"lr": 0.4}, progress=progress)
    with pytest.raises(ValueError, match=r"differs in: config\).*force=True"):
        training_jacobian(run, chunk_size=13, out=tmp_path, config={"lr": 0.5})
    with pytest.raises(ValueError, match=r"differs in: layout\)"):
        training_jacobian(run, chunk_size=5, out=tmp_path, config={"lr": 0.4})
    other = mlp_run("momentum", seed=1)
    with pytest.raises(ValueError, match=r"differs in: batches, params0\)"):
        training_jacobian(other, chunk_size=13, out=tmp_path, config={"lr": 0.4})
    forced = training_jacobian(run, chunk_size=13, out=tmp_path, config={"lr": 0.5}, force=True)
    assert json.loads((tmp_path / "manifest.json").read_text())["config"] == {"lr": 0.5}
    np.testing.assert_allclose(forced, reference, atol=1e-10 * np.abs(reference).max())


def test_nan_loss_names_the_step_and_keeps_finished_chunks(momentum_case, tmp_path):
    run, reference, _, _ = momentum_case
    _, progress = _chunk_counter(stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        training_jacobian(run, chunk_size=10, out=tmp_path, progress=progress)
    before = np.load(tmp_path / "jacobian.npy")[:, :10].copy()
    np.testing.assert_allclose(before, reference[:, :10], atol=1e-10)

    optimizer = OPTIMIZERS["momentum"]()

    def poisoned(params, state, batch):  # the same run, but step 2's loss is NaN
        count = optax.tree_utils.tree_get(state, "count")
        loss, grads = jax.value_and_grad(mlp_loss)(params, batch)
        updates, state = optimizer.update(grads, state, params)
        loss = jnp.where(count == 2, jnp.nan, loss)
        return optax.apply_updates(params, updates), state, loss

    bad = TrainingRun.from_step(run.params0, poisoned, optimizer.init, run.batches)
    with pytest.raises(FloatingPointError, match="at step 2 "):
        training_jacobian(bad, chunk_size=10, out=tmp_path / "poisoned")
    # the poisoned step is another program: the folder of the clean run refuses it
    with pytest.raises(ValueError, match=r"differs in: program\)"):
        training_jacobian(bad, chunk_size=10, out=tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text())["finished"] == [0]
    np.testing.assert_array_equal(np.load(tmp_path / "jacobian.npy")[:, :10], before)


def test_non_finite_params0_names_the_leaf():
    run = mlp_run()
    params0 = jax.tree.map(np.array, run.params0)
    params0[1]["w"][2, 1] = np.inf
    bad = TrainingRun(params0, mlp_loss, optax.sgd(0.1), run.batches)
    with pytest.raises(ValueError, match=r"params0\[1\]\['w'\]"):
        training_jacobian(bad)


def _run_python(code, env=None, timeout=180):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **(env or {})},
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_sharded_over_two_host_devices_equals_unsharded(momentum_case, tmp_path):
    _, _, _, jac = momentum_case
    code = f"""
        import jax, numpy as np
        jax.config.update("jax_enable_x64", True)
        import test_training_jacobian as case
        from jacscope.training import training_jacobian
        assert len(jax.devices()) == 2, jax.devices()
        rounds = []
        jac = training_jacobian(case.mlp_run(), chunk_size=7,
                                progress=lambda update: rounds.append(update.done))
        assert rounds == [0, 14, 26], rounds  # two chunks per round, one per device
        np.save({str(tmp_path / "sharded.npy")!r}, jac)
    """
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    result = _run_python(code, env={"XLA_FLAGS": flags})
    assert result.returncode == 0, result.stderr[-3000:]
    sharded = np.load(tmp_path / "sharded.npy")
    np.testing.assert_allclose(sharded, jac, rtol=0, atol=1e-12 * np.abs(jac).max())


def test_two_distributed_processes_equal_one(momentum_case, tmp_path):
    _, _, _, jac = momentum_case
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = """
        import sys, jax, numpy as np
        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        rank, port, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3]
        jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=rank,
                                   initialization_timeout=60)
        import test_training_jacobian as case
        from jacscope.training import training_jacobian
        assert len(jax.devices()) == 2 and len(jax.local_devices()) == 1
        run = case.mlp_run()
        in_memory = training_jacobian(run, chunk_size=7)
        on_disk = training_jacobian(run, chunk_size=7, out=folder + "/shared")
        np.save(f"{folder}/rank{rank}.npy", np.stack([in_memory, np.asarray(on_disk)]))
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(rank), str(port), str(tmp_path)],
            cwd=HERE,
            env={**os.environ, "JACSCOPE_CPU_DEVICES": "1"},  # one local device each
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    scale = np.abs(jac).max()
    for rank in range(2):
        for result in np.load(tmp_path / f"rank{rank}.npy"):
            np.testing.assert_allclose(result, jac, rtol=0, atol=1e-12 * scale)
    manifest = json.loads((tmp_path / "shared" / "manifest.json").read_text())
    assert manifest["finished"] == [0, 1, 2, 3]
