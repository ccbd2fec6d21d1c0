"""Spectrum of a trained network's Jacobian, with respect to its parameters or inputs.

The job trains the default MLP briefly, takes the Jacobian J of its logits on a batch
of test examples, as a matrix-free `jacscope.JacobianOperator`, and measures it with
`jacscope.linalg`: the top-k singular values with their residuals, and ||J||_F^2
estimated twice, as the trace of the Gram matrix J J^T and by `frobenius_sq`. With an
output folder (`jacscope.jobs.JobFolder`) each measurement is a stage kept in
`stages/` as it finishes, and the result is written last as `report.json`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jacscope import linalg
from jacscope._progress import Progress, ProgressCallback, report_to
from jacscope._stages import plain
from jacscope._validation import check_count, check_losses, check_rank, check_x64
from jacscope.data import Dataset, load_dataset, make_batches
from jacscope.jobs._folder import JobFolder
from jacscope.models import accuracy, classification_loss, init_mlp, mlp_apply
from jacscope.operators import JacobianOperator, jacobian_operator
from jacscope.training import TrainingRun

KIND = "spectrum"

STAGES = ("data", "train", "operator", "svd", "trace", "frobenius")
"""The stages of `run_spectrum`, in order, as passed to its progress callback."""


@dataclasses.dataclass(frozen=True)
class SpectrumConfig:
    """What `run_spectrum` computes.

    **Fields:**

    - `dataset`: `"digits"` or `"mnist1d"`.
    - `wrt`: `"params"` (J is (B c) x P) or `"inputs"` (J is (B c) x (B d)), for B
      examples, c classes, P parameters and d input features.
    - `k`: number of singular values, `1 <= k <= min(shape of J)`.
    - `hidden`: hidden widths of the MLP; input and output widths come from the data
      (digits: 64 -> 64 -> 10, the network of arXiv 2412.07003).
    - `epochs`: passes of plain SGD over the training split (fixed batch order,
      `jacscope.data.make_batches`).
    - `batch_size`: examples per SGD step.
    - `lr`: the SGD step size.
    - `num_examples`: B, the first B test examples form the batch J is taken on.
    - `method`: `jacscope.linalg.svd_topk` method, `"lanczos"` or `"randomized"`.
    - `lanczos_depth`: Lanczos depth; default `min(min(shape), 6 k + 20)`, deeper than
      `svd_topk`'s own default because the input Jacobian's spectrum is tightly
      clustered (it pools B per-example spectra of c values each).
    - `trace_method`: the estimator of the trace of J J^T.
    - `num_matvecs`: products for the trace of J J^T, and probes of `frobenius_sq`.
    - `labels`: `"real"` or `"shuffled"` (the random-labels control).
    - `inputs`: `"real"` or `"noise"` (the uniform-noise inputs control).
    - `seed`: seeds initialisation, data controls and every randomized estimator.
    - `dtype`: `"float32"` or `"float64"` (the latter needs `jax_enable_x64`).
    """

    dataset: Literal["digits", "mnist1d"] = "digits"
    wrt: Literal["params", "inputs"] = "params"
    k: int = 32
    hidden: tuple[int, ...] = (64,)
    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.3
    num_examples: int = 64
    method: Literal["lanczos", "randomized"] = "lanczos"
    lanczos_depth: int | None = None
    trace_method: Literal["hutchinson", "hutchpp", "xtrace"] = "xtrace"
    num_matvecs: int = 100
    labels: Literal["real", "shuffled"] = "real"
    inputs: Literal["real", "noise"] = "real"
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float32"

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(self.hidden))


class SpectrumResult(NamedTuple):
    """What `run_spectrum` returns; every field is a plain JSON value.

    **Fields:**

    - `config`: `dataclasses.asdict(SpectrumConfig)`.
    - `shape`: `[m, n]` of J.
    - `singular_values`: the top-k, descending.
    - `residuals`: `||J v_i - s_i u_i||` for each, from k explicit products; a
      singular value of J lies within `residuals[i] / sqrt(2)` of `singular_values[i]`
      (see `jacscope.linalg.svd_topk`).
    - `svd_matvecs`: products with J or J^T the SVD and its residuals spent.
    - `gram_trace`: tr(J J^T) as `{"value", "stderr", "num_matvecs"}`, the trace
      estimator on the Gram operator J J^T; `num_matvecs` counts products with
      J J^T, each one JVP and one VJP.
    - `frobenius_sq`: ||J||_F^2 from `jacscope.linalg.frobenius_sq` (Hutchinson on
      J^T J, one JVP per probe); the same quantity as `gram_trace`, estimated
      independently.
    - `frobenius`: ||J||_F = sqrt(frobenius_sq), stderr by the delta method.
    - `top_k_energy`: sum_i s_i^2 / ||J||_F^2 (with `frobenius_sq`), the share of
      the squared Frobenius norm in the top k directions.
    - `training`: `num_steps`, first and last training loss, test accuracy before and
      after training, `num_params`.
    - `timings`: seconds per stage (see `STAGES`) and `total`.
    - `dtype`: the floating-point type of the computation.
    - `resumed`: the stages taken from the folder instead of computed.
    """

    config: dict
    shape: list
    singular_values: list
    residuals: list
    svd_matvecs: int
    gram_trace: dict
    frobenius_sq: dict
    frobenius: dict
    top_k_energy: float
    training: dict
    timings: dict
    dtype: str
    resumed: list


def _sizes(config: SpectrumConfig, data: Dataset) -> tuple[int, ...]:
    return (data.x_train.shape[1], *config.hidden, data.num_classes)


def _load_checked(config: SpectrumConfig) -> tuple[Dataset, tuple[int, int]]:
    """The dataset and the Jacobian's shape, once every option is known to be valid."""
    for name, allowed in (
        ("wrt", ("params", "inputs")),
        ("method", ("lanczos", "randomized")),
        ("trace_method", ("hutchinson", "hutchpp", "xtrace")),
        ("dtype", ("float32", "float64")),
    ):
        if getattr(config, name) not in allowed:
            raise ValueError(
                f"{name} must be one of {', '.join(allowed)}; received {getattr(config, name)!r}"
            )
    for name in ("epochs", "batch_size", "num_examples", "num_matvecs"):
        check_count(getattr(config, name), name)
    if not (isinstance(config.lr, int | float) and math.isfinite(config.lr) and config.lr > 0):
        raise ValueError(f"lr must be a finite number > 0, received {config.lr!r}")
    check_x64(config.dtype)
    if not config.hidden or min(config.hidden) < 1:
        raise ValueError(f"hidden must list at least one positive width, received {config.hidden}")
    data = load_dataset(
        config.dataset, labels=config.labels, inputs=config.inputs, seed=config.seed
    )
    if config.num_examples > data.x_test.shape[0]:
        raise ValueError(
            f"num_examples={config.num_examples} exceeds the {data.x_test.shape[0]} test "
            f"examples of {data.name}"
        )
    sizes = _sizes(config, data)
    num_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    columns = num_params if config.wrt == "params" else config.num_examples * sizes[0]
    shape = (config.num_examples * data.num_classes, columns)
    check_rank(config.k, shape, f"spectrum of the Jacobian with respect to {config.wrt}")
    return data, shape


