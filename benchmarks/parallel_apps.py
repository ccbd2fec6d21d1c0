"""Models for the parallel-evaluation benchmark, each trained from scratch here.

- `load_text`: the docstrings of the Python standard library (text that ships with
  Python), character level.
- `GRULanguageModel`: a character GRU, the recurrence s_t = step(s_{t-1}, x_t).
- `binarised_digits` / `train_made`: MADE on the scikit-learn digits at 4x4, 8x8 and
  16x16 pixels, binarised.
- `train_transformer`: a small causal transformer on the docstrings.
- `consistency_finetune`: CLLM-style consistency training of that transformer.

No weights are downloaded; `benchmarks/parallel.py` stores what it trains in its
output folder and reloads it on the next run.
"""

from __future__ import annotations

import ast
import pathlib
import string
import sysconfig
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jacscope.data import load_digits
from jacscope.parallel import MADE, CausalTransformer, consistency_loss, jacobi_decode

ALPHABET = "\n" + string.printable[:95]  # newline, digits, letters, punctuation, space


class Text(NamedTuple):
    """Character tokens of the standard library's docstrings, split 90/10 in file order."""

    train: np.ndarray
    test: np.ndarray
    alphabet: str

    def decode(self, tokens) -> str:
        return "".join(self.alphabet[int(t)] for t in np.asarray(tokens))


