"""jacscope.descent: one library of properties applied to every aggregator, the
dual-cone solver against a brute-force reference and finite differences, and agreement
with TorchJD where it is installed."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jacscope import descent

# about 45 s of compilation: `make test-slow` runs the descent checks, keeping `make test`
# under 10 minutes on 2 cores
pytestmark = pytest.mark.slow

KEY = jax.random.key(7)


def _matrix(m, n, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((m, n)))


# name -> (aggregator of J, properties the paper claims)
NC, PERM, LIN, NONZERO = "non_conflicting", "permutation", "linear", "non_zero"
AGGREGATORS = {
    "upgrad": (descent.upgrad, {NC, PERM, LIN, NONZERO}),
    "dualproj": (descent.dualproj, {NC, PERM, LIN, NONZERO}),
    "mgda": (descent.mgda, {NC, PERM, LIN, NONZERO}),
    "mean": (descent.mean, {PERM, LIN}),
    "sum_rows": (descent.sum_rows, {PERM, LIN}),
    "constant": (lambda J: descent.constant(J, jnp.arange(1.0, J.shape[0] + 1)), {LIN}),
    "random": (lambda J: descent.random(J, KEY), {LIN}),
    "pcgrad": (descent.pcgrad, {LIN, NONZERO}),
    "pcgrad_key": (lambda J: descent.pcgrad(J, KEY), {LIN}),
    "imtl_g": (descent.imtl_g, {PERM, LIN}),
    "aligned_mtl": (descent.aligned_mtl, {PERM, LIN}),
    "krum": (lambda J: descent.krum(J, 1, 2), {LIN}),
    "trimmed_mean": (lambda J: descent.trimmed_mean(J, 1), {PERM, LIN}),
    "graddrop": (lambda J: descent.graddrop(J, KEY), {LIN}),
    "config": (descent.config, {PERM, LIN}),
    "cagrad": (descent.cagrad, {PERM, LIN}),
    "nash_mtl": (lambda J: descent.nash_mtl(J, max_norm=0), {PERM, LIN, NONZERO}),
    "nash_mtl_clipped": (descent.nash_mtl, {PERM}),
    "fairgrad": (lambda J: descent.fairgrad(J, 2.0), {PERM, LIN, NONZERO}),
    "gradvac": (
        lambda J: descent.gradvac(J, descent.GradVacState(jnp.full((J.shape[0],) * 2, 0.3)))[0],
        {LIN},
    ),
}


def _having(prop):
    return [name for name, (_, props) in AGGREGATORS.items() if prop in props]


@pytest.mark.parametrize("name", list(AGGREGATORS))
@pytest.mark.parametrize(
    "scale", [0.0, 1.0, 1e15, *(pytest.param(s, marks=pytest.mark.slow) for s in (1e-8, 1e8))]
)
def test_finite_and_shaped(name, scale):
    J = scale * _matrix(5, 7)
    out = AGGREGATORS[name][0](J)
    assert out.shape == (7,) and bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.parametrize("name", _having(NC))
@pytest.mark.parametrize("shape", [(5, 7), pytest.param((8, 3), marks=pytest.mark.slow)])
def test_non_conflicting(name, shape):
    J = _matrix(*shape, seed=1)
    d = AGGREGATORS[name][0](J)
    # with m > n the Gramian is singular and the regularisation G / tr(G) + eps I
    # (eps = 1e-4) leaves conflicts of order eps ||J||_F^2
    tol = 1e-10 if shape[0] <= shape[1] else 1e-3
    assert float(jnp.min(J @ d)) >= -tol * float(jnp.linalg.norm(J)) ** 2


@pytest.mark.parametrize("name", _having(PERM))
def test_permutation_invariant(name):
    J = _matrix(5, 7, seed=2)
    perm = np.array([3, 0, 4, 1, 2])
    f = AGGREGATORS[name][0]
    np.testing.assert_allclose(f(J[perm]), f(J), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", _having(LIN))
@pytest.mark.parametrize("c", [3.0, pytest.param(0.5, marks=pytest.mark.slow)])
def test_linear_under_scaling(name, c):
    J = _matrix(5, 7, seed=3)
    f = AGGREGATORS[name][0]
    np.testing.assert_allclose(f(c * J), c * f(J), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", _having(NONZERO))
def test_non_zero_unless_stationary(name):
    J = _matrix(4, 9, seed=4)  # independent rows: 0 is not in their convex hull
    assert float(jnp.linalg.norm(AGGREGATORS[name][0](J))) > 1e-3
    stationary = jnp.stack([J[0], -J[0]])
    assert float(jnp.linalg.norm(AGGREGATORS[name][0](stationary))) < 1e-6


def test_mgda_kkt():
    J = _matrix(6, 4, seed=5)
    G = J @ J.T
    w = descent.mgda_weights(G)
    Greg = descent.regularize_gramian(G, 0.0, 1e-8)
    g = Greg @ w
    value = w @ g
    assert float(jnp.min(w)) >= 0 and abs(float(jnp.sum(w)) - 1) < 1e-12
    assert float(jnp.min(g - value)) >= -1e-10
    np.testing.assert_allclose(np.asarray(g)[np.asarray(w) > 1e-9], float(value), rtol=1e-8)


def test_pcgrad_equals_upgrad_sum_on_two_rows():
    for seed in range(5):
        J = _matrix(2, 6, seed=seed)
        expected = descent.upgrad(J, jnp.ones(2), norm_eps=0.0, reg_eps=0.0)
        np.testing.assert_allclose(descent.pcgrad(J), expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(descent.pcgrad(J, KEY), expected, rtol=1e-9, atol=1e-12)


def test_upgrad_preference_recovered_without_conflict():
    J = jnp.abs(_matrix(4, 6, seed=6))  # nonnegative rows: no conflict
    pref = jnp.array([0.1, 0.2, 0.3, 0.4])
    w = descent.upgrad_weights(J @ J.T, pref, reg_eps=0.0)
    np.testing.assert_allclose(w, pref, rtol=1e-12)


# -- the dual-cone solver ---------------------------------------------------------------


def _brute_force(G, u):
    """Enumerate every free set; keep the one satisfying the KKT conditions."""
    G, u = np.asarray(G), np.asarray(u)
    m = len(u)
    for free in itertools.product([False, True], repeat=m):
        F = np.array(free)
        v = np.zeros(m)
        if F.any():
            v[F] = np.linalg.solve(G[np.ix_(F, F)], -(G @ u)[F])
        y = G @ (v + u)
        if (v >= -1e-12).all() and (y[~F] >= -1e-12).all():
            return v + u
    raise AssertionError("no KKT point")


@pytest.mark.parametrize(
    "m,n", [(6, 6), (6, 3), *(pytest.param(*s, marks=pytest.mark.slow) for s in [(2, 3), (4, 2)])]
)
def test_solver_exact_against_enumeration(m, n):
    J = _matrix(m, n, seed=m + n)
    G = descent.regularize_gramian(J @ J.T)
    U = jnp.concatenate([jnp.eye(m), _matrix(2, m, seed=9)])
    result = descent.project_to_dual_cone(G, U, method=descent.ActiveSet())
    expected = np.stack([_brute_force(G, u) for u in U])
    np.testing.assert_allclose(result.weights, expected, rtol=1e-10, atol=1e-12)
    assert float(jnp.max(result.kkt_residual)) < 1e-12
    iterative = descent.project_to_dual_cone(G, U, method=descent.ProjectedGradient())
    np.testing.assert_allclose(iterative.weights, expected, rtol=1e-7, atol=1e-9)
    assert float(jnp.max(iterative.kkt_residual)) <= 1e-12
    polished = descent.ProjectedGradient(max_iterations=20, polish=True)
    result = descent.project_to_dual_cone(G, U, method=polished)
    np.testing.assert_allclose(result.weights, expected, rtol=1e-10, atol=1e-12)


def test_solver_float32_and_single_vector():
    J = _matrix(8, 20, seed=11).astype(jnp.float32)
    G = descent.regularize_gramian(J @ J.T)
    ref = descent.project_to_dual_cone(G.astype(jnp.float64), jnp.eye(8))
    for method in (descent.ActiveSet(), descent.ProjectedGradient(tol=1e-6)):
        result = descent.project_to_dual_cone(G, jnp.eye(8, dtype=jnp.float32), method=method)
        assert result.weights.dtype == jnp.float32
        np.testing.assert_allclose(result.weights, ref.weights, rtol=1e-3, atol=1e-4)
    one = descent.project_to_dual_cone(G, jnp.ones(8, jnp.float32))
    assert one.weights.shape == (8,) and one.kkt_residual.shape == ()


@pytest.mark.parametrize("method", [descent.ActiveSet(), descent.ProjectedGradient()])
def test_solver_gradient_against_finite_differences(method):
    J = _matrix(5, 8, seed=12)
    G0 = descent.regularize_gramian(J @ J.T)
    U0 = jnp.eye(5) + 0.1 * _matrix(5, 5, seed=13)
    c = _matrix(5, 5, seed=14)
    dG = _matrix(5, 5, seed=15)
    dG = dG + dG.T
    dU = _matrix(5, 5, seed=16)

    def loss(G, U):
        return jnp.sum(c * descent.project_to_dual_cone(G, U, method=method).weights)

    gG, gU = jax.grad(loss, argnums=(0, 1))(G0, U0)
    h = 1e-6
    fd = (loss(G0 + h * dG, U0 + h * dU) - loss(G0 - h * dG, U0 - h * dU)) / (2 * h)
    np.testing.assert_allclose(jnp.sum(gG * dG) + jnp.sum(gU * dU), fd, rtol=1e-6)


def test_jit_and_vmap():
    Js = jnp.stack([_matrix(4, 6, seed=s) for s in range(3)])
    batched = jax.jit(jax.vmap(descent.upgrad))(Js)
    for i in range(3):
        np.testing.assert_allclose(batched[i], descent.upgrad(Js[i]), rtol=1e-10)
    grads = jax.grad(lambda J: jnp.sum(descent.upgrad(J) ** 2))(Js[0])
    assert bool(jnp.all(jnp.isfinite(grads)))


def test_errors_are_one_line():
    with pytest.raises(ValueError, match="shape \\(m, n\\)"):
        descent.upgrad(jnp.ones(3))
    with pytest.raises(ValueError, match="non-finite"):
        descent.mgda(jnp.array([[1.0, jnp.nan]]))
    with pytest.raises(ValueError, match="pref must have shape"):
        descent.upgrad(jnp.ones((3, 2)), jnp.ones(2))
    with pytest.raises(ValueError, match="U must have shape"):
        descent.project_to_dual_cone(jnp.eye(3), jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="max_iterations"):
        descent.ActiveSet(max_iterations=0)
    with pytest.raises(ValueError, match="at least"):
        descent.krum(jnp.ones((3, 2)), 1)


# -- agreement with TorchJD --------------------------------------------------------------


def _torchjd_pairs():
    from torchjd import aggregation as tja

    return {
        "upgrad": (descent.upgrad, tja.UPGrad(), 1e-6),
        "dualproj": (descent.dualproj, tja.DualProj(), 1e-6),
        "mean": (descent.mean, tja.Mean(), 1e-12),
        "sum_rows": (descent.sum_rows, tja.Sum(), 1e-12),
        "imtl_g": (descent.imtl_g, tja.IMTLG(), 1e-8),
        "aligned_mtl": (descent.aligned_mtl, tja.AlignedMTL(), 1e-8),
        "krum": (lambda J: descent.krum(J, 1, 2), tja.Krum(n_byzantine=1, n_selected=2), 1e-12),
        "trimmed_mean": (lambda J: descent.trimmed_mean(J, 1), tja.TrimmedMean(1), 1e-12),
        "config": (descent.config, tja.ConFIG(), 1e-8),
        # TorchJD's Frank-Wolfe converges sublinearly; ours is exact (see test_mgda_kkt)
        "mgda": (descent.mgda, tja.MGDA(epsilon=1e-12, max_iters=20000), 1e-2),
    }


@pytest.mark.parametrize(
    "shape",
    [(5, 8), *(pytest.param(s, marks=pytest.mark.slow) for s in [(4, 4), (7, 3), (12, 30)])],
)
def test_agrees_with_torchjd(shape):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    pytest.importorskip("torchjd", reason="torchjd is not installed (the benchmark extra)")
    J = _matrix(*shape, seed=sum(shape))
    Jt = torch.tensor(np.asarray(J), dtype=torch.float64)
    for name, (ours, theirs, tol) in _torchjd_pairs().items():
        if name == "mgda" and shape[0] > shape[1]:
            continue  # 0 may lie in the hull: both answers are rounding noise
        expected = theirs(Jt).numpy()
        if name == "mgda":  # the minimum norm: ours is at most Frank-Wolfe's
            assert np.linalg.norm(ours(J)) <= np.linalg.norm(expected) * (1 + 1e-9)
        scale = np.linalg.norm(expected) + 1e-12
        np.testing.assert_allclose(
            np.asarray(ours(J)) / scale, expected / scale, atol=tol, err_msg=name
        )
    # PCGrad's order does not matter with two rows
    J2 = _matrix(2, 6, seed=1)
    expected = _torchjd_pcgrad(torch, J2)
    np.testing.assert_allclose(descent.pcgrad(J2), expected, rtol=1e-10)


def _torchjd_pcgrad(torch, J):
    from torchjd import aggregation as tja

    return tja.PCGrad()(torch.tensor(np.asarray(J), dtype=torch.float64)).numpy()
