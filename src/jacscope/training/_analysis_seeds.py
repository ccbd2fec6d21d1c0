"""Overlap of the bulk subspaces of training Jacobians from different initialisations."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jacscope.training._analysis_spectrum import DEFAULT_TAUS, bulk_order, region_masks


def _rows(name: str, A) -> np.ndarray:
    A = np.asarray(A)
    if A.ndim != 2:
        raise ValueError(f"{name} must be a (k, n) matrix of orthonormal rows; shape {A.shape}")
    return A


class SubspaceOverlap(NamedTuple):
    """Principal angles between span(A^T) and span(B^T).

    **Fields:**

    - `cosines`: cosines of the min(k1, k2) principal angles, descending.
    - `mean_sq_cos`: their mean square, ||A B^T||_F^2 / min(k1, k2).
    - `expected`: E[mean_sq_cos] for a uniformly random subspace of the same
      dimension, max(k1, k2) / n.
    """

    cosines: np.ndarray
    mean_sq_cos: float
    expected: float


def subspace_overlap(A, B) -> SubspaceOverlap:
    """Principal angles between the row spaces of A `(k1, n)` and B `(k2, n)`.

    The cosines of the principal angles are the singular values of A B^T when the
    rows of A and of B are orthonormal. For a uniformly random k1-dimensional
    subspace, E ||A B^T||_F^2 = k1 k2 / n, so the expected mean squared cosine over
    the min(k1, k2) angles is max(k1, k2) / n.

    **Returns:** a `SubspaceOverlap`.
    """
    A, B = _rows("A", A), _rows("B", B)
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"A {A.shape} and B {B.shape} live in spaces of different dimension")
    if min(A.shape[0], B.shape[0]) == 0:
        raise ValueError(f"A {A.shape} and B {B.shape}: both subspaces need a dimension >= 1")
    cosines = np.clip(np.linalg.svd(A @ B.T, compute_uv=False), 0.0, 1.0)
    k1, k2, n = A.shape[0], B.shape[0], A.shape[1]
    return SubspaceOverlap(
        cosines=cosines,
        mean_sq_cos=float(np.sum(cosines.astype(np.float64) ** 2) / min(k1, k2)),
        expected=max(k1, k2) / n,
    )


class SeedOverlap(NamedTuple):
    """Overlap of the most bulk-like subspaces of two training Jacobians.

    **Fields:**

    - `ks`: `(n,)` dimensions 1..n.
    - `mean_sq_cos`: `(n,)` mean squared cosine of the principal angles between the
      k directions closest to s = 1 of each run.
    - `expected`: `(n,)` its expectation for random subspaces, k / n.
    - `bulk`: one row per tau: the two bulk dimensions (`dims`), their
      `mean_sq_cos` and its random expectation `expected` (`None` if a bulk is empty).
    - `principal_tau`: the tolerance of `principal_cosines`.
    - `principal_cosines`: the cosines of the principal angles between the two bulks at
      `principal_tau`, descending (empty if a bulk is empty).
    """

    ks: np.ndarray
    mean_sq_cos: np.ndarray
    expected: np.ndarray
    bulk: list[dict]
    principal_tau: float
    principal_cosines: np.ndarray


def seed_overlap(
    singular_values_a, Vt_a, singular_values_b, Vt_b, *, taus=DEFAULT_TAUS, principal_tau=1e-2
) -> SeedOverlap:
    """How much of one initialisation's bulk is the other's, as a function of k.

    Sort each run's right singular vectors by |s_i - 1| and let A_k, B_k be the first
    k of each. The mean squared cosine of the principal angles between them,
    ||A_k B_k^T||_F^2 / k, is compared with k / n, its value for random subspaces.
    Belrose & Scherlis (arXiv 2412.07003) find the bulks of different
    seeds overlap far more than chance. All n values of k come from one product
    M = A_n B_n^T and a two-dimensional prefix sum of M^2.

    **Arguments:**

    - `singular_values_a`, `Vt_a`: spectrum and right singular vectors (rows) of the
      first run's Jacobian; `singular_values_b`, `Vt_b` of the second's.
    - `taus`: tolerances of the bulks compared in `bulk`.
    - `principal_tau`: the tolerance whose principal angles are returned.

    **Returns:** a `SeedOverlap`.

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.
    """
    s_a = np.asarray(singular_values_a, np.float64)
    s_b = np.asarray(singular_values_b, np.float64)
    Vt_a, Vt_b = _rows("Vt_a", Vt_a), _rows("Vt_b", Vt_b)
    n = s_a.size
    if Vt_a.shape != (n, n) or Vt_b.shape != (n, n) or s_b.shape != (n,):
        raise ValueError(
            f"expected two spectra of length n and (n, n) right singular vectors; received "
            f"{s_a.shape}, {Vt_a.shape}, {s_b.shape}, {Vt_b.shape}"
        )
    M = Vt_a[bulk_order(s_a)] @ Vt_b[bulk_order(s_b)].T
    prefix = np.cumsum(np.cumsum(np.square(M, dtype=np.float64), axis=0), axis=1)
    ks = np.arange(1, n + 1)
    rows = []
    for tau in taus:
        k_a = int(region_masks(s_a, tau)["bulk"].sum())
        k_b = int(region_masks(s_b, tau)["bulk"].sum())
        empty = min(k_a, k_b) == 0
        rows.append(
            {
                "tau": float(tau),
                "dims": [k_a, k_b],
                "mean_sq_cos": None if empty else float(prefix[k_a - 1, k_b - 1] / min(k_a, k_b)),
                "expected": None if empty else max(k_a, k_b) / n,
            }
        )
    bulk_a = Vt_a[region_masks(s_a, principal_tau)["bulk"]]
    bulk_b = Vt_b[region_masks(s_b, principal_tau)["bulk"]]
    principal = (
        subspace_overlap(bulk_a, bulk_b).cosines
        if min(bulk_a.shape[0], bulk_b.shape[0])
        else np.zeros(0)
    )
    return SeedOverlap(
        ks=ks,
        mean_sq_cos=np.diagonal(prefix) / ks,
        expected=ks / n,
        bulk=rows,
        principal_tau=float(principal_tau),
        principal_cosines=principal,
    )