def stdlib_docstrings() -> str:
    """Every module, class and function docstring of the top-level standard library
    modules (`sysconfig.get_paths()["stdlib"]/*.py`), in file order."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(root.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    docs.append(doc)
    return "\n\n".join(docs)


def load_text() -> Text:
    """The docstrings as tokens over `ALPHABET` (other characters become "?")."""
    lookup = {c: i for i, c in enumerate(ALPHABET)}
    unknown = lookup["?"]
    tokens = np.array([lookup.get(c, unknown) for c in stdlib_docstrings()], np.int32)
    cut = int(0.9 * len(tokens))
    return Text(tokens[:cut], tokens[cut:], ALPHABET)


def windows(tokens: np.ndarray, rng: np.random.Generator, batch: int, length: int) -> np.ndarray:
    """`batch` random windows of `length` tokens."""
    starts = rng.integers(0, len(tokens) - length, batch)
    return np.stack([tokens[s : s + length] for s in starts])


class GaussianMADE(eqx.Module):
    """A masked autoregressive flow of one layer (Papamakarios, Pavlakou & Murray, 2017):
    x_d = mu_d(x_{<d}) + exp(alpha_d(x_{<d})) u_d with u ~ N(0, I), mu and alpha read
    from two MADEs. Sampling is sequential in d, a continuous autoregressive map."""

    mean: MADE
    log_scale: MADE

    def __init__(self, num_inputs: int, hidden: int, *, key):
        k_mean, k_scale = jax.random.split(key)
        self.mean = MADE(num_inputs, hidden, key=k_mean)
        self.log_scale = MADE(num_inputs, hidden, key=k_scale)

    def _alpha(self, x):
        return 3.0 * jnp.tanh(self.log_scale.logits(x) / 3.0)  # |alpha| < 3

    def log_prob(self, x):
        alpha = self._alpha(x)
        u = (x - self.mean.logits(x)) * jnp.exp(-alpha)
        return jnp.sum(jax.scipy.stats.norm.logpdf(u) - alpha)

    def sampling_map(self, x, u):
        """x -> mu(x) + exp(alpha(x)) u: causal, its fixed point is the sample of `u`."""
        return self.mean.logits(x) + jnp.exp(self._alpha(x)) * u


def dequantised_digits(side: int) -> tuple[np.ndarray, np.ndarray]:
    """`resized_digits` plus uniform noise of one grey level (1/16), as float32."""
    rng = np.random.default_rng(4)
    return tuple(
        (x + rng.uniform(0, 1 / 16, x.shape)).astype(np.float32) for x in resized_digits(side)
    )


def train_flow(x: np.ndarray, *, hidden=256, steps=1500, progress=None):
    model = GaussianMADE(x.shape[1], hidden, key=jax.random.key(5))
    rng = np.random.default_rng(5)
    return fit(
        model,
        lambda m, b: -jnp.mean(jax.vmap(m.log_prob)(b)),
        lambda i: x[rng.integers(0, len(x), 100)],
        steps,
        3e-3,
        progress,
    )


def fit(model, loss_fn: Callable, sample: Callable, steps: int, lr: float, progress=None):
    """AdamW with warm-up and cosine decay, gradients clipped at norm 1.

    `loss_fn(model, batch)`; `sample(step)` gives the batch of a step; `progress(i, loss)`
    is called every 25 steps. Returns the trained model and its loss curve.
    """
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, max(1, steps // 20), steps)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, 1e-4))
    state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def update(model, state, batch):
        loss, grads = eqx.filter_value_and_grad(loss_fn)(model, batch)
        updates, state = optimizer.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), state, loss

    losses = []
    for i in range(steps):
        model, state, loss = update(model, state, sample(i))
        losses.append(float(loss))
        if progress is not None and (i % 25 == 0 or i == steps - 1):
            progress(i + 1, losses[-1])
    return model, np.array(losses)


class GRULanguageModel(eqx.Module):
    """Character embedding -> GRU -> linear read-out of the next character."""

    embed: eqx.nn.Embedding
    cell: eqx.nn.GRUCell
    readout: eqx.nn.Linear

    def __init__(self, vocab: int, features: int, hidden: int, *, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.embed = eqx.nn.Embedding(vocab, features, key=k1)
        self.cell = eqx.nn.GRUCell(features, hidden, key=k2)
        self.readout = eqx.nn.Linear(hidden, vocab, key=k3)

    def step(self, h, x):
        """s_t = step(s_{t-1}, x_t) on embedded inputs x_t."""
        return self.cell(x, h)

    def inputs(self, tokens):
        return jax.vmap(self.embed)(tokens)

    def loss(self, batch):
        """Mean next-character cross-entropy over a batch of windows."""

        def one(tokens):
            h0 = jnp.zeros(self.cell.hidden_size)
            _, hs = jax.lax.scan(lambda h, x: (self.step(h, x),) * 2, h0, self.inputs(tokens[:-1]))
            logits = jax.vmap(self.readout)(hs)
            return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[1:]).mean()

        return jnp.mean(jax.vmap(one)(batch))


def train_gru(text: Text, *, steps=600, hidden=32, features=16, progress=None):
    model = GRULanguageModel(len(text.alphabet), features, hidden, key=jax.random.key(0))
    rng = np.random.default_rng(0)
    return fit(
        model,
        lambda m, b: m.loss(b),
        lambda i: windows(text.train, rng, 32, 129),
        steps,
        3e-3,
        progress,
    )


def resized_digits(side: int) -> tuple[np.ndarray, np.ndarray]:
    """The digits at `side` x `side` pixels (4: 2x2 means, 8: as is, 16: each pixel
    repeated 2x2), intensities in [0, 1]; arrays (N, side**2) for train and test."""
    data = load_digits()

    def resize(x):
        images = x.reshape(-1, 8, 8)
        if side == 4:
            images = images.reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4))
        elif side == 16:
            images = images.repeat(2, axis=1).repeat(2, axis=2)
        elif side != 8:
            raise ValueError(f"side must be 4, 8 or 16, received {side}")
        return images.reshape(len(x), -1)

    return resize(data.x_train), resize(data.x_test)


def binarised_digits(side: int) -> tuple[np.ndarray, np.ndarray]:
    """`resized_digits` thresholded at 0.5, as int32."""
    return tuple((x > 0.5).astype(np.int32) for x in resized_digits(side))


def made_nll(model: MADE, x) -> jax.Array:
    """Mean negative log-likelihood (nats per image)."""
    return -jnp.mean(jax.vmap(model.log_prob)(x))


def train_made(x: np.ndarray, *, hidden=500, steps=1500, progress=None):
    model = MADE(x.shape[1], hidden, key=jax.random.key(1))
    rng = np.random.default_rng(1)
    return fit(
        model,
        made_nll,
        lambda i: x[rng.integers(0, len(x), 100)],
        steps,
        3e-3,
        progress,
    )


def transformer(text: Text, context: int = 96) -> CausalTransformer:
    """The untrained character transformer (width 64, 2 blocks, 4 heads)."""
    return CausalTransformer(
        len(text.alphabet), context, width=64, depth=2, heads=4, key=jax.random.key(2)
    )


def train_transformer(text: Text, *, steps=1500, progress=None):
    model = transformer(text)
    context = model.max_len
    rng = np.random.default_rng(2)

    def loss(model, batch):
        logits = jax.vmap(model)(batch[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()

    return fit(
        model, loss, lambda i: windows(text.train, rng, 32, context + 1), steps, 3e-3, progress
    )


class Trajectories(NamedTuple):
    """Jacobi trajectories of one block position for many prompts."""

    contexts: np.ndarray  # (N, P + b * n)
    states: np.ndarray  # (N, n + 1, n): the iterates, guess first
    fixed_points: np.ndarray  # (N, n)


def jacobi_trajectories(model, prompts, num_tokens: int, block: int) -> list[Trajectories]:
    """Greedy Jacobi decoding of every prompt, with each block's trajectory."""
    decode = jax.jit(
        jax.vmap(
            lambda p: jacobi_decode(model, p, num_tokens, block_size=block, return_iterates=True)
        )
    )
    res = decode(jnp.asarray(prompts))
    tokens, iterates = np.asarray(res.tokens), np.asarray(res.iterates)
    out = []
    for b in range(num_tokens // block):
        contexts = np.concatenate([prompts, tokens[:, : b * block]], axis=1)
        out.append(Trajectories(contexts, iterates[:, b], tokens[:, b * block : (b + 1) * block]))
    return out


def consistency_finetune(
    model,
    trajectories: list[Trajectories],
    *,
    steps=800,
    lr=3e-3,
    batch=16,
    states_per_example=4,
    ar_weight=0.0,
    progress=None,
):
    """Minimise `jacscope.parallel.consistency_loss` over recorded Jacobi trajectories.

    Each step draws `batch` examples per block position and `states_per_example` of each
    example's iterates; the cross-entropy of the fixed point predicted from the fixed
    point itself (the autoregressive term of CLLMs, which holds a model's own greedy
    output in place) is added with weight `ar_weight`. The default trains a draft for
    `jacobi_decode(original, ..., draft=tuned)`, whose output is the original's greedy
    output whatever the draft does, so the consistency loss alone; with 400 steps at
    learning rate 3e-4 and `ar_weight=4` the tuned model decoding alone kept more of
    the original's outputs and cut fewer iterations (14.29 -> 12.73 per 16-character
    block on training prompts; 13.05 as a draft, against 8.99 with these defaults).
    """
    rng = np.random.default_rng(3)

    def loss(model, data):
        total = 0.0
        for contexts, states, fixed in data:

            def one(c, s, f):
                return consistency_loss(model, c, s, f) + ar_weight * consistency_loss(
                    model, c, f[None], f
                )

            total = total + jnp.mean(jax.vmap(one)(contexts, states, fixed))
        return total / len(data)

    def sample(i):
        picks = []
        for traj in trajectories:
            idx = rng.integers(0, len(traj.contexts), batch)
            rows = rng.integers(0, traj.states.shape[1], (batch, states_per_example))
            states = traj.states[idx[:, None], rows]
            picks.append((traj.contexts[idx], states, traj.fixed_points[idx]))
        return picks

    return fit(model, loss, sample, steps, lr, progress)
