"""Linearity of training's response to a perturbation of the initialisation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jacscope.training._run import TrainingRun

DEFAULT_EPS = tuple(float(e) for e in np.logspace(-3, 3, 30))
"""Perturbation sizes of the paper's experiment: 30 values from 1e-3 to 1e3."""


class PerturbationResponse(NamedTuple):
    """How theta_T moves when theta_0 moves by eps v_i, for a few directions i.

    Arrays have one row per direction and one column per size eps.

    **Fields:**

    - `indices`: the singular directions i probed.
    - `labels`: a name for each (e.g. `"bulk"`, `"top"`).
    - `singular_values`: s_i for each.
    - `eps`: `(m,)` perturbation sizes.
    - `projection`: `(k, m)`, u_i . (theta_T(theta_0 + eps v_i) - theta_T(theta_0)); the
      Jacobian predicts s_i eps.
    - `remainder`: `(k, m)`, the norm of the rest of that change, orthogonal to u_i
      (the Jacobian predicts 0).
    - `test_loss`: `(k, m)`, `eval_fn` of the perturbed run's theta_T.
    - `base_test_loss`: `eval_fn` of the unperturbed theta_T.
    - `linear_range`: per direction, the largest eps up to which every smaller size
      has |projection - s_i eps| <= 0.1 s_i eps (`None` if even the smallest fails).
    """

    indices: list[int]
    labels: list[str]
    singular_values: list[float]
    eps: np.ndarray
    projection: np.ndarray
    remainder: np.ndarray
    test_loss: np.ndarray
    base_test_loss: float
    linear_range: list[float | None]


@eqx.filter_jit
def _responses(run, theta0, unravel, eval_fn, V, U, eps, batch_size):
    def retrain(v, u, e):
        theta_T = ravel_pytree(run.train(unravel(theta0 + e * v))[0])[0]
        return theta_T, eval_fn(unravel(theta_T))

    # Row 0 is the unperturbed run, computed by the same batched program as the rest,
    # so that the differences below carry no rounding from a different code path.
    V = jnp.concatenate([jnp.zeros_like(V[:1]), V])
    U = jnp.concatenate([U[:1], U])
    eps = jnp.concatenate([jnp.zeros_like(eps[:1]), eps])
    finals, losses = jax.lax.map(lambda a: retrain(*a), (V, U, eps), batch_size=batch_size)
    delta = finals[1:] - finals[0]
    projection = jnp.sum(delta * U[1:], axis=1)
    remainder = jnp.linalg.norm(delta - projection[:, None] * U[1:], axis=1)
    return projection, remainder, losses[1:], losses[0]


def _linear_range(eps: np.ndarray, projection: np.ndarray, s: float) -> float | None:
    predicted = s * eps
    ok = np.abs(projection - predicted) <= 0.1 * np.abs(predicted)
    if not ok[0]:
        return None
    return float(eps[np.argmin(ok) - 1]) if not ok.all() else float(eps[-1])


def perturbation_response(
    run: TrainingRun,
    U,
    singular_values,
    Vt,
    indices: Sequence[int],
    *,
    eval_fn: Callable[[Any], jax.Array],
    eps: Sequence[float] = DEFAULT_EPS,
    labels: Sequence[str] | None = None,
    batch_size: int | None = None,
) -> PerturbationResponse:
    """Retrain from theta_0 + eps v_i and compare the change in theta_T with s_i eps u_i.

    To first order theta_T(theta_0 + eps v_i) - theta_T(theta_0) = eps J v_i =
    eps s_i u_i. The projection of the actual change on u_i, the norm of its
    remainder and the test loss tell how far this linear picture holds: along bulk
    directions it holds over many orders of magnitude of eps, along the top
    (chaotic) direction it breaks down early (Belrose & Scherlis, arXiv 2412.07003).

    All len(indices) x len(eps) retrainings run as one batched program
    (`run.train` under `jax.lax.map`, vectorised `batch_size` at a time).

    **Arguments:**

    - `run`: the `TrainingRun` whose Jacobian was decomposed.
    - `U`, `singular_values`, `Vt`: its SVD, J = U diag(s) Vt, in
      `ravel_pytree(run.params0)` order.
    - `indices`: the singular directions i to perturb along.
    - `eval_fn`: `params -> scalar` evaluated at each perturbed theta_T (e.g. the
      test loss).
    - `eps`: perturbation sizes (default: `logspace(-3, 3, 30)`).
    - `labels`: names of the directions (default: `"i=<index>"`).
    - `batch_size`: retrainings vectorised together (default: all at once).

    **Returns:** a `PerturbationResponse`. Sizes where training diverges give NaN.

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.
    """
    theta0, unravel = ravel_pytree(run.params0)
    num_params = theta0.shape[0]
    s = np.asarray(singular_values)
    U = np.asarray(U)
    Vt = np.asarray(Vt)
    if U.shape[0] != num_params or Vt.shape[1] != num_params:
        raise ValueError(
            f"U {U.shape} and Vt {Vt.shape} do not match the run's {num_params} parameters"
        )
    indices = [int(i) for i in indices]
    if not indices or min(indices) < 0 or max(indices) >= s.shape[0]:
        raise ValueError(f"indices must lie in [0, {s.shape[0]}), received {indices}")
    labels = [f"i={i}" for i in indices] if labels is None else [str(x) for x in labels]
    if len(labels) != len(indices):
        raise ValueError(f"{len(labels)} labels for {len(indices)} indices")
    eps_arr = np.asarray(eps, dtype=np.float64)
    if eps_arr.ndim != 1 or eps_arr.size == 0:
        raise ValueError(f"eps must be a non-empty sequence, received shape {eps_arr.shape}")

    dtype = theta0.dtype
    num_eps = eps_arr.size
    V = jnp.asarray(np.repeat(Vt[indices], num_eps, axis=0), dtype)
    Us = jnp.asarray(np.repeat(U[:, indices].T, num_eps, axis=0), dtype)
    E = jnp.asarray(np.tile(eps_arr, len(indices)), dtype)
    projection, remainder, losses, base_loss = _responses(
        run, theta0, unravel, eval_fn, V, Us, E, batch_size
    )
    shape = (len(indices), num_eps)
    projection = np.asarray(projection, np.float64).reshape(shape)
    return PerturbationResponse(
        indices=indices,
        labels=labels,
        singular_values=[float(s[i]) for i in indices],
        eps=eps_arr,
        projection=projection,
        remainder=np.asarray(remainder, np.float64).reshape(shape),
        test_loss=np.asarray(losses, np.float64).reshape(shape),
        base_test_loss=float(base_loss),
        linear_range=[
            _linear_range(eps_arr, row, float(s[i]))
            for row, i in zip(projection, indices, strict=True)
        ],
    )
