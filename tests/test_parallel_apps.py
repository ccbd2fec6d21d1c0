"""jacscope.parallel applications: MADE sampling, greedy and speculative Jacobi decoding."""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from jacscope.parallel import (
    MADE,
    CausalTransformer,
    consistency_loss,
    jacobi_decode,
    solve_autoregressive,
    speculative_jacobi_sample,
)

AR_METHODS = ("jacobi", "block_gauss_seidel", "jacobi_window")


def test_made_is_autoregressive_and_jacobi_sample_equals_sequential_sample(key):
    made = MADE(64, 128, key=key)
    made = jax.tree.map(lambda a: 3.0 * a, made)  # sharper conditionals, more iterations
    # the masks make logit d a function of x_0, ..., x_{d-1} only
    x = jnp.asarray(np.random.default_rng(0).integers(0, 2, 64), jnp.float64)
    jac = np.asarray(jax.jit(jax.jacfwd(lambda x: made.logits(x)))(x))
    np.testing.assert_array_equal(np.triu(jac), 0.0)
    assert np.all(np.abs(np.diag(jac, k=-1)) > 0)
    noise = jnp.asarray(np.random.default_rng(0).uniform(size=(32, 64)))
    guess = jnp.zeros(64, jnp.int32)

    @jax.jit
    def sample(u):
        return {
            m: solve_autoregressive(made.sampling_map, guess, u, method=m, block_size=8, window=16)
            for m in ("sequential", *AR_METHODS)
        }

    samples = jax.vmap(sample)(noise)
    reference = samples.pop("sequential")
    # the obvious ancestral sampler for one draw
    x, logits = np.zeros(64, np.int32), jax.jit(lambda x: made.logits(x))
    for d in range(64):
        x[d] = int(noise[0, d] < jax.nn.sigmoid(logits(jnp.asarray(x))[d]))
    np.testing.assert_array_equal(reference.states[0], x)
    assert np.all(np.asarray(reference.iterations) == 64)
    for method, sol in samples.items():
        np.testing.assert_array_equal(sol.states, reference.states)
        assert sol.states.dtype == jnp.int32
        cap = 8 if method == "block_gauss_seidel" else 64
        assert np.all(np.asarray(sol.converged)), method
        assert np.all((1 <= sol.iterations) & (sol.iterations <= cap)), method
    assert 1 < float(jnp.mean(samples["jacobi"].iterations)) < 64


@eqx.filter_jit
def _toy_transformer(key):
    return CausalTransformer(11, 32, width=32, depth=2, heads=4, key=key)


def _greedy_reference(logits_fn, prompt, num_tokens):
    """The obvious greedy loop: one forward pass per token."""
    fn = jax.jit(lambda tokens: logits_fn(tokens))
    buffer = np.concatenate([np.asarray(prompt), np.zeros(num_tokens, np.int32)])
    for t in range(len(prompt), len(buffer)):
        buffer[t] = int(jnp.argmax(fn(jnp.asarray(buffer))[t - 1]))
    return buffer[len(prompt) :]


def _bigram(vocab=7):
    """A bigram model whose chains end in the absorbing token 0: Jacobi decoding can
    stop before the cap."""
    table = np.random.default_rng(0).normal(size=(vocab, vocab))
    table[[0, 3, 5, 6], 0] = 10.0
    return lambda tokens: jnp.asarray(table)[tokens]


