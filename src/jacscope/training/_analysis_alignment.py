"""Alignment of left and right singular vectors of the training Jacobian."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jacscope.training._analysis_spectrum import DEFAULT_TAUS, region_summary


class Alignment(NamedTuple):
    """cos(u_i, v_i) for every singular triplet of J, summarised per region.

    **Fields:**

    - `cosines`: `(n,)` array, `u_i . v_i` (both unit vectors; the SVD's sign
      freedom flips u_i and v_i together, so the sign is meaningful).
    - `summary`: `region_summary` rows (tau, region, count, mean, median, min, max).
    """

    cosines: np.ndarray
    summary: list[dict]


def alignment(U, singular_values, Vt, taus=DEFAULT_TAUS) -> Alignment:
    """Cosine similarity of the i-th left and right singular vectors of J = U diag(s) V^T.

    cos_i = u_i^T v_i. Along a bulk direction J v_i = s_i u_i with s_i ~ 1 and
    u_i ~ v_i: a perturbation of theta_0 along v_i reaches theta_T unchanged
    (Belrose & Scherlis, arXiv 2412.07003).

    **Arguments:**

    - `U`: `(n, n)` left singular vectors as columns.
    - `singular_values`: `(n,)`.
    - `Vt`: `(n, n)` right singular vectors as rows.
    - `taus`: tolerances of the regions for the summary.

    **Returns:** an `Alignment`.

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.
    """
    U = np.asarray(U)
    Vt = np.asarray(Vt)
    s = np.asarray(singular_values)
    k = s.shape[0]
    if (
        U.ndim != 2
        or Vt.ndim != 2
        or U.shape[1] != k
        or Vt.shape[0] != k
        or U.shape[0] != Vt.shape[1]
    ):
        raise ValueError(
            f"expected U (n, {k}) and Vt ({k}, n) for {k} singular values; received U "
            f"{U.shape} and Vt {Vt.shape}"
        )
    cosines = np.einsum("ij,ji->j", U, Vt, dtype=np.float64)
    return Alignment(cosines=cosines, summary=region_summary(cosines, s, taus))
