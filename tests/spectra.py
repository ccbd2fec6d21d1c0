"""Matrices with prescribed spectra, wrapped as jacscope operators (float64 tests).

`dense_operator` is `jacscope.operators.matrix_operator`, which keeps the matrix as an
array leaf of the operator, so operators of the same shape share one compilation.
"""

import numpy as np

from jacscope.operators import matrix_operator as dense_operator  # noqa: F401


def _orthonormal(rng, rows, cols):
    q, r = np.linalg.qr(rng.standard_normal((rows, cols)))
    return q * np.sign(np.diag(r))


def singular_spectrum(name: str, size: int) -> np.ndarray:
    """Descending non-negative singular values of a named shape, `size` of them.

    - `power_law`: `i^-1.5` (decaying, distinct);
    - `step`: 10 values at 5, the rest at 1 (two plateaus, repeated values);
    - `identity_plus_low_rank`: 1 + (8, 6, 4, 3, 2) then ones;
    - `low_rank`: 8 values `10, 9, ..., 3`, the rest exactly zero;
    - `clustered`: clusters of 8 around 10, 5, 2 and 1 with relative spread 1e-3.
    """
    i = np.arange(1, size + 1, dtype=np.float64)
    if name == "power_law":
        return i**-1.5
    if name == "step":
        return np.where(i <= 10, 5.0, 1.0)
    if name == "identity_plus_low_rank":
        s = np.ones(size)
        s[:5] += np.array([8.0, 6.0, 4.0, 3.0, 2.0])
        return s
    if name == "low_rank":
        s = np.zeros(size)
        s[:8] = np.arange(10.0, 2.0, -1.0)
        return s
    if name == "clustered":
        centres = np.repeat([10.0, 5.0, 2.0, 1.0], 8)
        spread = 1e-3 * np.tile(np.linspace(1.0, -1.0, 8), 4)
        rest = np.linspace(0.5, 0.01, size - 32)
        return np.sort(np.concatenate([centres * (1 + spread), rest]))[::-1]
    raise ValueError(f"unknown spectrum {name!r}")


SPECTRA = ("power_law", "step", "identity_plus_low_rank", "low_rank", "clustered")


def with_singular_values(values, shape, seed=0) -> np.ndarray:
    """`U diag(values) V^T` of `shape` with Haar-random orthonormal `U`, `V`."""
    rng = np.random.default_rng(seed)
    m, n = shape
    r = len(values)
    return (_orthonormal(rng, m, r) * values) @ _orthonormal(rng, n, r).T


def with_eigenvalues(values, seed=0) -> np.ndarray:
    """Symmetric `Q diag(values) Q^T` with Haar-random orthogonal `Q`."""
    rng = np.random.default_rng(seed)
    q = _orthonormal(rng, len(values), len(values))
    return (q * values) @ q.T
