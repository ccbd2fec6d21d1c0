"""Operators that travel: matrix_operator, to_lineax / from_lineax and to_scipy, in float64.

Every view of an operator (the jacscope one, its lineax and SciPy forms, lineax
operators brought back) is checked against the same dense reference: the matrix
itself, `jax.jacfwd` of a small MLP, or the product of two dense matrices.
"""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse.linalg as splinalg
from jax.flatten_util import ravel_pytree

import jacscope
from jacscope.operators import from_lineax, matrix_operator
from spectra import with_eigenvalues, with_singular_values

lx = pytest.importorskip("lineax")

ATOL = 1e-11


def _mlp(params, x):
    for w, b in params[:-1]:
        x = jnp.tanh(x @ w + b)
    w, b = params[-1]
    return x @ w + b


def _matrix_case():
    matrix = np.random.default_rng(0).standard_normal((9, 7))
    return matrix_operator(matrix), matrix


def _jacobian_case():
    rng = np.random.default_rng(1)
    params = [
        (jnp.asarray(rng.standard_normal((3, 4)) / 2), jnp.full((4,), 0.1)),
        (jnp.asarray(rng.standard_normal((4, 2)) / 2), jnp.zeros((2,))),
    ]
    x = jnp.asarray(rng.standard_normal((3, 3)))
    flat, unravel = ravel_pytree(params)
    dense = jax.jit(jax.jacfwd(lambda p: _mlp(unravel(p), x).reshape(-1)))(flat)
    return jacscope.jacobian_operator(_mlp, params, x), np.asarray(dense)


def _composed_case():
    rng = np.random.default_rng(2)
    outer, inner = rng.standard_normal((6, 5)), rng.standard_normal((5, 8))
    inner_op = jacscope.LinearOperator(
        lambda v: jnp.asarray(inner) @ v, lambda u: jnp.asarray(inner).T @ u, (5, 8), jnp.float64
    )
    op = 2.0 * (matrix_operator(outer) @ inner_op)
    return op, 2.0 * outer @ inner


CASES = {"matrix": _matrix_case, "jacobian": _jacobian_case, "composed": _composed_case}


def _through_lineax(op):
    """The products of `op.to_lineax()`: `mv`, `transpose().mv`, and both vmapped."""
    lin = op.to_lineax()
    columns = lambda fn: jax.vmap(fn, in_axes=1, out_axes=1)
    return lin.mv, lin.T.mv, columns(lin.mv), columns(lin.T.mv)


def _through_lineax_function(op):
    """A lineax `FunctionLinearOperator` of `op.mv` (transposed by autodiff), brought back."""
    structure = jax.ShapeDtypeStruct((op.shape[1],), op.dtype)
    back = from_lineax(lx.FunctionLinearOperator(op.mv, structure))
    assert back.shape == op.shape and back.dtype == op.dtype
    return back.mv, back.rmv, back.mm, back.rmm


def _through_scipy(op):
    sp = op.to_scipy()
    assert sp.shape == op.shape and sp.dtype == np.float64
    return sp.matvec, sp.rmatvec, sp.matmat, sp.rmatmat


VIEWS = {
    "jacscope": lambda op: (op.mv, op.rmv, op.mm, op.rmm),
    "to_lineax": _through_lineax,
    "lineax_function": _through_lineax_function,
    "to_scipy": _through_scipy,
}


