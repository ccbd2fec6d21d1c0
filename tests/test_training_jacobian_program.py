"""The compiled tangent program equals `jax.vmap` of the linearisation it compiles, for
every kind of equation and any placement of the tangent axis (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jacscope.training._tangent_program import TangentProgram, canonical_axis


def _mlp(p, x):
    h = jax.nn.gelu(x @ p["w"] + p["b"], approximate=True)
    logits = h @ p["v"]
    return -jnp.mean(jax.nn.log_softmax(logits)[:, 0]), jnp.tanh(p["b"]) * 3.0


def _batched_dot_and_layout(p, x):
    y = jnp.einsum("bij,bjk->bik", p["a"], x[:, :3, :2])  # dot with batch dimensions
    z = jnp.concatenate([y.reshape(-1), jnp.transpose(y, (2, 0, 1)).reshape(-1)])
    return z[1:-1] / (1.0 + x.sum()), y.sum(axis=(0, 2)) - y[:, 0, 1].mean()


def _generic_ops(p, x):
    h = jnp.cumsum(jnp.sin(x @ p["w"]), axis=1)[:, None, :]  # (B, 1, 4)
    h = lax.conv_general_dilated(h, p["k"], (1,), "SAME")  # (B, 2, 4)
    g = jnp.take(h.reshape(-1), jnp.array([0, 3, 5, 5]))
    scattered = jnp.zeros(6).at[jnp.array([1, 1, 4])].add(g[:3])
    looped = lax.fori_loop(0, 3, lambda i, c: 0.5 * c + jnp.cos(c) * p["b"], p["b"])
    return scattered, looped


def _selects_and_scalars(p, x):
    h = jax.nn.relu(x @ p["w"] - 0.2)  # select with a known zero case
    h = jnp.where(x[:, :1] > 0, h, -2.0 * h) / jnp.maximum(jnp.abs(p["b"]), 0.5)
    return jnp.max(h, axis=1), (p["s"] ** 2) * jnp.sum(jnp.abs(p["w"])), p["s"]


def _params(rng):
    shapes = {"w": (3, 4), "b": (4,), "v": (4, 5), "a": (5, 2, 3), "k": (2, 1, 3)}
    params = {name: jnp.asarray(rng.normal(size=shape)) for name, shape in shapes.items()}
    return {**params, "s": jnp.asarray(0.8)}


def _linear_jaxpr(fn, params):
    """The linear jaxpr of `jax.linearize(fn, params)` (traced, nothing runs) and a
    function computing its residuals: `(jaxpr, residuals(params) -> consts)`."""
    box = {}

    def residuals(p):
        _, linear = jax.linearize(fn, p)
        closed = jax.make_jaxpr(linear)(p)
        box["jaxpr"] = closed.jaxpr
        return closed.consts

    jax.make_jaxpr(residuals)(params)
    return box["jaxpr"], residuals


@pytest.mark.parametrize("fn", [_mlp, _batched_dot_and_layout, _generic_ops, _selects_and_scalars])
@pytest.mark.parametrize("placement", ["canonical", "back"])
def test_program_equals_vmap_of_linearisation(fn, placement):
    rng = np.random.default_rng(0)
    params = _params(rng)
    x = jnp.asarray(rng.normal(size=(5, 3, 2)))
    x = x[:, :, 0] if fn in (_mlp, _generic_ops, _selects_and_scalars) else x
    jaxpr, residuals = _linear_jaxpr(lambda p: fn(p, x), params)

    def axes(avals):
        return [canonical_axis(a.ndim) if placement == "canonical" else a.ndim for a in avals]

    in_axes = axes([v.aval for v in jaxpr.invars])
    out_axes = axes([v.aval for v in jaxpr.outvars])
    program = TangentProgram(jaxpr, in_axes, out_axes)
    leaves, tree = jax.tree.flatten(params)
    tangents = [jnp.asarray(rng.normal(size=(3, *leaf.shape))) for leaf in leaves]

    @jax.jit
    def both(params, tangents):
        _, linear = jax.linearize(lambda p: fn(p, x), params)
        expected = jax.vmap(lambda *t: jax.tree.leaves(linear(jax.tree.unflatten(tree, t))))(
            *tangents
        )
        moved = [jnp.moveaxis(t, 0, a) for t, a in zip(tangents, in_axes, strict=True)]
        return program.apply(moved, program.prepare(residuals(params))), expected

    got, expected = both(params, tangents)
    for g, e, a in zip(got, expected, out_axes, strict=True):
        np.testing.assert_allclose(jnp.moveaxis(g, a, 0), e, rtol=1e-12, atol=1e-12)


def test_elementwise_chains_are_collapsed():
    """The linearisation of an MLP step (GELU, softmax) compiles to far fewer
    instructions than it has equations: each elementwise chain is one fused sum."""
    rng = np.random.default_rng(1)
    params = _params(rng)
    x = jnp.asarray(rng.normal(size=(5, 3)))

    def step(p):
        grads = jax.grad(lambda q: _mlp(q, x)[0])(p)
        return jax.tree.map(lambda a, g: a - 0.1 * g, p, grads)

    jaxpr, _ = _linear_jaxpr(step, params)
    axes = [canonical_axis(v.aval.ndim) for v in jaxpr.invars]
    program = TangentProgram(jaxpr, axes, axes)
    elementwise = sum(
        e.primitive.name in ("mul", "add", "add_any", "sub", "neg", "select_n") for e in jaxpr.eqns
    )
    assert elementwise >= 40  # the chains this test is about
    assert 2 * program.num_instructions < len(jaxpr.eqns)
