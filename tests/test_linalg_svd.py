"""svd_topk, eigh_topk and spectral_norm against numpy on matrices with prescribed spectra."""

import jax
import numpy as np
import pytest

from jacscope import linalg
from spectra import (
    SPECTRA,
    dense_operator,
    singular_spectrum,
    with_eigenvalues,
    with_singular_values,
)

SHAPE = (120, 80)
K = 10


def _problem(name):
    values = singular_spectrum(name, min(SHAPE))
    matrix = with_singular_values(values, SHAPE, seed=1)
    return matrix, np.linalg.svd(matrix, compute_uv=False)


def _recomputed_residuals(matrix, U, S, Vt):
    U, S, V = np.asarray(U), np.asarray(S), np.asarray(Vt).T
    forward = np.linalg.norm(matrix @ V - U * S, axis=0)
    backward = np.linalg.norm(matrix.T @ U - V * S, axis=0)
    return np.hypot(forward, backward)


@pytest.mark.parametrize(
    "shape, ks",
    [
        ((6, 5), range(1, 6)),
        ((5, 6), range(1, 6)),
        pytest.param((7, 7), range(1, 8), marks=pytest.mark.slow),
        pytest.param((30, 20), (1, 5, 19, 20), marks=pytest.mark.slow),
        pytest.param((20, 30), (1, 20), marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("method", ["lanczos", "randomized"])
def test_every_k_is_exact_once_the_space_is_complete(shape, ks, method):
    """At full Krylov depth (Lanczos' default on these shapes) or with a sketch as wide
    as min(m, n), the projection holds the whole space: every k from 1 to min(m, n)
    gives the singular values to rounding, tall, wide and square alike."""
    limit = min(shape)
    for seed in range(3):
        matrix = np.random.default_rng(seed).standard_normal(shape)
        exact = np.linalg.svd(matrix, compute_uv=False)
        op = dense_operator(matrix)
        for k in ks:
            options = {"oversampling": limit} if method == "randomized" else {}
            U, S, Vt, info = linalg.svd_topk(
                op, k, key=jax.random.key(seed), method=method, **options
            )
            np.testing.assert_allclose(np.asarray(S), exact[:k], rtol=1e-10, err_msg=f"k={k}")
            recomputed = _recomputed_residuals(matrix, U, S, Vt)
            np.testing.assert_allclose(np.asarray(info.residuals), recomputed, atol=1e-10)
            assert np.all(recomputed <= 1e-10 * exact[0])


@pytest.mark.parametrize("name", SPECTRA)
def test_lanczos_singular_values_match_numpy(name, key):
    matrix, exact = _problem(name)
    U, S, Vt, info = linalg.svd_topk(dense_operator(matrix), K, key=key, method="lanczos")
    S, top = np.asarray(S), exact[:K]
    # 1e-6 relative to each value; exact zeros (low rank) to 1e-12 of the largest.
    assert np.all(np.abs(S - top) <= 1e-6 * top + 1e-12 * top[0]), (S, top)
    np.testing.assert_allclose(np.asarray(U).T @ np.asarray(U), np.eye(K), atol=1e-10)
    np.testing.assert_allclose(np.asarray(Vt) @ np.asarray(Vt).T, np.eye(K), atol=1e-10)
    recomputed = _recomputed_residuals(matrix, U, S, Vt)
    np.testing.assert_allclose(np.asarray(info.residuals), recomputed, rtol=1e-6, atol=1e-13)
    assert info.num_matvecs == 2 * min(min(SHAPE), 3 * K + 20) + K


@pytest.mark.parametrize("depth", [K + 2, pytest.param(20, marks=pytest.mark.slow), 50])
def test_recurrence_residuals_equal_explicit_ones(depth, key):
    # depth K + 2 leaves the Ritz values unconverged: residuals far from zero
    matrix, _ = _problem("power_law")
    op = dense_operator(matrix)
    U, S, Vt, info = linalg.svd_topk(
        op, K, key=key, method="lanczos", depth=depth, residuals="recurrence"
    )
    recomputed = _recomputed_residuals(matrix, U, S, Vt)
    if depth == K + 2:
        assert recomputed.max() > 1e-6 * float(S[0])
    np.testing.assert_allclose(np.asarray(info.residuals), recomputed, rtol=1e-6, atol=1e-12)
    assert info.num_matvecs == 2 * depth
    _, S_explicit, _, _ = linalg.svd_topk(op, K, key=key, method="lanczos", depth=depth)
    np.testing.assert_array_equal(np.asarray(S), np.asarray(S_explicit))


@pytest.mark.parametrize("tol", [1e-3, pytest.param(1e-8, marks=pytest.mark.slow)])
def test_lanczos_stops_once_residuals_reach_tol(tol, key):
    matrix, exact = _problem("power_law")
    op = dense_operator(matrix)
    U, S, Vt, info = linalg.svd_topk(
        op, K, key=key, method="lanczos", depth=80, residuals="recurrence", tol=tol
    )
    steps = int(info.num_matvecs) // 2
    assert K <= steps < 80  # it stopped early ...
    recomputed = _recomputed_residuals(matrix, U, S, Vt)
    np.testing.assert_allclose(np.asarray(info.residuals), recomputed, rtol=1e-6, atol=1e-12)
    assert np.all(recomputed <= tol * np.asarray(S))  # ... once every residual was small
    # ... and not later: one step fewer leaves some residual above tol * s
    _, S_less, _, info_less = linalg.svd_topk(
        op, K, key=key, method="lanczos", depth=steps - 1, residuals="recurrence"
    )
    assert np.any(np.asarray(info_less.residuals) > tol * np.asarray(S_less))
    # the singular values are within the residual bound of the exact ones
    assert np.all(np.abs(np.asarray(S) - exact[:K]) <= recomputed / np.sqrt(2) + 1e-12)


@pytest.mark.parametrize("name", SPECTRA)
def test_randomized_is_as_accurate_as_its_residuals_claim(name, key):
    """|S_i - sigma_i| <= residual_i / sqrt(2), and S_i <= sigma_i.

    Why it holds: `S` are the singular values of `Q^T A` (Q orthonormal), so
    S_i <= sigma_i by interlacing; and A^T u_i = S_i v_i exactly, so [u_i; v_i]/sqrt(2)
    has eigen-residual r_i/sqrt(2) for [[0, A], [A^T, 0]], whose nearest eigenvalue
    (a singular value) is then within r_i/sqrt(2) of S_i. That it is the i-th one
    needs the sketch not to miss a leading direction, which happens with
    probability zero for a Gaussian test matrix.
    """
    matrix, exact = _problem(name)
    U, S, Vt, info = linalg.svd_topk(dense_operator(matrix), K, key=key)
    S, top, residuals = np.asarray(S), exact[:K], np.asarray(info.residuals)
    slack = 1e-12 * top[0]
    assert np.all(S <= top + slack)
    assert np.all(np.abs(S - top) <= residuals / np.sqrt(2) + slack), (S - top, residuals)
    recomputed = _recomputed_residuals(matrix, U, S, Vt)
    np.testing.assert_allclose(residuals, recomputed, rtol=1e-6, atol=1e-13)
    # A^T u_i = S_i v_i to rounding.
    transposed = np.linalg.norm(matrix.T @ np.asarray(U) - np.asarray(Vt).T * S, axis=0)
    assert np.all(transposed <= 1e-12 * top[0])
    assert info.num_matvecs == (K + 10) * 6 + K
    if name == "low_rank":  # rank 8 < k + oversampling: the sketch holds the whole range
        np.testing.assert_allclose(S[:8], top[:8], rtol=1e-12)
        assert np.all(residuals <= 1e-12 * top[0])


@pytest.mark.parametrize("method", ["randomized", "lanczos"])
def test_svd_is_reproducible_and_jit_compatible(method, key):
    op = dense_operator(_problem("power_law")[0])
    eager = linalg.svd_topk(op, K, key=key, method=method)
    again = linalg.svd_topk(op, K, key=key, method=method)
    jitted = jax.jit(lambda k: linalg.svd_topk(op, K, key=k, method=method))(key)
    leaves = zip(
        jax.tree.leaves(eager), jax.tree.leaves(again), jax.tree.leaves(jitted), strict=True
    )
    for a, b, c in leaves:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-12, atol=1e-14)
    other = linalg.svd_topk(op, K, key=jax.random.key(1), method=method)
    assert not np.array_equal(np.asarray(other[0]), np.asarray(eager[0]))


def test_chunked_products_give_the_same_decomposition(key):
    op = dense_operator(_problem("step")[0])
    whole = linalg.svd_topk(op, K, key=key)
    chunked = linalg.svd_topk(op, K, key=key, chunk_size=7)
    np.testing.assert_allclose(np.asarray(whole[1]), np.asarray(chunked[1]), rtol=1e-12)


def test_svd_refuses_bad_input(key):
    op = dense_operator(_problem("step")[0])
    with pytest.raises(ValueError, match=r"k=81 exceeds min\(shape\)=80 .* \(120, 80\)"):
        linalg.svd_topk(op, 81, key=key)
    with pytest.raises(ValueError, match="positive integer"):
        linalg.svd_topk(op, 0, key=key, method="lanczos")
    with pytest.raises(ValueError, match="depth=5 .*|depth must be an integer >= 10"):
        linalg.svd_topk(op, 10, key=key, method="lanczos", depth=5)
    with pytest.raises(ValueError, match="depth=81 exceeds its maximum 80"):
        linalg.svd_topk(op, 10, key=key, method="lanczos", depth=81)
    with pytest.raises(ValueError, match="method must be"):
        linalg.svd_topk(op, 3, key=key, method="arnoldi")
    with pytest.raises(ValueError, match="residuals must be"):
        linalg.svd_topk(op, 3, key=key, method="lanczos", residuals="implicit")
    with pytest.raises(ValueError, match="needs method='lanczos'"):
        linalg.svd_topk(op, 3, key=key, residuals="recurrence")
    with pytest.raises(ValueError, match="tol applies to method='lanczos'"):
        linalg.svd_topk(op, 3, key=key, tol=1e-3)
    with pytest.raises(ValueError, match="tol must be a positive number"):
        linalg.svd_topk(op, 3, key=key, method="lanczos", tol=-1.0)
    with pytest.raises(TypeError, match="received ndarray"):
        linalg.svd_topk(np.eye(3), 1, key=key)


# ---- symmetric operators: eigh_topk and the spectral norm ---------------------------


def _symmetric(name, n=80):
    signs = np.where(np.arange(n) % 3 == 2, -1.0, 1.0)  # indefinite, like a Hessian
    matrix = with_eigenvalues(signs * singular_spectrum(name, n), seed=2)
    return matrix, np.linalg.eigvalsh(matrix)


@pytest.mark.parametrize("name", SPECTRA)
def test_eigh_largest_matches_numpy(name, key):
    matrix, exact = _symmetric(name)
    values, vectors, info = linalg.eigh_topk(dense_operator(matrix), 8, key=key)
    top = exact[::-1][:8]
    scale = np.abs(exact).max()
    assert np.all(np.abs(np.asarray(values) - top) <= 1e-6 * np.abs(top) + 1e-12 * scale)
    recomputed = np.linalg.norm(matrix @ vectors - vectors * values, axis=0)
    np.testing.assert_allclose(np.asarray(info.residuals), recomputed, rtol=1e-6, atol=1e-13)


@pytest.mark.parametrize("which", ["smallest", "largest_magnitude"])
def test_eigh_other_ends(which, key):
    matrix, exact = _symmetric("power_law")
    values, vectors, info = linalg.eigh_topk(dense_operator(matrix), 5, key=key, which=which)
    if which == "smallest":
        expected = exact[:5]
    else:
        expected = exact[np.argsort(-np.abs(exact), stable=True)][:5]
    np.testing.assert_allclose(np.asarray(values), expected, rtol=1e-6)
    assert np.all(np.asarray(info.residuals) <= 1e-6 * np.abs(exact).max())


def test_eigh_under_jit_and_bad_input(key):
    matrix, _ = _symmetric("step")
    op = dense_operator(matrix)
    eager = linalg.eigh_topk(op, 8, key=key)
    jitted = jax.jit(lambda k: linalg.eigh_topk(op, 8, key=k))(key)
    np.testing.assert_allclose(np.asarray(eager[0]), np.asarray(jitted[0]), rtol=1e-12)
    rectangular = dense_operator(np.ones(SHAPE))
    with pytest.raises(ValueError, match=r"square operator of shape \(n, n\), received shape"):
        linalg.eigh_topk(rectangular, 2, key=key)
    with pytest.raises(ValueError, match="k=81 exceeds"):
        linalg.eigh_topk(op, 81, key=key)
    with pytest.raises(ValueError, match="which must be"):
        linalg.eigh_topk(op, 2, key=key, which="middle")


def test_spectral_norm_is_certified(key):
    matrix, exact = _problem("clustered")  # top cluster 10 (1 +- 1e-3): hard case
    norm = linalg.spectral_norm(dense_operator(matrix), key=key)
    assert float(norm.value) <= exact[0] * (1 + 1e-12)
    assert exact[0] - float(norm.value) <= float(norm.residual) / np.sqrt(2) + 1e-12
    assert abs(float(norm.value) - exact[0]) <= 1e-6 * exact[0]
