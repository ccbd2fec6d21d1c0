"""The training run of Belrose & Scherlis (arXiv 2412.07003) as a configuration.

`TrainingConfig` describes a run (data, network, optimizer, batches, seed) with
plain JSON values; `build_run` turns it into a `TrainingRun` together with what the
analyses need next to it (data, forward pass, loss, optimizer, schedule).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jacscope._validation import check_count, check_x64
from jacscope.data import Dataset, load_dataset, make_batches
from jacscope.models import classification_loss, cnn_apply, init_cnn, init_mlp, mlp_apply
from jacscope.training._run import TrainingRun

DEFAULT_LEARNING_RATES = {"sgd": 0.1, "adam": 3e-3}
"""Peak learning rate of the cosine schedule per optimizer, as in the paper's code."""

_CHOICES = {
    "dataset": ("digits", "mnist1d"),
    "model": ("mlp", "cnn"),
    "labels": ("real", "shuffled"),
    "inputs": ("real", "noise"),
    "optimizer": ("sgd", "adam"),
    "dtype": ("float32", "float64"),
}


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """A deterministic training run; the defaults are the paper's setting.

    The default trains a 64 -> 64 -> 10 GELU MLP (P = 4810 parameters) on the
    scikit-learn digits (1600 training examples, features / 16) with batches of 64 in
    a fixed order for 25 epochs (625 steps) of SGD with momentum 0.9 and a cosine
    decay of the learning rate from 0.1 to 0 over all steps (the setting of Belrose &
    Scherlis).

    **Fields:**

    - `dataset`: `"digits"` or `"mnist1d"` (`jacscope.data.load_dataset`).
    - `model`: `"mlp"` (GELU MLP of `hidden_layers` layers of width `hidden`) or
      `"cnn"` (LeNet-5-like, `jacscope.models.init_cnn`: 61,706 parameters on digits;
      `hidden` and `hidden_layers` do not apply).
    - `labels`: `"real"` or `"shuffled"` (training labels permuted at random).
    - `inputs`: `"real"` or `"noise"` (features replaced by uniform noise on [0, 1)).
    - `hidden`: width of every hidden layer.
    - `hidden_layers`: number of hidden layers.
    - `epochs`: passes over the training data.
    - `batch_size`: examples per step; a trailing partial batch is dropped.
    - `optimizer`: `"sgd"` (momentum `momentum`) or `"adam"` (`eps_root=1e-8`).
    - `lr`: peak learning rate of the cosine schedule; `None` takes the optimizer's
      default from `DEFAULT_LEARNING_RATES` (0.1 for SGD, 3e-3 for Adam).
    - `momentum`: SGD momentum (unused by Adam).
    - `seed`: seed of the initialisation `theta_0`.
    - `data_seed`: seed of the shuffled labels, noise inputs and MNIST-1D generator;
      kept apart from `seed` so that a second initialisation trains on the same data.
    - `train_size`: use only the first `train_size` training examples (`None`: all).
    - `dtype`: `"float32"` or `"float64"` (the latter needs `jax_enable_x64`).

    The fields are plain values: `dataclasses.asdict(config)` is JSON-ready.

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.
    """

    dataset: Literal["digits", "mnist1d"] = "digits"
    model: Literal["mlp", "cnn"] = "mlp"
    labels: Literal["real", "shuffled"] = "real"
    inputs: Literal["real", "noise"] = "real"
    hidden: int = 64
    hidden_layers: int = 1
    epochs: int = 25
    batch_size: int = 64
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float | None = None
    momentum: float = 0.9
    seed: int = 0
    data_seed: int = 0
    train_size: int | None = None
    dtype: Literal["float32", "float64"] = "float32"

    def __post_init__(self):
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"{name} must be one of {', '.join(choices)}; received {getattr(self, name)!r}"
                )
        for name in ("hidden", "hidden_layers", "epochs", "batch_size"):
            check_count(getattr(self, name), name)
        for name in ("seed", "data_seed"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int):
                raise ValueError(f"{name} must be an integer, received {getattr(self, name)!r}")
        if self.train_size is not None:
            check_count(self.train_size, "train_size")
        if self.lr is not None and not (
            isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0
        ):
            raise ValueError(f"lr must be a finite number > 0, received {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), received {self.momentum!r}")

    @property
    def learning_rate(self) -> float:
        """The peak learning rate: `lr`, or the optimizer's default."""
        return DEFAULT_LEARNING_RATES[self.optimizer] if self.lr is None else float(self.lr)