@pytest.mark.parametrize("view", sorted(VIEWS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_products_agree_with_the_dense_matrix(case, view):
    op, dense = CASES[case]()
    m, n = dense.shape
    rng = np.random.default_rng(3)
    v, u = rng.standard_normal(n), rng.standard_normal(m)
    V, U = rng.standard_normal((n, 3)), rng.standard_normal((m, 3))
    mv, rmv, mm, rmm = VIEWS[view](op)
    apply = lambda v, u, V, U: (mv(v), rmv(u), mm(V), rmm(U))
    if view != "to_scipy":  # one compilation for the four products
        apply = jax.jit(apply)
    got = apply(v, u, V, U)
    for value, expected in zip(got, (dense @ v, dense.T @ u, dense @ V, dense.T @ U), strict=True):
        np.testing.assert_allclose(value, expected, atol=ATOL)


def test_lineax_matrix_operator_comes_back_with_its_products():
    matrix = np.random.default_rng(4).standard_normal((5, 3))
    back = from_lineax(lx.MatrixLinearOperator(jnp.asarray(matrix)))
    assert back.shape == (5, 3) and back.dtype == jnp.float64
    np.testing.assert_allclose(back.materialize(), matrix, atol=ATOL)
    np.testing.assert_allclose(back.T.materialize(), matrix.T, atol=ATOL)


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_gives_back_the_operator(case):
    op, dense = CASES[case]()
    lin = op.to_lineax()
    assert from_lineax(lin) is op
    assert lin.in_structure() == jax.ShapeDtypeStruct((dense.shape[1],), jnp.float64)
    assert lin.out_structure() == jax.ShapeDtypeStruct((dense.shape[0],), jnp.float64)
    np.testing.assert_allclose(lx.materialise(lin).as_matrix(), dense, atol=ATOL)


def test_transpose_is_the_operators_rmv_not_autodiff():
    """`mv` leaves JAX (a callback cannot be transposed); `T.mv` still works through `rmv`."""
    matrix = np.random.default_rng(5).standard_normal((4, 6))
    outside = lambda v: jax.pure_callback(
        lambda x: matrix @ x, jax.ShapeDtypeStruct((4,), jnp.float64), v
    )
    op = jacscope.LinearOperator(outside, lambda u: jnp.asarray(matrix).T @ u, (4, 6), jnp.float64)
    u = jnp.arange(4.0)
    np.testing.assert_allclose(op.to_lineax().T.mv(u), matrix.T @ u, atol=ATOL)


def test_svds_on_to_scipy_agrees_with_svd_topk(key):
    values = 2.0 ** -np.arange(12.0)
    op = matrix_operator(with_singular_values(values, (20, 12), seed=6))
    u, s, vt = splinalg.svds(op.to_scipy(), k=5, tol=1e-14, random_state=0)
    order = np.argsort(s)[::-1]
    u, s, vt = u[:, order], s[order], vt[order]
    U, S, Vt, _ = jacscope.linalg.svd_topk(op, 5, key=key, method="lanczos", depth=min(op.shape))
    np.testing.assert_allclose(s, S, rtol=1e-9)
    # Singular vectors agree up to sign.
    np.testing.assert_allclose(np.abs(np.sum(u * np.asarray(U), axis=0)), 1.0, atol=1e-7)
    np.testing.assert_allclose(np.abs(np.sum(vt * np.asarray(Vt), axis=1)), 1.0, atol=1e-7)


def _spd_case():
    """`J^T J + 0.5 I` for a random 10 x 6 `J`: a composed, symmetric positive definite operator."""
    jac = np.random.default_rng(7).standard_normal((10, 6))
    op = matrix_operator(jac).T @ matrix_operator(jac) + 0.5 * jacscope.identity(6, jnp.float64)
    return op, jac.T @ jac + 0.5 * np.eye(6)


SPD_TAGS = (lx.symmetric_tag, lx.positive_semidefinite_tag)
CG = lx.CG(rtol=1e-12, atol=1e-12, max_steps=200)


def test_cg_on_an_spd_operator_matches_numpy_solve():
    op, dense = _spd_case()
    b = jnp.linspace(-1.0, 2.0, 6)
    solution = lx.linear_solve(op.to_lineax(tags=SPD_TAGS), b, CG)
    np.testing.assert_allclose(solution.value, np.linalg.solve(dense, b), rtol=1e-9, atol=1e-10)


def test_default_solver_materialises_the_operator():
    matrix = jnp.asarray(np.random.default_rng(11).standard_normal((5, 5)) + 4 * np.eye(5))
    b = jnp.linspace(0.5, 1.5, 5)
    x = lx.linear_solve(matrix_operator(matrix).to_lineax(), b).value  # LU
    np.testing.assert_allclose(x, np.linalg.solve(matrix, b), atol=1e-12)


def test_to_lineax_inside_jit():
    op, dense = _spd_case()
    b = jnp.linspace(-1.0, 2.0, 6)

    @jax.jit
    def solve_and_transpose(op, b):
        lin = op.to_lineax(tags=SPD_TAGS)
        return lx.linear_solve(lin, b, CG).value, lin.T.mv(b)

    value, transposed = solve_and_transpose(op, b)
    np.testing.assert_allclose(value, np.linalg.solve(dense, b), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(transposed, dense.T @ b, atol=ATOL)
    wide, wide_dense = _matrix_case()
    w = jnp.ones(9)
    np.testing.assert_allclose(
        jax.jit(lambda op, w: op.to_lineax().T.mv(w))(wide, w), wide_dense.T @ w, atol=ATOL
    )


@pytest.mark.slow
def test_tags_answer_lineax_queries():
    values = np.arange(1.0, 7.0)
    tri = np.diag(values) + np.diag(np.full(5, 0.3), 1) + np.diag(np.full(5, -0.2), -1)
    lin = matrix_operator(tri).to_lineax(lx.tridiagonal_tag)
    assert lx.is_tridiagonal(lin) and not lx.is_symmetric(lin) and not lx.is_diagonal(lin)
    main, lower, upper = lx.tridiagonal(lin)
    np.testing.assert_allclose(main, values, atol=ATOL)
    np.testing.assert_allclose(lower, np.full(5, -0.2), atol=ATOL)
    np.testing.assert_allclose(upper, np.full(5, 0.3), atol=ATOL)
    np.testing.assert_allclose(lx.diagonal(lin), values, atol=ATOL)
    b = jnp.ones(6)
    np.testing.assert_allclose(
        lx.linear_solve(lin, b, lx.Tridiagonal()).value, np.linalg.solve(tri, b), atol=1e-10
    )
    spd = matrix_operator(with_eigenvalues(values, seed=8)).to_lineax(SPD_TAGS)
    assert lx.is_symmetric(spd) and lx.is_positive_semidefinite(spd) and spd.T is spd
    assert not lx.is_negative_semidefinite(spd)


def test_to_scipy_compiles_each_product_once():
    traces = []
    matrix = jnp.asarray(np.random.default_rng(9).standard_normal((5, 4)))

    def mv(v):
        traces.append(v.shape)
        return matrix @ v

    sp = jacscope.LinearOperator(mv, lambda u: matrix.T @ u, (5, 4), jnp.float64).to_scipy()
    before = len(traces)
    for seed in range(4):
        v = np.random.default_rng(seed).standard_normal(4)
        np.testing.assert_allclose(sp.matvec(v), matrix @ v, atol=ATOL)
        np.testing.assert_allclose(sp @ v[:, None], matrix @ v[:, None], atol=ATOL)
    assert len(traces) - before == 1


def test_to_scipy_keeps_float32():
    matrix = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    sp = matrix_operator(matrix).to_scipy()
    assert sp.dtype == np.float32
    out = sp.matvec(np.ones(4))  # float64 in, cast to the operator's dtype
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, matrix @ np.ones(4, np.float32))
    assert sp.rmatmat(np.ones((3, 2), np.float32)).dtype == np.float32


def test_matrix_operator_materializes_to_its_matrix():
    matrix = jnp.asarray(np.random.default_rng(10).standard_normal((3, 4)))
    op = matrix_operator(matrix)
    assert isinstance(op, jacscope.operators.MatrixOperator)
    assert op.materialize(max_bytes=1) is matrix
    assert op.shape == (3, 4) and op.dtype == jnp.float64
    assert repr(op) == "MatrixOperator(shape=(3, 4), dtype=float64)"


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.ones(3), r"2-D matrix .* received shape \(3,\)"),
        (np.ones((2, 3, 4)), r"2-D matrix .* received shape \(2, 3, 4\)"),
        (np.ones((0, 3)), r"m, n >= 1, received shape \(0, 3\)"),
        (np.ones((2, 2), dtype=np.int32), "real floating-point matrix, received dtype int32"),
        (np.ones((2, 2), dtype=np.complex128), "received dtype complex128"),
    ],
)
def test_matrix_operator_refuses_what_is_not_a_real_matrix(matrix, message):
    with pytest.raises(ValueError, match=message):
        matrix_operator(matrix)


