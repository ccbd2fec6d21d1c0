"""A continuous normalising flow trained by maximum likelihood, in a folder that resumes.

`run_flow` trains FFJORD's concat field (`jacscope.flows.concat_field`) on one of the
2-D densities of `jacscope.data.DENSITIES` by Adam on
`jacscope.flows.maximum_likelihood_loss`, unregularised or with RNODE's penalties or
the local-error regulariser, then evaluates it: the test NLL on held-out samples, the
solver's steps, the penalties, the learned density on a grid and samples of the flow.
Training runs in chunks of `checkpoint_every` iterations; each finished chunk is a
stage `train-<index>` of the folder (`jacscope.jobs.JobFolder`) holding the parameters,
the optimizer's state and the chunk's mean loss, so a killed run resumes from its last
chunk and ends with the same parameters as an uninterrupted one. The result is written
last as `report.json`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import time
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jacscope._extras import require
from jacscope._progress import Progress, ProgressCallback, report_to
from jacscope._stages import plain
from jacscope._validation import check_count, check_number
from jacscope.data import DENSITIES, sample_density
from jacscope.flows import (
    REGULARISERS,
    cnf_log_density,
    cnf_sample,
    concat_field,
    init_concat_field,
    maximum_likelihood_loss,
)
from jacscope.jobs._folder import JobFolder

KIND = "flow"

MODE = "flow"
"""The `mode` of a flow report.json, which picks its layout in `jacscope.report`."""

DIM = 2
NUM_TEST = 1024
"""Held-out samples of the test NLL (drawn with the key `seed + 1`)."""
NUM_SAMPLES = 2000
"""Samples drawn from the flow, and from the data, for the report's figures."""
GRID = 80
EXTENT = 3.0
"""The learned density is drawn on a `GRID` x `GRID` grid over [-EXTENT, EXTENT]^2."""
WEIGHT = 0.05
"""The weight of the regulariser in the loss."""


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """What `run_flow` computes: a continuous normalising flow trained on a 2-D density.

    **Fields:**

    - `dataset`: one of `jacscope.data.DENSITIES`: `eight_gaussians`, `checkerboard`,
      `moons`, `pinwheel`, `rings`.
    - `regulariser`: `none`, `rnode` (kinetic energy + Jacobian Frobenius, weight 0.05
      each) or `local-error` (the solver's local-error step estimate, weight 0.05).
    - `iterations`: Adam steps, each on a fresh batch.
    - `batch_size`: samples per step.
    - `hidden`: the widths of the concat field's hidden layers.
    - `learning_rate`: Adam's learning rate.
    - `seed`: seeds the initialisation and the batches; the test samples use seed + 1.
    - `checkpoint_every`: iterations per chunk; each finished chunk is kept in the
      folder, so a rerun resumes from the last one.
    """

    dataset: Literal["eight_gaussians", "checkerboard", "moons", "pinwheel", "rings"] = (
        "eight_gaussians"
    )
    regulariser: Literal["none", "rnode", "local-error"] = "none"
    iterations: int = 1000
    batch_size: int = 256
    hidden: tuple[int, ...] = (64, 64, 64)
    learning_rate: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 100

    def __post_init__(self):
        if self.dataset not in DENSITIES:
            raise ValueError(
                f"dataset must be one of {', '.join(DENSITIES)}; received {self.dataset!r}"
            )
        if self.regulariser not in REGULARISERS:
            raise ValueError(
                f"regulariser must be one of {', '.join(REGULARISERS)}; "
                f"received {self.regulariser!r}"
            )
        if isinstance(self.hidden, str) or not hasattr(self.hidden, "__iter__"):
            raise ValueError(f"hidden must be a list of widths, received {self.hidden!r}")
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if not self.hidden:
            raise ValueError("hidden must name at least one hidden layer's width")
        for width in self.hidden:
            check_count(width, "every width of hidden")
        check_count(self.iterations, "iterations")
        check_count(self.batch_size, "batch_size")
        check_count(self.checkpoint_every, "checkpoint_every")
        check_number(self.learning_rate, "learning_rate")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, received {self.seed!r}")

    @property
    def num_chunks(self) -> int:
        """The chunks of training: `ceil(iterations / checkpoint_every)`."""
        return -(-self.iterations // self.checkpoint_every)


class FlowResult(NamedTuple):
    """What `run_flow` returns; every field is a plain JSON value.

    **Fields:**

    - `mode`: `"flow"`.
    - `config`: `dataclasses.asdict(FlowConfig)`.
    - `num_params`: the field's parameters.
    - `loss_curve`: `iteration` (the last iteration of each chunk) and `loss` (the
      chunk's mean training loss, regulariser included).
    - `test_nll`: -mean log p on `NUM_TEST` held-out samples (nats).
    - `steps`: the solver's mean steps per solve of the log-density on those samples.
    - `penalties`: the mean `kinetic_energy` and `jacobian_frobenius` on them.
    - `timings`: `train` (the chunks' seconds, kept in their stages, so also for a
      resumed run), `evaluate`, and `total`, those of this call.
    - `dtype`: `"float32"`.
    - `resumed`: the stages taken from the folder instead of computed.

    The density grid, the flow's samples and the data samples the report draws are
    kept in `stages/evaluate.npz` (`density`, `samples`, `data`).
    """

    mode: str
    config: dict
    num_params: int
    loss_curve: dict
    test_nll: float
    steps: float
    penalties: dict
    timings: dict
    dtype: str
    resumed: list


@functools.lru_cache(maxsize=16)
def _step_fn(dataset: str, regulariser: str, batch_size: int, learning_rate: float):
    """One jitted Adam step on a fresh batch: (params, opt_state, key) -> (params,
    opt_state, loss). Cached, so the runs of one process compile it once."""
    optimizer = optax.adam(learning_rate)

    def step(params, opt_state, key):
        data_key, loss_key = jax.random.split(key)
        x = sample_density(dataset, data_key, batch_size).astype(jnp.float32)
        loss, grads = jax.value_and_grad(maximum_likelihood_loss)(
            params, x, loss_key, regulariser=regulariser, weight=WEIGHT
        )
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    return optimizer, jax.jit(step)


def _initial(config: FlowConfig):
    """The initial (params, opt_state)."""
    init_key = jax.random.fold_in(jax.random.key(config.seed), 0)
    params = init_concat_field(init_key, DIM, config.hidden, dtype=jnp.float32)
    optimizer, _ = _step_fn(
        config.dataset, config.regulariser, config.batch_size, config.learning_rate
    )
    return params, optimizer.init(params)


def _leaves(state) -> dict[str, np.ndarray]:
    return {f"state_{i:04d}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(state))}


def _restored(saved: dict, like):
    """The (params, opt_state) kept in a chunk's stage, with the structure of `like`."""
    leaves, treedef = jax.tree.flatten(like)
    names = sorted(name for name in saved if name.startswith("state_"))
    if len(names) != len(leaves):
        raise ValueError("a training chunk in the folder does not match this configuration")
    arrays = [
        jnp.asarray(saved[name], dtype=leaf.dtype) for name, leaf in zip(names, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, arrays)


def _train_chunk(config: FlowConfig, index: int, state) -> dict:
    """Chunk `index` of training from `state`: the stage `train-<index>`."""
    _, step = _step_fn(config.dataset, config.regulariser, config.batch_size, config.learning_rate)
    params, opt_state = state
    train_key = jax.random.fold_in(jax.random.key(config.seed), 1)
    first = index * config.checkpoint_every
    last = min(first + config.checkpoint_every, config.iterations)
    losses = []
    for iteration in range(first, last):
        params, opt_state, loss = step(params, opt_state, jax.random.fold_in(train_key, iteration))
        losses.append(loss)
    losses = np.asarray(jax.device_get(losses), dtype=float)
    if not np.all(np.isfinite(losses)):
        bad = first + int(np.argmax(~np.isfinite(losses)))
        raise FloatingPointError(
            f"the training loss is not finite at iteration {bad}: training diverged; "
            "lower --learning-rate"
        )
    return {**_leaves((params, opt_state)), "loss": float(losses.mean()), "iteration": last}


def _digest(params) -> str:
    """A digest of the trained parameters, which the evaluation depends on."""
    hasher = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        hasher.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return hasher.hexdigest()


@jax.jit
def _penalised(params, x):
    return jax.vmap(lambda x: cnf_log_density(concat_field, params, x, penalties=True))(x)


@jax.jit
def _samples(params, z0):
    return cnf_sample(concat_field, params, z0)


def grid_axis() -> np.ndarray:
    """The coordinates of the density grid along each axis."""
    return np.linspace(-EXTENT, EXTENT, GRID)


def _evaluate(config: FlowConfig, params) -> dict:
    """The test NLL, steps, penalties, density grid and samples: the stage `evaluate`."""
    test_x = sample_density(config.dataset, jax.random.key(config.seed + 1), NUM_TEST)
    runs = _penalised(params, test_x.astype(jnp.float32))
    axis = grid_axis()
    gx, gy = np.meshgrid(axis, axis)  # density[i, j] at (x = axis[j], y = axis[i])
    grid = jnp.asarray(np.stack([gx.ravel(), gy.ravel()], axis=1), jnp.float32)
    log_p = np.asarray(_penalised(params, grid).log_density, dtype=float)
    density = np.exp(log_p).reshape(GRID, GRID)
    z0 = jax.random.normal(jax.random.key(config.seed + 2), (NUM_SAMPLES, DIM), jnp.float32)
    data = sample_density(config.dataset, jax.random.key(config.seed + 3), NUM_SAMPLES)
    test_nll = float(-jnp.mean(runs.log_density))
    if not np.isfinite(test_nll):
        raise FloatingPointError("the test NLL of the trained flow is not finite")
    return {
        "test_nll": test_nll,
        "steps": float(jnp.mean(runs.num_steps)),
        "kinetic_energy": float(jnp.mean(runs.kinetic_energy)),
        "jacobian_frobenius": float(jnp.mean(runs.jacobian_frobenius)),
        "density": density,
        "samples": np.asarray(_samples(params, z0), dtype=np.float32),
        "data": np.asarray(data, dtype=np.float32),
    }


def run_flow(
    config: FlowConfig,
    out: str | os.PathLike | None = None,
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> FlowResult:
    r"""Train a continuous normalising flow on the 2-D density `config` names.

    Maximum likelihood with the exact divergence (`jacscope.flows.cnf_log_density`),
    Adam, float32, `config.iterations` steps on fresh batches, in chunks of
    `config.checkpoint_every`; then the evaluation on held-out samples.

    **Arguments:**

    - `config`: a `FlowConfig`.
    - `out`: the output folder; every finished chunk and the evaluation are kept there
      and reused by the same command (`None`: keep nothing).
    - `force`: discard what `out` holds and start over.
    - `progress`: called with a `jacscope.Progress` (task `"flow"`, unit `"stages"`:
      the chunks, then the evaluation) as training begins and after each stage.

    **Returns:** a `FlowResult` (also written to `out/report.json`, last).

    **Raises:** `jacscope.FolderError` if `out` holds another configuration (without
    `force`); `FloatingPointError` if training diverges; `MissingExtra` without diffrax.
    The configuration checks itself when built.
    """
    start = time.perf_counter()
    progress = report_to(progress)
    require("diffrax", "a continuous normalising flow")
    identity = {"config": dataclasses.asdict(config)}
    folder = JobFolder(out, KIND, identity, {"command": KIND, "flow": config})
    total = config.num_chunks + 1
    # float32 throughout, also where a caller has turned on jax_enable_x64 (diffrax
    # would promote the state to float64 from the float64 times)
    with folder.claimed(force=force), jax.enable_x64(False):
        progress(Progress("flow", 0, total, "stages"))
        like = _initial(config)
        state = like
        curve = {"iteration": [], "loss": []}
        train_seconds = 0.0
        for index in range(config.num_chunks):
            chunk = folder.stage(
                f"train-{index}",
                lambda index=index, state=state: _train_chunk(config, index, state),
                depends={"chunk": index, "config": dataclasses.asdict(config)},
            )
            state = _restored(chunk, like)
            curve["iteration"].append(chunk["iteration"])
            curve["loss"].append(chunk["loss"])
            train_seconds += chunk["seconds"]
            progress(Progress("flow", index + 1, total, "stages", time.perf_counter() - start))
        params = state[0]
        evaluated = folder.stage(
            "evaluate",
            lambda: _evaluate(config, params),
            depends={"config": dataclasses.asdict(config), "params": _digest(params)},
        )
        progress(Progress("flow", total, total, "stages", time.perf_counter() - start))
        result = FlowResult(
            mode=MODE,
            config=plain(dataclasses.asdict(config)),
            num_params=int(sum(np.size(leaf) for leaf in jax.tree.leaves(params))),
            loss_curve=curve,
            test_nll=evaluated["test_nll"],
            steps=evaluated["steps"],
            penalties={
                "kinetic_energy": evaluated["kinetic_energy"],
                "jacobian_frobenius": evaluated["jacobian_frobenius"],
            },
            timings={
                "train": train_seconds,
                "evaluate": evaluated["seconds"],
                "total": time.perf_counter() - start,
            },
            dtype="float32",
            resumed=list(folder.resumed),
        )
        folder.finish(result)
        return result
