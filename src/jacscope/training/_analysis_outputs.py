"""Effect of each singular direction on the trained network's predictions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jacscope.training._analysis_spectrum import DEFAULT_TAUS, region_summary

PROBE_SETS = ("train", "test", "inverted", "noise")
"""The input sets of `probe_inputs`: in distribution, and two far out of it."""


def probe_inputs(x_train, x_test, key: jax.Array) -> dict[str, jax.Array]:
    """The inputs on which `output_sensitivity` compares predictions.

    **Arguments:**

    - `x_train`, `x_test`: the training and test features.
    - `key`: a `jax.random` key for the noise inputs.

    **Returns:** `{"train": x_train, "test": x_test, "inverted": 1 - x_test,
    "noise": N(0, 1) of x_test's shape}` (the sets of arXiv 2412.07003;
    inverting suits features scaled to [0, 1]).
    """
    x_train = jnp.asarray(x_train)
    x_test = jnp.asarray(x_test)
    return {
        "train": x_train,
        "test": x_test,
        "inverted": 1 - x_test,
        "noise": jax.random.normal(key, x_test.shape, x_test.dtype),
    }


class OutputSensitivity(NamedTuple):
    """The largest KL divergence caused by adding each direction to theta_T.

    **Fields:**

    - `sets`: names of the input sets (rows of `max_kl`).
    - `max_kl`: `(len(sets), k)`, max over the set's inputs x of
      KL(p(. | x, theta_T) || p(. | x, theta_T + scale d_j)) for each direction d_j.
    - `scale`: the length of the added vector.
    - `summary`: `region_summary` rows of `max_kl` per set (with a `set` key); empty
      when no singular values were given.
    """

    sets: list[str]
    max_kl: np.ndarray
    scale: float
    summary: list[dict]


@eqx.filter_jit
def _max_kl(apply_fn, params, directions, x, bounds, batch_size):
    theta, unravel = ravel_pytree(params)

    def log_probs(theta):
        return jax.nn.log_softmax(apply_fn(unravel(theta), x), axis=-1)

    base = log_probs(theta)
    p = jnp.exp(base)

    def per_direction(direction):
        kl = jnp.sum(p * (base - log_probs(theta + direction)), axis=-1)
        return jnp.stack([jnp.max(kl[start:stop]) for start, stop in bounds])

    return jax.lax.map(per_direction, directions, batch_size=batch_size)


def output_sensitivity(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    directions,
    inputs: Mapping[str, jax.Array],
    *,
    scale: float = 1.0,
    singular_values=None,
    taus=DEFAULT_TAUS,
    batch_size: int = 64,
) -> OutputSensitivity:
    """Max over inputs of KL(p_theta || p_{theta + scale d_j}) for every direction d_j.

    With p_theta(. | x) = softmax(apply_fn(theta, x)), the divergence
    KL_j(x) = sum_c p_theta(c | x) [log p_theta(c | x) - log p_{theta + scale d_j}(c | x)]
    is evaluated on every input of each set and its maximum kept. Belrose &
    Scherlis (arXiv 2412.07003) add each right singular vector v_j of the
    training Jacobian to theta_T: bulk directions leave the predictions on training
    and test inputs almost unchanged, yet change them on far out-of-distribution
    inputs (inverted images, noise).

    **Arguments:**

    - `apply_fn`: `(params, x) -> logits` for a batch x.
    - `params`: theta (e.g. theta_T), a pytree.
    - `directions`: `(k, P)` flat directions (rows), in `ravel_pytree(params)` order.
    - `inputs`: name -> `(N, d)` inputs (e.g. from `probe_inputs`).
    - `scale`: the length the directions are multiplied by (unit singular vectors
      with `scale=1` as in the paper).
    - `singular_values`: `(k,)`, if given, the per-region `summary` is filled in.
    - `taus`: tolerances of the summary's regions.
    - `batch_size`: directions evaluated together (bounds memory: batch_size x N
      forward passes at once).

    **Returns:** an `OutputSensitivity`.

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.
    """
    theta = ravel_pytree(params)[0]
    directions = np.asarray(directions)
    if directions.ndim != 2 or directions.shape[1] != theta.shape[0]:
        raise ValueError(
            f"directions must have shape (k, {theta.shape[0]}) for {theta.shape[0]} "
            f"parameters; received {directions.shape}"
        )
    if not inputs:
        raise ValueError("inputs is empty")
    names = list(inputs)
    arrays = [jnp.asarray(inputs[name], theta.dtype) for name in names]
    stops = np.cumsum([a.shape[0] for a in arrays])
    bounds = tuple((int(b - a.shape[0]), int(b)) for a, b in zip(arrays, stops, strict=True))
    max_kl = _max_kl(
        apply_fn,
        params,
        jnp.asarray(scale * directions, theta.dtype),
        jnp.concatenate(arrays),
        bounds,
        int(batch_size),
    )
    max_kl = np.asarray(max_kl, np.float64).T
    summary = []
    if singular_values is not None:
        for name, row in zip(names, max_kl, strict=True):
            summary += [
                {"set": name, **entry} for entry in region_summary(row, singular_values, taus)
            ]
    return OutputSensitivity(sets=names, max_kl=max_kl, scale=float(scale), summary=summary)
