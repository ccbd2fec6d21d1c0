"""Stochastic Lanczos quadrature: per-probe Gauss quadrature rules for a spectral measure."""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from jacscope._validation import check_count
from jacscope.linalg._checks import check_operator, check_square
from jacscope.linalg._krylov import golub_kahan, lanczos
from jacscope.operators import AbstractLinearOperator

_KINDS = ("singular", "eigen")


class Quadrature(NamedTuple):
    """Gauss quadrature rules of the spectral measure, one per probe.

    `nodes` and `weights` are `(num_probes, depth)`; each row of `weights` sums to
    `dimension`, so `weights[l] @ f(nodes[l])` is an unbiased-probe estimate of
    `tr f(M)` (up to the quadrature error) and the mean over rows is the SLQ estimate.
    """

    nodes: jax.Array
    weights: jax.Array
    dimension: int
    num_matvecs: int


def _probe_rule(op, kind, depth, key):
    key_probe, key_restart = jax.random.split(key)
    dtype = jnp.result_type(op.dtype)
    if kind == "eigen":
        dim = op.shape[0]
        probe = jax.random.rademacher(key_probe, (dim,), dtype)
        tri = lanczos(op._mv, probe, depth, key_restart)
        matrix = jnp.diag(tri.diag) + jnp.diag(tri.offdiag, 1) + jnp.diag(tri.offdiag, -1)
        nodes, vectors = jnp.linalg.eigh(matrix)
        return nodes, dim * vectors[0] ** 2
    # Singular values through the smaller Gram matrix C C^T, C = A or A^T.
    gram_op = op if op.shape[0] <= op.shape[1] else op.T
    dim, other = gram_op.shape
    probe = jax.random.rademacher(key_probe, (dim,), dtype)
    bidiag = golub_kahan(gram_op._mv, gram_op._rmv, probe, other, depth, key_restart)
    left, nodes, _ = jnp.linalg.svd(bidiag.matrix)  # C C^T ~ U^T (B B^T) U
    return nodes, dim * left[0] ** 2


@eqx.filter_jit
def _quadrature(op, kind, num_probes, depth, key):
    keys = jax.random.split(key, num_probes)
    nodes, weights = jax.lax.map(lambda k: _probe_rule(op, kind, depth, k), keys)
    per_probe = depth if kind == "eigen" else 2 * depth
    return Quadrature(nodes, weights, min(op.shape), num_probes * per_probe)


def lanczos_quadrature(
    op: AbstractLinearOperator,
    *,
    key: jax.Array,
    kind: str,
    num_probes: int,
    depth: int,
    what: str = "lanczos_quadrature",
) -> Quadrature:
    r"""Per-probe Gauss quadrature rules of the spectrum of `op` (Ubaru, Chen & Saad 2017).

    For each Rademacher probe `z` (`||z||^2 = d`), `depth` Lanczos steps from `z` give
    a tridiagonal `T = Y diag(theta) Y^T`; nodes `theta_j` and weights
    `d (Y_{1j})^2` form the Gauss rule of the measure `z^T delta(x - M) z`, whose
    expectation is the spectral measure `sum_i delta(x - lambda_i)` of mass `d`.

    - `kind="eigen"`: `M = A` (square, assumed symmetric), `d = n`; `depth` products.
    - `kind="singular"`: nodes are singular values of `A`, from Golub-Kahan-Lanczos on
      `C = A` (if m <= n) or `A^T`, which is Lanczos on `C C^T` without squaring;
      `d = min(m, n)`; `2 depth` products.

    Repeated eigenvalues and invariant subspaces are handled by restarting (see
    `_krylov`); the extra blocks carry zero weight. Probes run one after another
    (`jax.lax.map`), which keeps memory at one Krylov basis. `what` names the
    public caller in error messages.

    Citation: Ubaru, Chen & Saad, "Fast estimation of tr(f(A)) via stochastic Lanczos
    quadrature", SIAM Journal on Matrix Analysis and Applications, 2017.
    """
    if kind not in _KINDS:
        raise ValueError(f"{what}: kind must be one of {_KINDS}, received {kind!r}")
    if kind == "eigen":
        check_square(op, f"{what} (kind='eigen')")
    else:
        check_operator(op, what)
    check_count(num_probes, "num_probes", what, minimum=1)
    check_count(depth, "depth", what, minimum=1, maximum=min(op.shape))
    return _quadrature(op, kind, num_probes, depth, key)
