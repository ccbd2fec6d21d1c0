"""Training restricted to a subspace spanned by singular vectors of the training Jacobian."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jacscope.training._analysis_spectrum import bulk_order
from jacscope.training._run import TrainingRun

SUBSPACES = ("top", "bulk", "stable", "complement")
"""The subspaces of `restricted_training`: the k right singular vectors with the
largest singular values, the k closest to one, the k smallest, and the k farthest
from one (the complement of the bulk)."""


def subspace_indices(singular_values, name: str, k: int) -> np.ndarray:
    """Indices of the k right singular vectors spanning subspace `name` (see `SUBSPACES`).

    **Arguments:**

    - `singular_values`: `(n,)` singular values (any order).
    - `name`: `"top"` (largest s), `"bulk"` (smallest |s - 1|), `"stable"` (smallest
      s) or `"complement"` (largest |s - 1|).
    - `k`: the dimension, `1 <= k <= n`.
    """
    s = np.asarray(singular_values, dtype=np.float64)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= s.size:
        raise ValueError(f"k must be an integer in [1, {s.size}], received {k!r}")
    descending = np.argsort(-s, kind="stable")
    by_distance = bulk_order(s)
    choices = {
        "top": descending[:k],
        "stable": descending[s.size - k :],
        "bulk": by_distance[:k],
        "complement": by_distance[s.size - k :],
    }
    if name not in choices:
        raise ValueError(f"unknown subspace {name!r}; choose one of {', '.join(SUBSPACES)}")
    return choices[name]


def train_in_subspace(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    params0: Any,
    batches: Any,
    basis: jax.Array,
) -> tuple[Any, jax.Array]:
    """Train only inside theta_0 + span(basis^T): theta = theta_0 + basis^T z, z_0 = 0.

    The optimizer acts on the k coordinates z (as in arXiv 2412.07003's code), so
    the gradient it sees is basis @ grad_theta; for SGD with momentum this equals
    training theta with the gradient projected onto the span.

    **Arguments:**

    - `loss_fn`, `optimizer`, `params0`, `batches`: as for `TrainingRun`.
    - `basis`: `(k, P)` with orthonormal rows, in `ravel_pytree(params0)` order.

    **Returns:** `(theta_T, losses)`: the final parameters as a pytree shaped like
    `params0` (theta_T - theta_0 lies in the span), and the loss at every step.
    Pure; `jit`/`vmap` it over bases of one shape.
    """
    theta0, unravel = ravel_pytree(params0)
    basis = jnp.asarray(basis, theta0.dtype)

    def subspace_loss(z, batch):
        return loss_fn(unravel(theta0 + z @ basis), batch)

    z0 = jnp.zeros(basis.shape[0], theta0.dtype)
    z_T, losses = TrainingRun(z0, subspace_loss, optimizer, batches).train()
    return unravel(theta0 + z_T @ basis), losses


class RestrictedTraining(NamedTuple):
    """Test loss of training restricted to k-dimensional singular subspaces.

    **Fields:**

    - `ks`: the dimensions k.
    - `subspaces`: names of the subspaces (rows of the arrays), see `SUBSPACES`.
    - `test_loss`: `(len(subspaces), len(ks))`, `eval_fn` of the restricted theta_T.
    - `final_loss`: same shape, the training loss of the last step.
    - `full_test_loss`: `eval_fn` after unrestricted training, for reference.
    """

    ks: list[int]
    subspaces: list[str]
    test_loss: np.ndarray
    final_loss: np.ndarray
    full_test_loss: float


@eqx.filter_jit
def _restricted_losses(loss_fn, optimizer, params0, batches, bases, eval_fn):
    def one(basis):
        theta_T, losses = train_in_subspace(loss_fn, optimizer, params0, batches, basis)
        return eval_fn(theta_T), losses[-1]

    return jax.lax.map(one, bases)


@eqx.filter_jit
def _full_loss(loss_fn, optimizer, params0, batches, eval_fn):
    return eval_fn(TrainingRun(params0, loss_fn, optimizer, batches).train()[0])


def restricted_training(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    params0: Any,
    batches: Any,
    singular_values,
    Vt,
    ks: Sequence[int],
    *,
    eval_fn: Callable[[Any], jax.Array],
    subspaces: Sequence[str] = SUBSPACES,
) -> RestrictedTraining:
    """Train inside the span of k right singular vectors of J; test loss against k.

    The experiment of Belrose & Scherlis (arXiv 2412.07003): if training leaves the
    bulk (the directions with s closest to one) alone, training confined to it should
    barely lower the test loss, while training in its complement should come close
    to unrestricted training.

    **Arguments:**

    - `loss_fn`, `optimizer`, `params0`, `batches`: the training run (as for
      `TrainingRun`) whose Jacobian was decomposed.
    - `singular_values`, `Vt`: its singular values and right singular vectors (rows),
      in `ravel_pytree(params0)` order.
    - `ks`: subspace dimensions.
    - `eval_fn`: `params -> scalar` at the restricted theta_T (e.g. the test loss).
    - `subspaces`: which of `SUBSPACES` to train in.

    **Returns:** a `RestrictedTraining`; diverged runs give NaN.

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.
    """
    s = np.asarray(singular_values)
    Vt = np.asarray(Vt)
    num_params = ravel_pytree(params0)[0].shape[0]
    if Vt.shape != (s.size, num_params):
        raise ValueError(
            f"Vt must have shape ({s.size}, {num_params}) for {s.size} singular values and "
            f"{num_params} parameters; received {Vt.shape}"
        )
    ks = [int(k) for k in ks]
    subspaces = list(subspaces)
    test_loss = np.empty((len(subspaces), len(ks)))
    final_loss = np.empty_like(test_loss)
    for column, k in enumerate(ks):
        bases = np.stack([Vt[subspace_indices(s, name, k)] for name in subspaces])
        tests, finals = _restricted_losses(
            loss_fn, optimizer, params0, batches, jnp.asarray(bases), eval_fn
        )
        test_loss[:, column] = np.asarray(tests)
        final_loss[:, column] = np.asarray(finals)
    return RestrictedTraining(
        ks=ks,
        subspaces=subspaces,
        test_loss=test_loss,
        final_loss=final_loss,
        full_test_loss=float(_full_loss(loss_fn, optimizer, params0, batches, eval_fn)),
    )