def test_from_lineax_refuses_what_is_not_flat():
    pytree = {
        "a": jax.ShapeDtypeStruct((3,), jnp.float64),
        "b": jax.ShapeDtypeStruct((2,), jnp.float64),
    }
    with pytest.raises(ValueError, match=r"its input structure is \{'a': ShapeDtypeStruct"):
        from_lineax(lx.IdentityLinearOperator(pytree))
    grid = jax.ShapeDtypeStruct((2, 3), jnp.float64)
    with pytest.raises(ValueError, match=r"input structure is ShapeDtypeStruct\(shape=\(2, 3\)"):
        from_lineax(lx.IdentityLinearOperator(grid))
    flat = jax.ShapeDtypeStruct((6,), jnp.float64)
    with pytest.raises(ValueError, match="output structure"):
        from_lineax(lx.IdentityLinearOperator(flat, grid))
    with pytest.raises(TypeError, match="expects a lineax operator, received a ndarray"):
        from_lineax(np.eye(3))


def test_to_scipy_refuses_other_dtypes():
    op = matrix_operator(jnp.ones((2, 2), jnp.float16))
    with pytest.raises(ValueError, match="float32 or float64; this operator's dtype is float16"):
        op.to_scipy()


def test_missing_packages_are_named(monkeypatch):
    op, _ = _matrix_case()
    monkeypatch.setitem(sys.modules, "lineax", None)
    with pytest.raises(ImportError, match=r"to_lineax needs lineax, .* 'jacscope\[lineax\]'"):
        op.to_lineax()
    with pytest.raises(ImportError, match=r"from_lineax needs lineax, .* 'jacscope\[lineax\]'"):
        from_lineax(object())


def test_import_jacscope_imports_neither_lineax_nor_scipy():
    code = (
        "import sys, jacscope; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'lineax', 'scipy'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