@pytest.mark.parametrize("model", [pytest.param("transformer", marks=pytest.mark.slow), "bigram"])
def test_greedy_jacobi_decoding_equals_greedy_decoding(model, key):
    logits_fn = _toy_transformer(key) if model == "transformer" else _bigram()
    if model == "transformer":  # row t of the logits depends on tokens 0, ..., t only
        forward = jax.jit(lambda t: logits_fn(t))
        tokens = jnp.asarray(np.random.default_rng(0).integers(0, 11, 20))
        changed = tokens.at[12:].set((tokens[12:] + 1) % 11)
        np.testing.assert_allclose(forward(tokens)[:12], forward(changed)[:12], atol=1e-12)
        assert not np.allclose(forward(tokens)[12:], forward(changed)[12:])
    prompt = jnp.array([1, 2, 3, 4], jnp.int32)
    expected = _greedy_reference(logits_fn, prompt, 16)
    run = jax.jit(
        lambda prompt: {
            m: jacobi_decode(logits_fn, prompt, 16, block_size=8, method=m, window=4)
            for m in ("sequential", *AR_METHODS)
        }
    )
    results = run(prompt)
    for method, res in results.items():
        np.testing.assert_array_equal(res.tokens, expected)
        assert np.all(np.asarray(res.converged)) and np.all(res.iterations <= 8), method
    assert int(results["sequential"].forward_passes) == 16
    if model == "bigram":
        assert int(results["jacobi"].forward_passes) < 16


def _table_model(seed, vocab=3):
    """A causal model over 3 tokens of a 3-letter alphabet, given by logit tables."""
    rng = np.random.default_rng(seed)
    tables = [jnp.asarray(rng.normal(size=(vocab,) * (t + 1))) for t in range(3)]

    def logits_fn(tokens):
        return jnp.stack([tables[0], tables[1][tokens[0]], tables[2][tokens[0], tokens[1]]])

    def probability(seq):
        log_p = jax.nn.log_softmax(logits_fn(seq), axis=-1)
        return jnp.exp(jnp.sum(jnp.take_along_axis(log_p, seq[:, None], axis=1)))

    return tables, logits_fn, probability


def _chi_square_p(tokens, probs):
    codes = np.asarray(tokens) @ np.array([9, 3, 1])
    observed = np.bincount(codes, minlength=27)
    return stats.chisquare(observed, probs * len(codes)).pvalue


def test_speculative_jacobi_sampling_has_the_sequential_distribution(key):
    tables, logits_fn, probability = _table_model(0)
    space = jnp.array(list(itertools.product(range(3), repeat=3)))
    probs = np.asarray(jax.jit(jax.vmap(probability))(space))
    assert abs(probs.sum() - 1) < 1e-12 and probs.min() * 6000 > 5
    keys = jax.random.split(jax.random.key(1), 6000)
    draws = jax.jit(jax.vmap(lambda k: speculative_jacobi_sample(logits_fn, k, 3, 3)))(keys)
    assert _chi_square_p(draws.tokens, probs) > 1e-3
    assert np.all((1 <= draws.iterations) & (draws.iterations <= 3))
    assert float(jnp.mean(draws.iterations)) < 3.0 and int(jnp.sum(draws.accepted)) > 0

    # The same test has power: sequential samples from a model a little off are rejected.
    def off_logits(tokens):
        return logits_fn(tokens).at[2].multiply(1.25)

    gumbel = jnp.asarray(np.random.default_rng(2).gumbel(size=(6000, 3, 3)))
    sample = lambda g: (
        solve_autoregressive(
            lambda x, g: jnp.argmax(off_logits(x) + g, axis=-1).astype(jnp.int32),
            jnp.zeros(3, jnp.int32),
            g,
            method="sequential",
        ).states
    )
    assert _chi_square_p(jax.jit(jax.vmap(sample))(gumbel), probs) < 1e-3


def test_consistency_loss_is_the_mean_cross_entropy(key):
    model = _toy_transformer(key)
    forward = jax.jit(lambda t: model(t))
    context = jnp.array([3, 1, 4], jnp.int32)
    states = jnp.asarray(np.random.default_rng(0).integers(0, 11, (5, 6)))
    target = jnp.array([2, 7, 1, 8, 2, 8], jnp.int32)
    expected = []
    for state in np.asarray(states):
        log_p = jax.nn.log_softmax(forward(jnp.concatenate([context, jnp.asarray(state)])), axis=-1)
        expected += [-float(log_p[2 + i, target[i]]) for i in range(6)]
    loss = jax.jit(lambda s: consistency_loss(model, context, s, target))(states)
    np.testing.assert_allclose(float(loss), np.mean(expected), rtol=1e-10)
    with pytest.raises(ValueError, match="states must have shape"):
        consistency_loss(model, context, states[0], target)


