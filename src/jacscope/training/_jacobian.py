"""The exact training Jacobian d theta_T / d theta_0, chunked, sharded and resumable."""

from __future__ import annotations

import contextlib
import os
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as Spec

from jacscope._fingerprint import hash_json
from jacscope._io import folder_lock
from jacscope._memory import release_freed_memory
from jacscope._progress import Progress, ProgressCallback, report_to
from jacscope._validation import check_count, check_finite, check_losses, is_prng_key
from jacscope.training._propagate import TangentPropagation
from jacscope.training._run import TrainingRun
from jacscope.training._store import ChunkStore, read_manifest

MAX_DEFAULT_CHUNK_SIZE = 256
"""The largest chunk (columns) chosen when `chunk_size` is not given."""

CACHE_BYTES = 2**20
"""On CPUs the default chunk keeps the largest tangent buffer of a step (K times its
size per column) within this many bytes, about half a core's L2 cache: the step's
elementwise passes then run from cache. Measured on the 64-266-10 MLP, chunks of 16 to
48 columns (buffers up to 3.3 MB) ran 2 to 3 times faster per column than chunks of
128, while on 64-64-10 anything from 64 to 192 columns was equally fast. A round's
temporaries grow with K (about 0.4 MiB per column on 64-64-10, two devices), so the
smaller end keeps the peak memory down: K = 64 there instead of 128."""

DEFAULT_MAX_BYTES = 4 * 2**30
"""Working-memory budget per device when `max_bytes` is not given."""

_AXIS = "chunks"