class Setup(NamedTuple):
    """A built training run and what its analyses need beside it.

    **Fields:**

    - `run`: the `TrainingRun` theta_0 -> theta_T (`run.train(params0)` retrains
      from another initialisation; pure, `vmap`-able).
    - `dataset`: the data, features in the configured dtype (test split included).
    - `apply_fn`: `(params, x) -> logits`.
    - `loss_fn`: `(params, {"x", "y"}) -> mean cross-entropy`.
    - `optimizer`: the optax transformation the run steps with.
    - `schedule`: the learning-rate schedule, `step -> learning rate`.
    - `config`: the `TrainingConfig` it was built from.
    """

    run: TrainingRun
    dataset: Dataset
    apply_fn: Callable
    loss_fn: Callable
    optimizer: optax.GradientTransformation
    schedule: Callable
    config: TrainingConfig


def build_run(config: TrainingConfig = TrainingConfig()) -> Setup:  # noqa: B008 (frozen)
    """Build the training run `config` describes.

    Data from `jacscope.data.load_dataset` (first `train_size` training examples
    if set); batches from `jacscope.data.make_batches` (fixed order, same every
    epoch, T = epochs * floor(N / batch_size) steps); parameters from
    `jacscope.models.init_mlp(jax.random.key(seed), (d, hidden x hidden_layers, classes))`
    (or `init_cnn(jax.random.key(seed), (8, 8) or (40,), classes)` for the CNN);
    learning rate `optax.cosine_decay_schedule(lr, T)`, i.e.
    eta_t = lr (1 + cos(pi t / T)) / 2, from lr at step 0 to 0 at step T; optimizer
    `optax.sgd(eta, momentum)` or `optax.adam(eta, eps_root=1e-8)`.

    **Arguments:**

    - `config`: a `TrainingConfig` (default: the paper's setting, P = 4810, T = 625).

    **Returns:** a `Setup`.

    **Raises:** `ValueError` if `dtype="float64"` without `jax_enable_x64`, or if
    `batch_size` exceeds the number of training examples.
    """
    check_x64(config.dtype)
    dtype = jnp.dtype(config.dtype)
    data = load_dataset(
        config.dataset, labels=config.labels, inputs=config.inputs, seed=config.data_seed
    )
    num_train = data.x_train.shape[0] if config.train_size is None else config.train_size
    if num_train > data.x_train.shape[0]:
        raise ValueError(
            f"train_size={num_train} exceeds the {data.x_train.shape[0]} training examples "
            f"of {data.name}"
        )
    if config.batch_size > num_train:
        raise ValueError(
            f"batch_size={config.batch_size} exceeds the {num_train} training examples"
        )
    data = data._replace(
        x_train=data.x_train[:num_train].astype(dtype),
        y_train=data.y_train[:num_train],
        x_test=data.x_test.astype(dtype),
    )
    batches = make_batches(data.x_train, data.y_train, config.batch_size, config.epochs)
    num_steps = config.epochs * (num_train // config.batch_size)
    key = jax.random.key(config.seed)
    if config.model == "mlp":
        sizes = (data.x_train.shape[1], *([config.hidden] * config.hidden_layers), data.num_classes)
        params0, apply_fn = init_mlp(key, sizes, dtype=dtype), mlp_apply
    else:
        # digits are 8 x 8 images, MNIST-1D signals of length 40
        features = data.x_train.shape[1]
        side = math.isqrt(features)
        shape = (side, side) if config.dataset == "digits" else (features,)
        params0 = init_cnn(key, shape, data.num_classes, dtype=dtype)
        apply_fn = cnn_apply

    schedule = optax.cosine_decay_schedule(config.learning_rate, num_steps)
    if config.optimizer == "sgd":
        optimizer = optax.sgd(schedule, momentum=config.momentum)
    else:
        optimizer = optax.adam(schedule, eps_root=1e-8)
    loss_fn = classification_loss(apply_fn)
    run = TrainingRun(params0, loss_fn, optimizer, batches)
    return Setup(
        run=run,
        dataset=data,
        apply_fn=apply_fn,
        loss_fn=loss_fn,
        optimizer=optimizer,
        schedule=schedule,
        config=config,
    )