def test_bad_decoding_input_is_named(key):
    model = _toy_transformer(key)
    with pytest.raises(ValueError, match="multiple of block_size"):
        jacobi_decode(model, jnp.array([1, 2], jnp.int32), 10, block_size=4)
    with pytest.raises(ValueError, match="integer tokens"):
        jacobi_decode(model, jnp.array([1.0, 2.0]), 8, block_size=4)
    with pytest.raises(ValueError, match=r"draft returns logits of shape \(10, 5\)"):
        draft = lambda tokens: jnp.ones((tokens.shape[0], 5))
        jacobi_decode(model, jnp.array([1, 2], jnp.int32), 8, block_size=4, draft=draft)
    with pytest.raises(ValueError, match=r"expected \(5, 3\)"):
        speculative_jacobi_sample(lambda t: jnp.zeros((5, 4)), key, 5, 3)


@pytest.mark.slow
def test_consistency_training_cuts_jacobi_iterations_and_keeps_greedy_outputs(key):
    model = _toy_transformer(key)
    prompts = jnp.asarray(np.random.default_rng(0).integers(0, 11, (32, 4)))
    decode = eqx.filter_jit(
        lambda m: jax.vmap(lambda p: jacobi_decode(m, p, 8, block_size=8, return_iterates=True))(
            prompts
        )
    )
    before = decode(model)
    states, fixed = before.iterates[:, 0], before.tokens

    def loss(m):
        per = jax.vmap(lambda c, s, f: consistency_loss(m, c, s, f))(prompts, states, fixed)
        return jnp.mean(per)

    optimizer = optax.adam(3e-3)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def update(m, opt_state):
        grads = eqx.filter_grad(loss)(m)
        updates, opt_state = optimizer.update(grads, opt_state)
        return eqx.apply_updates(m, updates), opt_state

    tuned = model
    for _ in range(150):
        tuned, opt_state = update(tuned, opt_state)
    after = decode(tuned)
    np.testing.assert_array_equal(after.tokens, before.tokens)  # greedy outputs kept
    assert float(jnp.mean(after.iterations)) < float(jnp.mean(before.iterations)) - 1


@pytest.mark.slow
def test_jacobi_decoding_with_a_draft_is_exactly_greedy_for_the_model(key):
    k_model, k_draft = jax.random.split(key)
    model, other = _toy_transformer(k_model), _toy_transformer(k_draft)
    prompt = jnp.array([1, 2, 3, 4], jnp.int32)
    expected = _greedy_reference(model, prompt, 16)
    assert not np.array_equal(_greedy_reference(other, prompt, 16), expected)

    # an oracle draft that predicts the greedy continuation whatever it is shown
    rows = jnp.zeros((20, 11)).at[3 + jnp.arange(16), jnp.asarray(expected)].set(1.0)
    oracle = lambda tokens: rows[: tokens.shape[0]]

    @jax.jit
    def run(prompt):
        out = {
            (name, m): jacobi_decode(model, prompt, 16, block_size=8, method=m, window=4, draft=d)
            for name, d in (("other", other), ("oracle", oracle), ("itself", model))
            for m in AR_METHODS
        }
        return out, jacobi_decode(model, prompt, 16, block_size=8)

    results, plain = run(prompt)
    for (name, method), res in results.items():
        np.testing.assert_array_equal(res.tokens, expected, err_msg=f"{name} {method}")
        assert np.all(np.asarray(res.converged)) and np.all(res.iterations <= 8), (name, method)
    # the model as its own draft is plain Jacobi decoding; an oracle needs one pass to
    # propose the block and one to verify it
    np.testing.assert_array_equal(results["itself", "jacobi"].iterations, plain.iterations)
    assert np.all(np.asarray(results["oracle", "jacobi"].iterations) <= 2)
    assert int(jnp.sum(plain.iterations)) > int(jnp.sum(results["oracle", "jacobi"].iterations))
