"""Classification loss and accuracy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


@jax.jit
def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy, -(1/B) sum_i log softmax(logits_i)[labels_i].

    **Arguments:**

    - `logits`: `(B, k)` (or `(k,)` for one example).
    - `labels`: `(B,)` integer classes (or a scalar).

    **Returns:** a scalar.
    """
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, jnp.asarray(labels)[..., None], axis=-1)
    return -jnp.mean(picked)


@jax.jit
def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of examples whose largest logit is at the true label (ties: first index)."""
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def classification_loss(apply_fn: Callable[[Any, jax.Array], jax.Array]) -> Callable:
    """The loss `(params, batch) -> cross_entropy(apply_fn(params, batch["x"]), batch["y"])`.

    **Arguments:**

    - `apply_fn`: `(params, x) -> logits`, e.g. `jacscope.models.mlp_apply`.

    **Returns:** a pure function of `params` and a batch `{"x", "y"}`, the `loss_fn`
    of `jacscope.training.TrainingRun`.
    """

    def loss(params: Any, batch: dict) -> jax.Array:
        return cross_entropy(apply_fn(params, batch["x"]), batch["y"])

    return loss