def training_jacobian(
    run: TrainingRun,
    *,
    chunk_size: int | None = None,
    max_bytes: int | None = None,
    out: str | os.PathLike | None = None,
    force: bool = False,
    config: dict | None = None,
    progress: ProgressCallback | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> np.ndarray:
    r"""The exact Jacobian J = d theta_T / d theta_0 of a whole training run.

    With z_t = (theta_t, s_t) the parameters and optimiser state after t steps and
    z_{t+1} = F_t(z_t) one step on batch t,

        J = [I 0] . A_{T-1} \cdots A_1 A_0 . [I ; d s_0/d theta_0],
        A_t = d F_t / d z_t,

    so the optimiser state (momentum, Adam moments) is differentiated through, as in
    Belrose & Scherlis; its non-float leaves (step counters) are constants of the run.
    J is computed in forward mode, columns at a time: a chunk of K
    columns of the identity is pushed through all T steps in one compiled scan. The
    linearisation of each step is compiled once into a program that applies A_t to
    K tangents as wide matrix products, and its tangent-independent part is computed
    in one pass over the run and stored (or recomputed per chunk when it would not fit
    `max_bytes`, and on several CPU devices, which would each hold a copy). Chunks
    are spread over `devices` with `jax.shard_map` (one chunk per device at a time),
    across processes too after `jax.distributed.initialize`; on a CPU host,
    `jacscope.use_cpu_cores()` makes each core a device.

    **Arguments:**

    - `run`: the `TrainingRun` (any optax optimiser or custom step).
    - `chunk_size`: columns per chunk K. The default is the widest chunk (a multiple
      of 8, at most `MAX_DEFAULT_CHUNK_SIZE`) whose largest tangent buffer fits
      `CACHE_BYTES` on CPUs, lowered to fit `max_bytes`. The result is bitwise
      reproducible for a fixed K.
    - `max_bytes`: working-memory budget per device in bytes: the stored
      linearisation (T x its per-step size) plus one chunk of tangents. The Jacobian
      itself is not counted: with `out` it lives on disk.
    - `out`: a folder. Every finished chunk is written to `out/jacobian.npy` (a
      column-major `.npy`, memory-mapped) and listed in `out/manifest.json` with its
      checksum, beside hashes of `params0`, the batches, the step as a program
      (`TrainingRun.fingerprint`: loss, optimizer, schedule, hyperparameters), `config`
      and the chunk layout. A later call of the same run resumes after the last
      finished chunk, recomputes any chunk whose checksum no longer matches, and gives
      a bitwise identical J; a different run is refused naming what differs. One
      process writes a folder at a time (an advisory lock on `out`). In a
      multi-process run the folder must be shared.
    - `force`: with `out`, discard a folder written for a different configuration
      (otherwise that raises `ValueError`).
    - `config`: a JSON-able dict describing what built the run (model, seed, ...),
      stored and hashed into the manifest beside the run's own fingerprint.
    - `progress`: called with a `jacscope.Progress` (task `"J"`, unit `"columns"`)
      once before the first chunk (`done` counts the columns finished earlier in
      `out`) and after each round of chunks; its `flops` counts the floating-point
      operations of this call, from XLA's cost analysis of the compiled step, so
      `flops / elapsed` is the achieved FLOP/s.
    - `devices`: the devices to shard chunks over (default: `jax.devices()`, every
      device of every process).

    **Returns:** J as a (P, P) NumPy array, rows and columns in
    `jax.flatten_util.ravel_pytree(run.params0)` order; with `out`, a read-only
    memory map of `out/jacobian.npy`.

    **Raises:** `ValueError` naming the leaf if `params0` holds NaN or inf;
    `jacscope.FolderError` (a `ValueError`) if `out` holds a different computation or
    another process is writing it; `FloatingPointError` naming the first step whose
    loss is not finite, or the non-finite leaves of the final parameters when J is not
    finite (chunks already in `out` are kept).

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.
    """
    _check_arguments(run, chunk_size, max_bytes)
    writes = out is not None and jax.process_index() == 0
    with folder_lock(out) if writes else contextlib.nullcontext():
        return _training_jacobian(run, chunk_size, max_bytes, out, force, config, progress, devices)


def _training_jacobian(run, chunk_size, max_bytes, out, force, config, progress, devices):
    """The body of `training_jacobian`, with the folder's lock held."""
    config_hash = hash_json(config, "config")
    prop = _propagation(run)
    num_params, num_steps = prop.num_params, prop.num_steps
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty: pass at least one device, or None for all")
    folder = None if out is None else os.fspath(out)
    stored = None if folder is None or force else read_manifest(folder)
    stored_k = None if stored is None else int(stored.get("chunk_size", 0)) or None
    if stored is not None and chunk_size in (None, stored_k) and max_bytes is None:
        # Resuming with the layout the folder was written with (on any number of devices).
        k, mode = _plan(prop, stored_k, None, stored.get("mode"))
    else:
        k, mode = _plan(prop, chunk_size, max_bytes, None, devices[0].platform, len(devices))
    chunks = [(s, min(s + k, num_params)) for s in range(0, num_params, k)]
    flops_per_chunk = num_steps * prop.step_flops(k)

    mesh = Mesh(np.asarray(devices, dtype=object), (_AXIS,))
    replicated = NamedSharding(mesh, Spec())
    multiprocess = jax.process_count() > 1
    writer = jax.process_index() == 0

    if folder is None:
        sink = _InMemory((num_params, num_params), prop.dtype, chunks)
    else:
        layout = {
            "num_params": num_params,
            "num_steps": num_steps,
            "dtype": prop.dtype.name,
            "chunk_size": k,
            "mode": mode,
            "chunks": chunks,
        }
        sink = ChunkStore(
            folder,
            shape=(num_params, num_params),
            dtype=prop.dtype,
            chunks=chunks,
            fingerprint={
                **run.fingerprint(),
                "config": config_hash,
                "layout": hash_json(layout, "layout"),
            },
            info={
                "num_steps": num_steps,
                "chunk_size": k,
                "mode": mode,
                "flops_per_chunk": flops_per_chunk,
                "config": config,
            },
            force=force,
            create=writer,
        )
        # Every process validates; process 0 creates; then the others open its files.
        sink.check()
        _barrier("jacscope-check", multiprocess)
        if writer:
            sink.open()
        _barrier("jacscope-open", multiprocess)
        if not writer:
            sink.open()

    def columns_of(ids):
        return sum(chunks[c][1] - chunks[c][0] for c in ids)

    done = columns_of(sink.finished)
    remaining = [c for c in range(len(chunks)) if c not in sink.finished]
    start_time, flops = time.perf_counter(), 0.0
    if remaining:
        params0 = _replicate(run.params0, replicated)
        data = _replicate(run.batches, replicated)
        if mode == "stored":
            residuals = _cached(
                prop, ("residuals", mesh), lambda: jax.jit(prop.residuals, out_shardings=replicated)
            )
            losses, data = residuals(params0, data)
            _check_losses(losses)
        sharded = _cached(
            prop, ("chunks", mesh, k, mode), lambda: _sharded_chunks(prop, mesh, k, mode)
        )
    progress = report_to(progress)
    progress(Progress("J", done, num_params, "columns"))
    width = len(devices)
    for first in range(0, len(remaining), width):
        ids = remaining[first : first + width]
        starts = [chunks[c][0] for c in ids] + [num_params] * (width - len(ids))
        outputs = sharded(_starts_array(starts, mesh), params0, data)
        if mode == "stored":
            block = outputs
        else:
            block, chunk_losses = outputs
            _check_losses(chunk_losses.addressable_data(0)[0])
        if multiprocess and folder is None:  # every process returns all of J
            gathered = np.asarray(multihost_utils.process_allgather(block, tiled=True))
            columns = {c: gathered[:, i * k : (i + 1) * k] for i, c in enumerate(ids)}
        else:  # each process keeps the chunks of its own devices
            columns = {}
            for shard in block.addressable_shards:
                position = (shard.index[1].start or 0) // k
                if position < len(ids):
                    columns[ids[position]] = np.asarray(shard.data)
        for c, block_columns in columns.items():
            _check_columns(run, block_columns, chunks[c])
            sink.write(c, block_columns)
        sink.flush()
        # What the compiler used (first round) and each round's temporaries are free;
        # the C allocator keeps those pages unless asked, and they would add to the
        # peak that the filling result reaches.
        release_freed_memory()
        _barrier(f"jacscope-round-{first}", multiprocess and folder is not None)
        if writer:
            sink.commit(ids)
        done += columns_of(ids)
        flops += flops_per_chunk * len(ids)
        elapsed = time.perf_counter() - start_time
        progress(Progress("J", done, num_params, "columns", elapsed, flops))
    _barrier("jacscope-done", multiprocess and folder is not None)
    return sink.result()


def _check_arguments(run: Any, chunk_size: Any, max_bytes: Any) -> None:
    if not isinstance(run, TrainingRun):
        raise TypeError(f"training_jacobian needs a TrainingRun, received {type(run).__name__}")
    for name, value in (("chunk_size", chunk_size), ("max_bytes", max_bytes)):
        if value is not None:
            check_count(value, name)
    check_finite(run.params0, "params0")
    for path, leaf in jax.tree_util.tree_leaves_with_path(run.params0):
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise ValueError(
                f"params0{jax.tree_util.keystr(path)} has dtype {jnp.result_type(leaf)}; "
                "the training Jacobian is taken with respect to floating-point parameters"
            )


class _InMemory:
    """The Jacobian in a NumPy array: the counterpart of `ChunkStore` without `out`."""

    def __init__(self, shape: tuple[int, int], dtype: Any, chunks: list[tuple[int, int]]):
        self.matrix = np.zeros(shape, dtype, order="F")
        self.chunks = chunks
        self.finished: set[int] = set()

    def write(self, chunk: int, block: np.ndarray) -> None:
        start, stop = self.chunks[chunk]
        self.matrix[:, start:stop] = block[:, : stop - start]

    def flush(self) -> None:
        pass

    def commit(self, chunks: list[int]) -> None:
        self.finished.update(chunks)

    def result(self) -> np.ndarray:
        return self.matrix


def _sharded_chunks(prop: TangentPropagation, mesh: Mesh, k: int, mode: str) -> Callable:
    """`f(starts, params0, data)`: one chunk of K columns per device of `mesh`, the
    chunk on device i starting at column `starts[i]`; `data` is the stored
    linearisation (mode "stored") or the batches (mode "recompute", which also returns
    the losses, one row per device)."""
    if mode == "stored":

        def chunk(start, params0, prepared):
            return prop.propagate_stored(start[0], params0, prepared, k=k)

        out_specs = Spec(None, _AXIS)
    else:

        def chunk(start, params0, batches):
            columns, losses = prop.propagate_recompute(start[0], params0, batches, k=k)
            return columns, losses[None]

        out_specs = (Spec(None, _AXIS), Spec(_AXIS))
    return jax.jit(
        jax.shard_map(
            chunk,
            mesh=mesh,
            in_specs=(Spec(_AXIS), Spec(), Spec()),
            out_specs=out_specs,
            check_vma=False,
        )
    )


_PROPAGATIONS: dict[int, tuple[weakref.ref, TangentPropagation]] = {}


def _propagation(run: TrainingRun) -> TangentPropagation:
    """The propagation machinery of `run`, built once per run object (runs are
    immutable) so that repeated calls reuse its traced and compiled computations."""
    key = id(run)
    entry = _PROPAGATIONS.get(key)
    if entry is not None and entry[0]() is run:
        return entry[1]
    prop = TangentPropagation(run)
    _PROPAGATIONS[key] = (weakref.ref(run, lambda _: _PROPAGATIONS.pop(key, None)), prop)
    return prop


def _cached(prop: TangentPropagation, key: Any, make: Callable[[], Callable]) -> Callable:
    if key not in prop.cache:
        prop.cache[key] = make()
    return prop.cache[key]


def _plan(
    prop: TangentPropagation,
    chunk_size: int | None,
    max_bytes: int | None,
    mode: str | None,
    platform: str = "cpu",
    num_devices: int = 1,
) -> tuple[int, str]:
    """Chunk size K and whether the linearisation is stored or recomputed.

    The linearisation is stored when it takes at most half the budget, except on
    several CPU devices: they share the host's memory, where a stored copy per device
    would cost more than recomputing it (6% more time on the default run, against
    56 MiB per device)."""
    itemsize = np.dtype(prop.dtype).itemsize
    stored_bytes = prop.num_steps * sum(
        s.size * np.dtype(s.dtype).itemsize for s in prop.prepared_shapes
    )
    per_column = itemsize * (
        prop.program.buffer_elements() + 3 * prop.carry_elements() + prop.num_params
    )
    budget = DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)
    if mode not in ("stored", "recompute"):
        shared = platform == "cpu" and num_devices > 1
        mode = "stored" if stored_bytes <= budget // 2 and not shared else "recompute"
    available = budget - (stored_bytes if mode == "stored" else 0)
    fit = max(available // per_column, 0)
    if chunk_size is not None:
        k = int(chunk_size)
    elif platform == "cpu":
        widest = itemsize * prop.program.largest_buffer_elements()
        k = min(max(8, CACHE_BYTES // widest // 8 * 8), MAX_DEFAULT_CHUNK_SIZE)
    else:
        k = MAX_DEFAULT_CHUNK_SIZE
    k = min(k, prop.num_params)
    if max_bytes is not None and k > fit:
        if fit < 1:
            raise ValueError(
                f"max_bytes={max_bytes:,} is too small: storing the linearisation takes "
                f"{stored_bytes if mode == 'stored' else 0:,} bytes and one tangent column "
                f"{per_column:,} bytes"
            )
        if chunk_size is not None:
            raise ValueError(
                f"chunk_size={chunk_size} needs about {k * per_column:,} bytes per chunk, "
                f"over max_bytes={max_bytes:,} (at most {fit} columns fit)"
            )
        k = int(fit)
    elif max_bytes is None and chunk_size is None:
        k = max(1, min(k, int(fit)))
    return k, mode


def _starts_array(starts: list[int], mesh: Mesh) -> jax.Array:
    """The first column of each device's chunk, one per device (padding starts at P:
    those chunks are all zero columns and are discarded)."""
    values = np.asarray(starts, np.int32)
    sharding = NamedSharding(mesh, Spec(_AXIS))
    return jax.make_array_from_callback(values.shape, sharding, lambda index: values[index])


def _replicate(tree: Any, sharding: NamedSharding) -> Any:
    """Every leaf on every device of the mesh (each process holds the same values);
    typed PRNG keys travel as their key data."""

    def replicate(x: Any) -> jax.Array:
        if is_prng_key(x):
            data = replicate(jax.random.key_data(x))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree.map(replicate, tree)


def _check_losses(losses: Any) -> None:
    """`FloatingPointError` naming the first step whose loss is NaN or infinite."""
    if isinstance(losses, jax.Array) and not losses.is_fully_addressable:
        losses = losses.addressable_data(0)
    check_losses(
        losses,
        "the Jacobian of this run is not defined; finished chunks in the output folder are kept",
    )


def _check_columns(run: TrainingRun, block: np.ndarray, columns: tuple[int, int]) -> None:
    """`FloatingPointError` if a chunk of J is not finite, though every loss was."""
    start, stop = columns
    if np.isfinite(block[:, : stop - start]).all():
        return
    final = run.final_params()
    bad = [
        jax.tree_util.keystr(path)
        for path, leaf in jax.tree_util.tree_leaves_with_path(final)
        if not np.isfinite(np.asarray(leaf)).all()
    ]
    where = (
        f"the final parameters are not finite at {', '.join(bad)}"
        if bad
        else ("the tangents overflowed although the final parameters are finite")
    )
    raise FloatingPointError(
        f"columns {start}..{stop - 1} of the training Jacobian are not finite ({where}); "
        "the Jacobian of this run is not defined, finished chunks in the output folder "
        "are kept"
    )


def _barrier(name: str, multiprocess: bool) -> None:
    if multiprocess:
        multihost_utils.sync_global_devices(name)