def jacobian_shape(config: SpectrumConfig) -> tuple[int, int]:
    """The shape (m, n) of the Jacobian `config` asks about, after checking every option.

    Cheap (it loads the data, trains nothing): callers use it to refuse a bad request
    before doing anything else.

    **Raises:** `ValueError` for an unknown dataset or option, too many examples, or
    a `k` larger than the smaller side of J (the message names `k` and the shape).
    """
    return _load_checked(config)[1]


class PreparedJacobian(NamedTuple):
    """The trained network and its Jacobian operator, before any measurement.

    **Fields:** `op` (the `jacscope.JacobianOperator` J), `params` (trained
    parameters), `x` (the `(B, d)` batch J is taken on), `training` (the `training`
    dict of `SpectrumResult`).
    """

    op: JacobianOperator
    params: Any
    x: jax.Array
    training: dict


def prepare_jacobian(
    config: SpectrumConfig, stage: Callable[[str], None] | None = None
) -> PreparedJacobian:
    """Load the data, train the MLP and linearise it: the first stages of `run_spectrum`.

    Deterministic in `config` (and the floating-point precision): calling it again
    rebuilds the same operator, which is how the Jacobian behind a stored result can
    be recomputed and checked. `stage(name)` is called as `"train"` and
    `"operator"` begin.

    **Raises:** as `jacobian_shape`, before any training; `FloatingPointError` if
    training diverges.
    """
    data, shape = _load_checked(config)
    sizes = _sizes(config, data)
    stage = stage if stage is not None else (lambda name: None)
    dtype = jnp.dtype(config.dtype)
    x_batch = jnp.asarray(data.x_test[: config.num_examples], dtype)
    batches = make_batches(
        data.x_train.astype(dtype), data.y_train, config.batch_size, config.epochs
    )

    stage("train")
    params0 = init_mlp(_keys(config).init, sizes, dtype=dtype)
    run = TrainingRun(params0, classification_loss(mlp_apply), optax.sgd(config.lr), batches)
    params, losses = _train(run)
    losses = np.asarray(losses)
    check_losses(losses, f"lower --lr (now {config.lr})")
    x_test, y_test = jnp.asarray(data.x_test, dtype), jnp.asarray(data.y_test)
    training = {
        "num_steps": run.num_steps,
        "num_params": int(ravel_pytree(params0)[0].size),
        "loss_first": float(losses[0]),
        "loss_last": float(losses[-1]),
        "test_accuracy_init": float(accuracy(mlp_apply(params0, x_test), y_test)),
        "test_accuracy": float(accuracy(mlp_apply(params, x_test), y_test)),
    }

    stage("operator")
    op = jacobian_operator(mlp_apply, params, x_batch, wrt=0 if config.wrt == "params" else 1)
    if op.shape != shape:
        raise AssertionError(f"Jacobian shape {op.shape} differs from the expected {shape}")
    return PreparedJacobian(op=op, params=params, x=x_batch, training=training)


