"""Overlap of the bulk with the nullspace of the network's output Jacobian."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from jacscope.operators import jacobian_operator
from jacscope.training._analysis_spectrum import DEFAULT_TAUS, region_summary


class FunctionSpaceOverlap(NamedTuple):
    """How much of each singular direction of J lies in null(F), F = d f(theta; X) / d theta.

    **Fields:**

    - `shape`: `[m, P]`, the shape of F (m = examples x outputs).
    - `rank`: the numerical rank r of F (singular values above `rtol` s_max(F)).
    - `rtol`: the relative threshold used.
    - `null_fraction`: `(k,)`, ||Pi_null v_i||^2 for each direction v_i, the squared
      cosine between v_i and the nullspace of F.
    - `expected`: (P - r) / P, its mean for a uniformly random direction.
    - `summary`: `region_summary` rows of `null_fraction` (empty without singular
      values).
    """

    shape: list[int]
    rank: int
    rtol: float
    null_fraction: np.ndarray
    expected: float
    summary: list[dict]


def function_space_overlap(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    x: jax.Array,
    Vt,
    *,
    singular_values=None,
    taus=DEFAULT_TAUS,
    rtol: float | None = None,
    max_bytes: int = 2 * 1024**3,
) -> FunctionSpaceOverlap:
    """The fraction of each right singular vector of J lying in the nullspace of F.

    F = d vec(apply_fn(theta, X)) / d theta is the Jacobian of the network's outputs
    on the inputs X with respect to its parameters (formed densely with
    `jacscope.jacobian_operator(...).materialize`). With F = U_F S_F V_F^T and V_r the
    right singular vectors of its r nonzero singular values (a basis of the row
    space), the part of a unit vector v in null(F) is ||Pi_null v||^2 = 1 - ||V_r^T v||^2.
    The decomposition comes from the eigendecomposition of the smaller Gram matrix in
    float64: F^T F = V_F S_F^2 V_F^T, or, when F is wide, F F^T = U_F S_F^2 U_F^T with
    V_r = F^T U_r S_r^{-1} (much cheaper than an SVD of the wide F; the rank threshold
    below is far above the Gram's rounding). Directions in null(F) do not change
    the outputs on X to first order. Belrose & Scherlis (arXiv 2412.07003) find that
    bulk perturbations hardly change in-distribution outputs; this measures how much
    of each direction is invisible to the outputs on X already at initialisation.

    **Arguments:**

    - `apply_fn`: `(params, x) -> outputs`.
    - `params`: the point theta of F (theta_0 for the bulk of the training Jacobian).
    - `x`: the inputs X (e.g. the test set).
    - `Vt`: `(k, P)` directions as orthonormal rows, in `ravel_pytree(params)` order.
    - `singular_values`: `(k,)`; if given, `summary` is filled in per region.
    - `taus`: tolerances of the summary's regions.
    - `rtol`: rank threshold relative to s_max(F); default max(m, P) * machine epsilon
      of F's dtype (as `numpy.linalg.matrix_rank`).
    - `max_bytes`: memory budget for the dense F.

    **Returns:** a `FunctionSpaceOverlap`.

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.
    """
    num_params = ravel_pytree(params)[0].shape[0]
    Vt = np.asarray(Vt)
    if Vt.ndim != 2 or Vt.shape[1] != num_params:
        raise ValueError(
            f"Vt must have shape (k, {num_params}) for {num_params} parameters; received {Vt.shape}"
        )
    F = np.asarray(jacobian_operator(apply_fn, params, x).materialize(max_bytes=max_bytes))
    if rtol is None:
        rtol = max(F.shape) * float(np.finfo(F.dtype).eps)
    F64 = F.astype(np.float64)
    wide = F.shape[0] < F.shape[1]
    eigenvalues, vectors = np.linalg.eigh(F64 @ F64.T if wide else F64.T @ F64)
    s_f = np.sqrt(np.clip(eigenvalues[::-1], 0.0, None))
    vectors = vectors[:, ::-1]
    rank = int(np.sum(s_f > rtol * s_f[0])) if s_f.size and s_f[0] > 0 else 0
    if wide:  # coordinates of v in V_r = F^T U_r S_r^{-1}: S_r^{-1} U_r^T (F v)
        coordinates = ((Vt @ F.T).astype(np.float64) @ vectors[:, :rank]) / s_f[:rank]
    else:
        coordinates = Vt.astype(np.float64) @ vectors[:, :rank]
    null_fraction = np.clip(1.0 - np.sum(np.square(coordinates), axis=1), 0.0, 1.0)
    summary = (
        [] if singular_values is None else region_summary(null_fraction, singular_values, taus)
    )
    return FunctionSpaceOverlap(
        shape=[int(d) for d in F.shape],
        rank=rank,
        rtol=float(rtol),
        null_fraction=null_fraction,
        expected=(num_params - rank) / num_params,
        summary=summary,
    )
