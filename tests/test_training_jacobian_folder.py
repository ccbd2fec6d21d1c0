"""A training-Jacobian folder is never served stale: the run's program is fingerprinted,
finished chunks are checksummed, one process writes at a time, and a run killed at any
moment resumes to the bitwise result of an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jacscope
from jacscope.training import TrainingRun, training_jacobian
from test_training_jacobian import HERE, OPTIMIZERS, STEPS, mlp_loss, mlp_run


@pytest.fixture(scope="module")
def uninterrupted():
    return training_jacobian(mlp_run("momentum"), chunk_size=7)


def _variant(optimizer=None, loss=mlp_loss):
    base = mlp_run("momentum")
    optimizer = optimizer if optimizer is not None else OPTIMIZERS["momentum"]()
    return TrainingRun(base.params0, loss, optimizer, base.batches)


def test_a_changed_program_is_refused(tmp_path):
    training_jacobian(_variant(optax.sgd(0.4)), chunk_size=13, out=tmp_path)
    l2 = lambda params, batch: (
        mlp_loss(params, batch) + 1e-3 * sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(params))
    )
    for other in (
        _variant(optax.adam(0.05)),
        _variant(optax.sgd(0.5)),
        _variant(optax.sgd(0.4), loss=l2),
    ):
        with pytest.raises(jacscope.FolderError, match=r"differs in: program\)"):
            training_jacobian(other, chunk_size=13, out=tmp_path)
    again = training_jacobian(_variant(optax.sgd(0.4)), chunk_size=13, out=tmp_path)
    np.testing.assert_array_equal(again, training_jacobian(_variant(optax.sgd(0.4))))


def test_damaged_chunks_and_a_truncated_matrix_are_recomputed(uninterrupted, tmp_path):
    run = mlp_run("momentum")
    training_jacobian(run, chunk_size=7, out=tmp_path)
    matrix = np.load(tmp_path / "jacobian.npy", mmap_mode="r+")
    matrix[:, 8:11] = 7.0  # three columns of chunk 1
    matrix.flush()
    del matrix
    with pytest.warns(UserWarning, match=r"1 finished chunk\(s\) no longer match .*chunks 1\)"):
        repaired = training_jacobian(run, chunk_size=7, out=tmp_path)
    np.testing.assert_array_equal(np.asarray(repaired), uninterrupted)
    path = tmp_path / "jacobian.npy"
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 3)
    with pytest.warns(UserWarning, match="is damaged .*recomputing its 4 finished chunks"):
        repaired = training_jacobian(run, chunk_size=7, out=tmp_path)
    np.testing.assert_array_equal(np.asarray(repaired), uninterrupted)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert sorted(manifest["checksums"]) == ["0", "1", "2", "3"]


_KILLED = """
    import os, signal, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import test_training_jacobian as case
    from jacscope.training import _store, training_jacobian
    moment, folder = sys.argv[1], sys.argv[2]
    kill = lambda: os.kill(os.getpid(), signal.SIGKILL)
    write, commit = _store.ChunkStore.write, _store.ChunkStore.commit
    def half_write(self, chunk, block):  # half of chunk 2's columns reach the file
        if chunk == 2:
            start, _ = self.chunks[chunk]
            self._matrix[:, start : start + 3] = block[:, :3]
            self._matrix.flush()
            kill()
        write(self, chunk, block)
    def flushed_not_committed(self, chunks):
        if 1 in chunks:
            kill()
        commit(self, chunks)
    if moment == "during_write":
        _store.ChunkStore.write = half_write
    elif moment == "before_commit":
        _store.ChunkStore.commit = flushed_not_committed
    progress = lambda update: kill() if moment == "after_commit" and update.done >= 14 else None
    training_jacobian(case.mlp_run(), chunk_size=7, out=folder, progress=progress)
"""


@pytest.mark.parametrize(
    "moment",
    [
        "during_write",
        *(pytest.param(m, marks=pytest.mark.slow) for m in ("before_commit", "after_commit")),
    ],
)
def test_sigkill_at_any_moment_then_rerun_is_bitwise_identical(uninterrupted, tmp_path, moment):
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILLED), moment, str(tmp_path)],
        cwd=HERE,
        env={**os.environ, "JACSCOPE_CPU_DEVICES": "1"},  # one device, as in this process
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    finished = json.loads((tmp_path / "manifest.json").read_text())["finished"]
    assert (
        finished == {"during_write": [0, 1], "before_commit": [0], "after_commit": [0, 1]}[moment]
    )
    resumed = training_jacobian(mlp_run("momentum"), chunk_size=7, out=tmp_path)
    np.testing.assert_array_equal(np.asarray(resumed), uninterrupted)


@pytest.mark.slow
def test_a_live_writer_holds_the_folder_against_force(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from jacscope._io import folder_lock\n"
            "with folder_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(jacscope.FolderError, match=rf"written by pid {holder.pid} "):
            training_jacobian(mlp_run("momentum"), chunk_size=7, out=tmp_path, force=True)
        assert not (tmp_path / "manifest.json").exists()  # a refused call changes nothing
    finally:
        holder.kill()
        holder.wait()
    deadline = time.time() + 10
    while time.time() < deadline:  # the kernel releases the lock with the process
        try:
            training_jacobian(mlp_run("momentum"), chunk_size=7, out=tmp_path)
            break
        except jacscope.FolderError:
            time.sleep(0.1)
    assert (tmp_path / "manifest.json").exists()
    assert not (tmp_path / ".writer").exists()  # the holder note goes with the lock


def test_non_finite_jacobian_with_finite_losses_is_an_error():
    run = mlp_run("sgd")
    optimizer = optax.sgd(0.4)

    def exploding(params, state, batch):  # the last update sends the parameters to inf
        loss, grads = jax.value_and_grad(mlp_loss)(params, batch)
        count = state[1]
        updates, inner = optimizer.update(grads, state[0], params)
        params = optax.apply_updates(params, updates)
        params = jax.tree.map(lambda p: jnp.where(count == STEPS - 1, p * jnp.inf, p), params)
        return params, (inner, count + 1), loss

    bad = TrainingRun.from_step(
        run.params0, exploding, lambda p: (optimizer.init(p), jnp.int32(0)), run.batches
    )
    assert np.isfinite(np.asarray(bad.train()[1])).all()
    with pytest.raises(FloatingPointError, match=r"final parameters are not finite at \[0\]"):
        training_jacobian(bad)