class _Keys(NamedTuple):
    init: jax.Array
    svd: jax.Array
    trace: jax.Array
    frobenius: jax.Array


def _keys(config: SpectrumConfig) -> _Keys:
    return _Keys(*jax.random.split(jax.random.key(config.seed), 4))


def run_spectrum(
    config: SpectrumConfig,
    out: str | os.PathLike | None = None,
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> SpectrumResult:
    r"""Train the MLP briefly and measure the spectrum of its Jacobian on a test batch.

    Let f(theta, X) in R^{B x c} be the logits of the MLP on the first B test examples
    X in R^{B x d}, after `epochs` of SGD from `init_mlp(key, sizes)`. The job forms,
    without materialising it, J = d vec f / d theta (shape (B c) x P, `wrt="params"`)
    or J = d vec f / d vec X (shape (B c) x (B d), `wrt="inputs"`), and returns its k
    largest singular values (`jacscope.linalg.svd_topk`) with residuals, and its
    squared Frobenius norm ||J||_F^2 = tr(J J^T) = tr(J^T J) = sum_i sigma_i^2.

    A non-square J has no trace; the trace reported is that of the Gram matrix
    J J^T (the (B c) x (B c) side, each product one JVP and one VJP). For
    `wrt="inputs"` J is block diagonal, one c x d block J_b = d f(x_b) / d x_b per
    example, so its singular values are those of all the per-example input Jacobians
    pooled, and ||J||_F^2 = sum_b ||J_b||_F^2 (divide by B for the mean per example).
    For `wrt="params"` J J^T is the empirical neural tangent kernel of the batch
    (per class pair), and the singular values of J are the square roots of its
    eigenvalues. Cf. Belrose & Scherlis, arXiv 2412.07003, for this network and data.

    **Arguments:**

    - `config`: a `SpectrumConfig`.
    - `out`: the output folder; the SVD, trace and Frobenius stages are kept there
      as they finish and reused by the same command (`None`: keep nothing).
    - `force`: discard what `out` holds and start over.
    - `progress`: called with a `jacscope.Progress` (task `"spectrum"`, unit
      `"stages"`, `done` the index of the stage of `STAGES` that begins) as each stage
      begins, and once more when all are done.

    **Returns:** a `SpectrumResult` (also written to `out/report.json`, last).

    **Raises:** as `prepare_jacobian`, before anything is written;
    `jacscope.FolderError` if `out` holds another configuration (without `force`);
    `FloatingPointError` if training diverges.
    """
    progress = report_to(progress)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    current = [None, start]  # the running stage and when it began

    def stage(name: str) -> None:
        now = time.perf_counter()
        if current[0] is not None:
            timings[current[0]] = now - current[1]
        current[:] = [name, now]
        index = STAGES.index(name) if name in STAGES else len(STAGES)
        progress(Progress("spectrum", index, len(STAGES), "stages"))

    jacobian_shape(config)  # refuse a bad request before touching `out`
    dtype = config.dtype
    identity = {"config": dataclasses.asdict(config)}
    folder = JobFolder(out, KIND, identity, {"command": KIND, "spectrum": config})
    with folder.claimed(force=force):
        stage("data")
        op, _, _, training = prepare_jacobian(config, stage)
        keys = _keys(config)

        def svd() -> dict:
            if config.method == "lanczos":
                depth = (
                    min(min(op.shape), 6 * config.k + 20)
                    if config.lanczos_depth is None
                    else config.lanczos_depth
                )
                options = {"depth": depth}
            else:
                options = {}
            _, s, _, info = linalg.svd_topk(
                op, config.k, key=keys.svd, method=config.method, **options
            )
            # residuals from k explicit products with J
            return {"values": s, "residuals": info.residuals, "num_matvecs": info.num_matvecs}

        stage("svd")
        top = folder.stage("svd", svd)
        stage("trace")
        gram_trace = folder.stage(
            "trace",
            lambda: linalg.trace(
                op @ op.T,
                key=keys.trace,
                method=config.trace_method,
                num_matvecs=config.num_matvecs,
            ),
        )
        stage("frobenius")
        frob_sq = folder.stage(
            "frobenius",
            lambda: linalg.frobenius_sq(op, key=keys.frobenius, num_matvecs=config.num_matvecs),
        )
        frob = math.sqrt(max(frob_sq["value"], 0.0))
        frob_stderr = frob_sq["stderr"] / (2 * frob) if frob > 0 else 0.0
        estimate = lambda e: {k: e[k] for k in ("value", "stderr", "num_matvecs")}

        stage("done")
        timings["total"] = current[1] - start
        s = np.asarray(top["values"])
        result = SpectrumResult(
            config=plain(dataclasses.asdict(config)),
            shape=list(op.shape),
            singular_values=[float(v) for v in s],
            residuals=[float(r) for r in top["residuals"]],
            svd_matvecs=int(top["num_matvecs"]),
            gram_trace=estimate(gram_trace),
            frobenius_sq=estimate(frob_sq),
            frobenius={"value": frob, "stderr": frob_stderr, "num_matvecs": frob_sq["num_matvecs"]},
            top_k_energy=float(np.sum(s**2) / frob_sq["value"]) if frob > 0 else 0.0,
            training=training,
            timings=timings,
            dtype=dtype,
            resumed=list(folder.resumed),
        )
        folder.finish(result)
        return result


@eqx.filter_jit
def _train(run: TrainingRun) -> tuple[Any, jax.Array]:
    return run.train()
