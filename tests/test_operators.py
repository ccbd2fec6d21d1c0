"""Operators against the dense Jacobian from `jax.jacfwd`, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jacscope


def _mlp_params(key, sizes=(5, 7, 3)):
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (a, b)) / np.sqrt(a), "b": 0.1 * jax.random.normal(k, (b,))}
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def _mlp(params, x):
    for layer in params[:-1]:
        x = jax.nn.gelu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def _dense_jacobian(fn, args, wrt):
    """The reference: jax.jacfwd of the flattened map, one argument index or several."""
    wrt = (wrt,) if isinstance(wrt, int) else tuple(wrt)
    chosen = tuple(args[i] for i in wrt)
    x0, unravel = ravel_pytree(chosen if len(wrt) > 1 else chosen[0])

    def flat(x):
        values = unravel(x)
        values = values if len(wrt) > 1 else (values,)
        full = list(args)
        for i, value in zip(wrt, values, strict=True):
            full[i] = value
        return ravel_pytree(fn(*full))[0]

    return np.asarray(jax.jacfwd(flat)(x0))


def _two_arg(params, x, scale):
    return {"out": scale * _mlp(params, x), "aux": jnp.sin(x).sum(axis=-1)}


CASES = {
    "mlp-params": (_mlp, lambda k: (_mlp_params(k), jax.random.normal(k, (4, 5))), 0),
    "mlp-inputs": (_mlp, lambda k: (_mlp_params(k), jax.random.normal(k, (4, 5))), 1),
    "several-args": (
        _two_arg,
        lambda k: (_mlp_params(k), jax.random.normal(k, (2, 5)), jnp.float64(1.5)),
        (0, 2),
    ),
    "wide": (
        lambda w, x: jnp.tanh(x @ w),
        lambda k: (jax.random.normal(k, (30, 2)), jnp.ones((1, 30))),
        0,
    ),
}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in ("mlp-inputs", "wide") else n
        for n in sorted(CASES)
    ],
)
def test_products_equal_dense_jacobian(name, key):
    fn, make_args, wrt = CASES[name]
    args = make_args(key)
    op = jacscope.jacobian_operator(fn, *args, wrt=wrt)
    J = _dense_jacobian(fn, args, wrt)
    assert op.shape == J.shape
    m, n = J.shape
    kv, ku = jax.random.split(jax.random.key(1))
    V = jax.random.normal(kv, (n, 3))
    U = jax.random.normal(ku, (m, 3))
    np.testing.assert_allclose(op.mv(V[:, 0]), J @ V[:, 0], atol=1e-10, rtol=0)
    np.testing.assert_allclose(op.rmv(U[:, 0]), J.T @ U[:, 0], atol=1e-10, rtol=0)
    for chunk in (None, 2):
        np.testing.assert_allclose(op.mm(V, chunk_size=chunk), J @ V, atol=1e-10, rtol=0)
        np.testing.assert_allclose(op.rmm(U, chunk_size=chunk), J.T @ U, atol=1e-10, rtol=0)
    np.testing.assert_allclose(op.T.mv(U[:, 0]), J.T @ U[:, 0], atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", ["mlp-params", "mlp-inputs", "wide"])
@pytest.mark.parametrize("chunk_size", [None, 1, 3, 7, 10_000])
def test_materialize_equals_jacfwd(name, chunk_size, key):
    fn, make_args, wrt = CASES[name]
    args = make_args(key)
    op = jacscope.jacobian_operator(fn, *args, wrt=wrt)
    np.testing.assert_allclose(
        op.materialize(chunk_size=chunk_size), _dense_jacobian(fn, args, wrt), atol=1e-12, rtol=0
    )


def test_materialize_chunks_from_budget(key):
    fn, make_args, wrt = CASES["mlp-params"]
    args = make_args(key)
    op = jacscope.jacobian_operator(fn, *args, wrt=wrt)
    needed = op.shape[0] * op.shape[1] * 8
    # a budget barely above the result forces one basis vector per chunk
    np.testing.assert_allclose(
        op.materialize(max_bytes=needed + 1), _dense_jacobian(fn, args, wrt), atol=1e-12, rtol=0
    )


def test_pytree_helpers_round_trip(key):
    params, x = CASES["mlp-params"][1](key)
    op = jacscope.jacobian_operator(_mlp, params, x)
    flat = op.ravel_input(params)
    np.testing.assert_array_equal(flat, op.primal_in)
    rebuilt = op.unravel_input(flat)
    assert jax.tree_util.tree_structure(rebuilt) == jax.tree_util.tree_structure(params)
    np.testing.assert_allclose(op.output(), _mlp(params, x))
    np.testing.assert_array_equal(op.ravel_output(op.output()), op.primal_out)


def test_operator_algebra_matches_dense(key):
    M1 = jax.random.normal(key, (6, 4))
    M2 = jax.random.normal(jax.random.key(3), (6, 4))
    M3 = jax.random.normal(jax.random.key(4), (4, 5))
    A, B, C = (
        jacscope.LinearOperator(lambda v, M=M: M @ v, lambda u, M=M: M.T @ u, M.shape, M.dtype)
        for M in (M1, M2, M3)
    )
    I6 = jacscope.identity(6, jnp.float64)
    cases = {
        "A @ C": (A @ C, M1 @ M3),
        "A + B": (A + B, M1 + M2),
        "A - B": (A - B, M1 - M2),
        "2.5 * A": (2.5 * A, 2.5 * M1),
        "A * 2.5": (A * 2.5, 2.5 * M1),
        "-A": (-A, -M1),
        "A.T": (A.T, M1.T),
        "A A^T - 3 I": (A @ A.T - 3.0 * I6, M1 @ M1.T - 3.0 * np.eye(6)),
    }
    for name, (op, dense) in cases.items():
        assert op.shape == dense.shape, name
        np.testing.assert_allclose(op.materialize(), dense, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(op.T.materialize(), dense.T, atol=1e-12, err_msg=name)
    v = jnp.arange(4.0)
    np.testing.assert_allclose(A @ v, M1 @ v)


def test_operator_is_a_pytree_under_jit(key):
    params, x = CASES["mlp-params"][1](key)
    op = jacscope.jacobian_operator(_mlp, params, x)
    v = jax.random.normal(key, (op.shape[1],))
    np.testing.assert_allclose(jax.jit(lambda o, v: o.mv(v))(op, v), op.mv(v), atol=1e-12)
    shifted = op.T @ op - 0.5 * jacscope.identity(op.shape[1], jnp.float64)
    np.testing.assert_allclose(jax.jit(lambda o, v: o.mv(v))(shifted, v), shifted.mv(v), atol=1e-12)


def test_linear_operator_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\(m, n\)"):
        jacscope.LinearOperator(lambda v: v, lambda u: u, (0, 3), jnp.float64)


@pytest.mark.parametrize(
    ("mv", "rmv", "message"),
    [
        # the case: mv of a (4, 3) operator returning a length-6 vector
        (lambda v: jnp.tile(v, 2), lambda u: u[:3], r"mv maps a \(3,\) vector to shape \(6,\)"),
        (lambda v: jnp.ones(4), lambda u: u[:2], r"rmv maps a \(4,\) vector to shape \(2,\)"),
        (lambda v: jnp.ones(4, jnp.float32), lambda u: u[:3], "dtype float32"),
        (lambda v: v @ jnp.ones((4, 4)), lambda u: u[:3], r"mv cannot be applied .*\(3,\)"),
    ],
)
def test_linear_operator_checks_its_functions_against_its_shape(mv, rmv, message):
    with pytest.raises(ValueError, match=message):
        jacscope.LinearOperator(mv, rmv, (4, 3), jnp.float64)


def test_non_finite_parameter_is_named(key):
    params, x = CASES["mlp-params"][1](key)
    params[1]["w"] = params[1]["w"].at[2, 1].set(jnp.inf)
    with pytest.raises(ValueError, match=r"argument 0\[1\]\['w'\].*non-finite"):
        jacscope.jacobian_operator(_mlp, params, x)


def test_non_finite_input_is_named(key):
    params, x = CASES["mlp-params"][1](key)
    with pytest.raises(ValueError, match=r"argument 1 has 1 non-finite"):
        jacscope.jacobian_operator(_mlp, params, x.at[0, 0].set(jnp.nan))


def test_non_finite_output_is_named(key):
    w = jnp.array([1.0, -1.0])
    with pytest.raises(ValueError, match=r"output of fn.*non-finite"):
        jacscope.jacobian_operator(lambda w: {"logw": jnp.log(w)}, w)


def test_shape_mismatch_names_both_shapes(key):
    params, x = CASES["mlp-params"][1](key)
    op = jacscope.jacobian_operator(_mlp, params, x)
    m, n = op.shape
    with pytest.raises(ValueError, match=rf"expects shape \({n},\), received shape \({m},\)"):
        op.mv(jnp.ones(m))
    with pytest.raises(ValueError, match=rf"expects shape \({m},\), received shape \(3,\)"):
        op.rmv(jnp.ones(3))
    with pytest.raises(ValueError, match=rf"\({n}, k\), received shape \({n + 1}, 2\)"):
        op.mm(jnp.ones((n + 1, 2)))
    with pytest.raises(ValueError, match="cannot compose"):
        _ = op @ op
    with pytest.raises(ValueError, match="cannot add"):
        _ = op + op.T


def test_wrt_out_of_range_is_refused(key):
    params, x = CASES["mlp-params"][1](key)
    with pytest.raises(ValueError, match="wrt=2 is out of range for 2"):
        jacscope.jacobian_operator(_mlp, params, x, wrt=2)


def test_dense_request_over_budget_raises(key):
    params, x = CASES["mlp-params"][1](key)
    op = jacscope.jacobian_operator(_mlp, params, x)
    needed = op.shape[0] * op.shape[1] * 8
    with pytest.raises(jacscope.DenseTooLarge, match=rf"needs {needed:,} bytes") as info:
        op.materialize(max_bytes=needed - 1)
    assert info.value.needed_bytes == needed
    assert "svd_topk" in str(info.value)
