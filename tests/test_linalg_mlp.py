"""linalg on the Jacobians and Hessians of a small MLP trained briefly on digits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jacscope
from jacscope import linalg
from jacscope.data import load_digits
from jacscope.models import classification_loss, init_mlp, mlp_apply

SIZES = (64, 8, 10)  # 610 parameters


@pytest.fixture(scope="module")
def trained():
    """(params, batch): 40 full-batch gradient steps on 128 digits, float64."""
    data = load_digits()
    batch = {"x": jnp.asarray(data.x_train[:128], jnp.float64), "y": data.y_train[:128]}
    params = init_mlp(jax.random.key(3), SIZES, dtype=jnp.float64)
    loss = classification_loss(mlp_apply)

    @jax.jit
    def train(params):
        def step(p, _):
            grads = jax.grad(loss)(p, batch)
            return jax.tree.map(lambda w, g: w - 0.5 * g, p, grads), loss(p, batch)

        return jax.lax.scan(step, params, length=40)

    params, losses = train(params)
    assert losses[-1] < 0.7 * losses[0]  # it did learn
    return params, batch


@pytest.fixture(scope="module")
def jacobian(trained):
    """The Jacobian of 16 examples' logits w.r.t. the parameters, as operator and matrix."""
    params, batch = trained
    x = batch["x"][:16]
    op = jacscope.jacobian_operator(lambda p: mlp_apply(p, x), params)
    flat, unravel = ravel_pytree(params)
    dense = np.asarray(jax.jacfwd(lambda f: mlp_apply(unravel(f), x).reshape(-1))(flat))
    return op, dense


def test_lanczos_svd_of_the_parameter_jacobian(jacobian, key):
    op, dense = jacobian
    assert op.shape == dense.shape == (160, 610)
    exact = np.linalg.svd(dense, compute_uv=False)
    U, S, Vt, info = linalg.svd_topk(op, 12, key=key, method="lanczos")
    np.testing.assert_allclose(np.asarray(S), exact[:12], rtol=1e-6)
    recomputed = np.linalg.norm(dense @ np.asarray(Vt).T - np.asarray(U) * np.asarray(S), axis=0)
    np.testing.assert_allclose(np.asarray(info.residuals), recomputed, rtol=1e-6, atol=1e-12)


def test_randomized_svd_of_the_parameter_jacobian(jacobian, key):
    """Within the residual bound of `svd_topk` (see test_linalg_svd)."""
    op, dense = jacobian
    exact = np.linalg.svd(dense, compute_uv=False)[:12]
    _, S, _, info = linalg.svd_topk(op, 12, key=key)
    error = np.abs(np.asarray(S) - exact)
    assert np.all(error <= np.asarray(info.residuals) / np.sqrt(2) + 1e-12 * exact[0])
    assert error[0] <= 1e-6 * exact[0]  # the well-separated top value is found accurately


@pytest.fixture(scope="module")
def hessian(trained):
    """The training-loss Hessian as an operator (jvp of grad) and as a dense matrix."""
    params, batch = trained
    flat, unravel = ravel_pytree(params)
    loss = classification_loss(mlp_apply)

    def flat_loss(f):
        return loss(unravel(f), batch)

    def hvp(v):
        return jax.jvp(jax.grad(flat_loss), (flat,), (v,))[1]

    op = jacscope.LinearOperator(hvp, hvp, (flat.size, flat.size), flat.dtype)
    return op, np.asarray(jax.hessian(flat_loss)(flat))


@pytest.mark.slow
def test_hessian_eigenvalues(hessian, key):
    """Top eigenvalues by magnitude of the (indefinite) loss Hessian, an hvp operator."""
    op, dense = hessian
    exact = np.linalg.eigvalsh(dense)
    by_magnitude = exact[np.argsort(-np.abs(exact))][:6]
    values, _, info = linalg.eigh_topk(op, 6, key=key, which="largest_magnitude", depth=60)
    np.testing.assert_allclose(np.asarray(values), by_magnitude, rtol=1e-6)
    assert np.all(np.asarray(info.residuals) <= 1e-5 * abs(by_magnitude[0]))
