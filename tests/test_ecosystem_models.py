"""Models and data as the ecosystem holds them: equinox Modules with non-array leaves,
flax linen variables and nnx State, typed PRNG keys in the batches, against
`jax.jacfwd` in float64; and the one-line errors for the usual slips."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen, nnx
from jax.flatten_util import ravel_pytree

from jacscope import jacobian_operator
from jacscope.data import batch_bytes, stack_batches
from jacscope.parallel import solve_sequence
from jacscope.penalties import jacobian_frobenius_penalty, jacobian_spectral_penalty
from jacscope.training import TrainingRun, training_jacobian, training_jacobian_operator

STEPS, BATCH, DIM, OUT = 3, 4, 3, 2


def dense(op):
    return np.asarray(op.mm(jnp.eye(op.shape[1], dtype=op.dtype)))


def reference_jacobian(fn, tree, *args):
    """`jax.jacfwd` of `fn` in the floating-point leaves of `tree`, flattened."""
    arrays, static = eqx.partition(tree, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(arrays)
    out = lambda x: eqx.filter(fn(eqx.combine(unravel(x), static), *args), eqx.is_inexact_array)
    flat_fn = lambda x: ravel_pytree(out(x))[0]
    return np.asarray(jax.jacfwd(flat_fn)(flat))


def batches(seed=0, steps=STEPS):
    rng = np.random.default_rng(seed)
    return {
        "x": jnp.asarray(rng.normal(size=(steps, BATCH, DIM))),
        "y": jnp.asarray(rng.normal(size=(steps, BATCH, OUT))),
    }


def eqx_mlp():
    return eqx.nn.MLP(DIM, OUT, 4, 1, activation=jax.nn.tanh, key=jax.random.key(1))


def eqx_loss(model, batch):
    return jnp.mean((jax.vmap(model)(batch["x"]) - batch["y"]) ** 2)


def flat_training(run_params0, loss, optimizer, data):
    """theta_T of plain optax training, written out: the reference."""

    def train(params):
        arrays, static = eqx.partition(params, eqx.is_inexact_array)
        full_loss = lambda a, batch: loss(eqx.combine(a, static), batch)

        def body(carry, batch):
            arrays, state = carry
            grads = jax.grad(full_loss)(arrays, batch)
            updates, state = optimizer.update(grads, state, arrays)
            return (optax.apply_updates(arrays, updates), state), None

        arrays = jax.lax.scan(body, (arrays, optimizer.init(arrays)), data)[0][0]
        return eqx.combine(arrays, static)

    return train


def test_jacobian_operator_of_an_equinox_mlp_matches_jacfwd():
    model, x = eqx_mlp(), jnp.linspace(-1.0, 1.0, DIM)
    op = jacobian_operator(lambda m, x: m(x), model, x)
    expected = reference_jacobian(lambda m: m(x), model)
    assert op.shape == expected.shape == (OUT, 4 * DIM + 4 + OUT * 4 + OUT)
    np.testing.assert_allclose(dense(op), expected, rtol=1e-12, atol=1e-14)
    tangent = op.unravel_input(jnp.ones(op.shape[1]))
    assert isinstance(tangent, eqx.nn.MLP) and tangent.activation is jax.nn.tanh


def test_jacobian_operator_of_flax_linen_variables_matches_jacfwd():
    model = linen.Sequential([linen.Dense(4), linen.tanh, linen.Dense(OUT)])
    x = jnp.linspace(-1.0, 1.0, DIM)
    variables = model.init(jax.random.key(0), x)
    op = jacobian_operator(model.apply, variables, x)
    expected = reference_jacobian(lambda v: model.apply(v, x), variables)
    np.testing.assert_allclose(dense(op), expected, rtol=1e-12, atol=1e-14)


def nnx_model():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(DIM, 4, rngs=rngs)
            self.dropout = nnx.Dropout(0.5, deterministic=True, rngs=rngs)
            self.out = nnx.Linear(4, OUT, rngs=rngs)

        def __call__(self, x):
            return self.out(self.dropout(jnp.tanh(self.hidden(x))))

    return nnx.split(Net(nnx.Rngs(0)))


def test_jacobian_operator_of_nnx_state_with_rng_leaves_matches_jacfwd():
    graphdef, state = nnx_model()
    kinds = {str(leaf.dtype) for leaf in jax.tree.leaves(state)}
    assert any("key" in kind for kind in kinds) and "uint32" in kinds  # rng state is held
    x = jnp.linspace(-1.0, 1.0, DIM)
    apply = lambda s, x: nnx.merge(graphdef, s)(x)
    op = jacobian_operator(apply, state, x)
    expected = reference_jacobian(lambda s: apply(s, x), state)
    assert op.shape == expected.shape == (OUT, DIM * 4 + 4 + 4 * OUT + OUT)
    np.testing.assert_allclose(dense(op), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "optimizer",
    [optax.sgd(0.3, momentum=0.9), pytest.param(optax.adam(0.05), marks=pytest.mark.slow)],
)
def test_training_jacobian_of_an_equinox_mlp_matches_jacfwd(optimizer):
    model, data = eqx_mlp(), batches()
    run = TrainingRun(model, eqx_loss, optimizer, data)
    expected = reference_jacobian(flat_training(model, eqx_loss, optimizer, data), model)
    np.testing.assert_allclose(training_jacobian(run), expected, rtol=1e-10, atol=1e-12)
    op = training_jacobian_operator(run)
    np.testing.assert_allclose(dense(op), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dense(op.T), expected.T, rtol=1e-10, atol=1e-12)
    final = run.parameters(run.final_params())
    assert isinstance(final, eqx.nn.MLP) and final.activation is jax.nn.tanh


def test_training_jacobian_of_flax_models_matches_jacfwd():
    data = batches()
    model = linen.Sequential([linen.Dense(4), linen.tanh, linen.Dense(OUT)])
    variables = model.init(jax.random.key(0), data["x"][0])
    linen_loss = lambda v, b: jnp.mean((model.apply(v, b["x"]) - b["y"]) ** 2)
    optimizer = optax.sgd(0.2)
    run = TrainingRun(variables, linen_loss, optimizer, data)
    expected = reference_jacobian(flat_training(variables, linen_loss, optimizer, data), variables)
    np.testing.assert_allclose(training_jacobian(run), expected, rtol=1e-10, atol=1e-12)

    graphdef, state = nnx_model()
    nnx_loss = lambda s, b: jnp.mean((nnx.merge(graphdef, s)(b["x"]) - b["y"]) ** 2)
    run = TrainingRun(state, nnx_loss, optimizer, data)
    expected = reference_jacobian(flat_training(state, nnx_loss, optimizer, data), state)
    np.testing.assert_allclose(training_jacobian(run), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        dense(training_jacobian_operator(run)), expected, rtol=1e-10, atol=1e-12
    )


def test_batches_with_typed_prng_keys_in_the_exact_and_matrix_free_paths():
    data = {**batches(), "key": jax.random.split(jax.random.key(3), STEPS)}
    params0 = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(DIM, OUT)))}

    def loss(params, batch):  # dropout drawn from the step's key
        keep = jax.random.bernoulli(batch["key"], 0.7, (BATCH, OUT))
        return jnp.mean((jnp.where(keep, batch["x"] @ params["w"], 0.0) - batch["y"]) ** 2)

    optimizer = optax.sgd(0.3)
    run = TrainingRun(params0, loss, optimizer, data)
    expected = reference_jacobian(flat_training(params0, loss, optimizer, data), params0)
    assert np.abs(expected - np.eye(DIM * OUT)).max() > 1e-3
    np.testing.assert_allclose(training_jacobian(run), expected, rtol=1e-12, atol=1e-14)
    op = training_jacobian_operator(run)
    np.testing.assert_allclose(dense(op), expected, rtol=1e-12, atol=1e-14)
    other = TrainingRun(
        params0, loss, optimizer, {**data, "key": jax.random.split(data["key"][0], STEPS)}
    )
    assert np.abs(training_jacobian(other) - expected).max() > 1e-6  # the keys matter


@pytest.mark.slow
def test_penalties_and_parallel_solvers_take_equinox_modules():
    model = eqx_mlp()
    x = jax.random.normal(jax.random.key(4), (5, DIM))
    apply = lambda m, xb: m(xb)
    per_example = [np.asarray(jax.jacfwd(model)(xb)) for xb in x]
    frobenius = 0.5 * np.mean([np.sum(j**2) for j in per_example])
    value = jacobian_frobenius_penalty(apply, model, x, exact=True)
    np.testing.assert_allclose(value, frobenius, rtol=1e-12)
    spectral = np.mean([np.linalg.norm(j, 2) ** 2 for j in per_example])
    pen = jacobian_spectral_penalty(apply, model, x, jnp.ones(DIM), exact=True)
    np.testing.assert_allclose(pen.value, spectral, rtol=1e-10)

    grads = eqx.filter_grad(lambda m: jacobian_frobenius_penalty(apply, m, x, exact=True))(model)
    dense_value = lambda m: 0.5 * jnp.mean(jnp.sum(jax.vmap(jax.jacfwd(m))(x) ** 2, axis=(1, 2)))
    expected = eqx.filter_grad(dense_value)(model)
    for got, want in zip(
        jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array)),
        jax.tree.leaves(eqx.filter(expected, eqx.is_inexact_array)),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)

    cell = eqx.nn.GRUCell(2, 3, key=jax.random.key(5))
    xs = jax.random.normal(jax.random.key(6), (6, 2))
    total = lambda c, method: solve_sequence(
        lambda s, xt: c(xt, s), jnp.zeros(3), xs, method=method
    ).states.sum()
    np.testing.assert_allclose(total(cell, "deer"), total(cell, "sequential"), rtol=1e-10)
    got = eqx.filter_grad(lambda c: total(c, "deer"))(cell)
    want = eqx.filter_grad(lambda c: total(c, "sequential"))(cell)
    np.testing.assert_allclose(got.weight_hh, want.weight_hh, rtol=1e-8, atol=1e-12)


def test_stack_batches_stacks_a_list_and_names_a_partial_batch():
    steps = [{"x": jnp.full((BATCH, DIM), float(t)), "key": jax.random.key(t)} for t in range(4)]
    stacked = stack_batches(iter(steps))
    assert stacked["x"].shape == (4, BATCH, DIM) and stacked["key"].shape == (4,)
    np.testing.assert_array_equal(stacked["x"][:, 0, 0], [0.0, 1.0, 2.0, 3.0])
    assert batch_bytes(stacked) == 4 * BATCH * DIM * 8 + 4 * 2 * 4
    ragged = steps[:3] + [{"x": jnp.zeros((BATCH - 1, DIM)), "key": jax.random.key(9)}]
    with pytest.raises(ValueError, match=r"batch 3\['x'\] has shape \(3, 3\)"):
        stack_batches(ragged)


def _plain_run_arguments():
    params0 = {"w": jnp.ones((DIM, OUT))}
    loss = lambda p, b: jnp.mean((b["x"] @ p["w"] - b["y"]) ** 2)
    return params0, loss, optax.sgd(0.1), batches()


def test_usual_slips_are_one_line_errors_at_construction():
    params0, loss, optimizer, data = _plain_run_arguments()
    with pytest.raises(TypeError, match=r"optax\.sgd is a factory: call it"):
        TrainingRun(params0, loss, optax.sgd, data)
    with pytest.raises(TypeError, match="the second argument is an optax optimizer"):
        TrainingRun(params0, optimizer, loss, data)
    with pytest.raises(ValueError, match=r"must return a scalar; it returns shape \(4, 2\)"):
        TrainingRun(params0, lambda p, b: (b["x"] @ p["w"] - b["y"]) ** 2, optimizer, data)
    wrong = {"x": jnp.ones((STEPS, BATCH, DIM + 1)), "y": data["y"]}
    with pytest.raises(ValueError, match=r"loss_fn fails on params0 and the first batch.*\(4, 4\)"):
        TrainingRun(params0, loss, optimizer, wrong)
    per_step = [jax.tree.map(lambda leaf, t=t: leaf[t], data) for t in range(STEPS)]
    with pytest.raises(ValueError, match=r"list of 3 per-step batches.*stack_batches"):
        TrainingRun(params0, loss, optimizer, per_step)
    with pytest.raises(TypeError, match="batches is an iterator"):
        TrainingRun(params0, loss, optimizer, iter(per_step))
    short = {"x": data["x"], "y": data["y"][:2]}
    with pytest.raises(ValueError, match=r"batches\['x'\] has 3, batches\['y'\] has 2"):
        TrainingRun(params0, loss, optimizer, short)
    with pytest.raises(ValueError, match=r"no floating-point array leaves.*int32\(3, 2\)"):
        TrainingRun({"w": jnp.ones((DIM, OUT), jnp.int32)}, loss, optimizer, data)
    with pytest.raises(ValueError, match=r"fn fails on the given arguments.*float64\(4,\)"):
        jacobian_operator(lambda p, x: x @ p["w"], params0, jnp.ones(DIM + 1))
    op = training_jacobian_operator(TrainingRun(params0, loss, optimizer, data))
    with pytest.raises(ValueError, match="mv expects a flat array of length 6, received a dict"):
        op.mv(params0)
    np.testing.assert_allclose(op.mv(op.ravel_input(params0)), dense(op) @ np.ones(6))


def test_integer_leaves_are_held_fixed_not_differentiated():
    params0, loss, optimizer, data = _plain_run_arguments()
    with_count = {**params0, "count": jnp.asarray(2, jnp.int32)}
    scaled = lambda p, b: loss(p, b) * p["count"]
    run = TrainingRun(with_count, scaled, optimizer, data)
    assert training_jacobian(run).shape == (DIM * OUT, DIM * OUT)
    expected = reference_jacobian(flat_training(with_count, scaled, optimizer, data), with_count)
    np.testing.assert_allclose(training_jacobian(run), expected, rtol=1e-12, atol=1e-14)
    assert run.parameters(run.final_params())["count"] == 2
