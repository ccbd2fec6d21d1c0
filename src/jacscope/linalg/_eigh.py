"""Top-k eigenpairs of a symmetric operator (a Hessian, a Gram matrix) by Lanczos."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from jacscope._validation import check_count, check_rank
from jacscope.linalg._checks import check_square
from jacscope.linalg._krylov import lanczos
from jacscope.linalg._svd import DecompositionInfo, default_depth
from jacscope.operators import AbstractLinearOperator

_WHICH = ("largest", "smallest", "largest_magnitude")


@eqx.filter_jit
def _eigh_lanczos(op, k, which, depth, key):
    (n, _) = op.shape
    key_start, key_restart = jax.random.split(key)
    v0 = jax.random.normal(key_start, (n,), jnp.result_type(op.dtype))
    tri = lanczos(op._mv, v0, depth, key_restart)
    matrix = jnp.diag(tri.diag) + jnp.diag(tri.offdiag, 1) + jnp.diag(tri.offdiag, -1)
    ritz_values, ritz_vectors = jnp.linalg.eigh(matrix)  # ascending
    if which == "largest":
        chosen = jnp.arange(depth - 1, depth - 1 - k, -1)
    elif which == "smallest":
        chosen = jnp.arange(k)
    else:
        chosen = jnp.argsort(-jnp.abs(ritz_values), stable=True)[:k]
    eigenvalues = ritz_values[chosen]
    eigenvectors = tri.basis.T @ ritz_vectors[:, chosen]
    residuals = jnp.linalg.norm(op.mm(eigenvectors) - eigenvectors * eigenvalues, axis=0)
    return eigenvalues, eigenvectors, DecompositionInfo(residuals, depth + k)


def eigh_topk(
    op: AbstractLinearOperator,
    k: int,
    *,
    key: jax.Array,
    which: str = "largest",
    depth: int | None = None,
) -> tuple[jax.Array, jax.Array, DecompositionInfo]:
    r"""k extreme eigenpairs of a symmetric operator, by Lanczos with full reorthogonalisation.

    Runs `depth` steps of symmetric Lanczos (Lanczos 1950) from a Gaussian start,
    reorthogonalising fully and restarting from a fresh random vector orthogonal to
    the basis on breakdown (so repeated eigenvalues are found with multiplicity),
    then takes Ritz pairs `(l_i, x_i = Q^T y_i)` of the tridiagonal `T = Q A Q^T`.

    Returns `(eigenvalues, eigenvectors, info)`: `eigenvalues` `(k,)`, `eigenvectors`
    `(n, k)` orthonormal columns, and `info.residuals[i] = ||A x_i - l_i x_i||`
    (from `k` explicit products, so rounding is included). For symmetric `A` some
    eigenvalue lies within `residuals[i]` of `l_i` (Bauer-Fike), and Ritz values
    interlace: the j-th largest Ritz value is at most the j-th largest eigenvalue.

    **Arguments:**

    - `op`: a square operator, assumed symmetric (`op.mv == op.rmv`), e.g. a Hessian
      or `A.T @ A`. Symmetry is not checked.
    - `k`: number of eigenpairs, `1 <= k <= n`.
    - `key`: a `jax.random` key; equal keys give identical results.
    - `which`: `"largest"` (algebraically largest, descending), `"smallest"`
      (ascending) or `"largest_magnitude"` (descending `|l|`, from both ends).
    - `depth`: Krylov depth, `k <= depth <= n`; default `min(n, 3 k + 20)`. Costs
      `depth + k` products.

    Works under `jax.jit` (with `k`, `which` and `depth` static).
    """
    check_square(op, "eigh_topk")
    check_rank(k, op.shape, "eigh_topk")
    if which not in _WHICH:
        raise ValueError(f"eigh_topk: which must be one of {_WHICH}, received {which!r}")
    n = op.shape[0]
    depth = default_depth(int(k), n) if depth is None else depth
    check_count(depth, "depth", "eigh_topk", minimum=int(k), maximum=n)
    return _eigh_lanczos(op, int(k), which, depth, key)
