"""Greedy Jacobi decoding of a causal language model, block by block."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jacscope.parallel._autoregressive import solve_autoregressive


class JacobiDecoding(NamedTuple):
    """The result of `jacobi_decode`.

    **Fields:**

    - `tokens`: `(num_tokens,)` the continuation of the prompt.
    - `iterations`: `(num_blocks,)` iterations each block took (verifying pass counted).
    - `converged`: `(num_blocks,)` whether each block is certified greedy.
    - `forward_passes`: the model evaluations on the critical path, all blocks together
      (greedy decoding needs `num_tokens`); tokens per pass = num_tokens / this. With
      a `draft`, each pass evaluates the model and the draft, independently, on the
      same tokens.
    - `iterates`: `None`, or `(num_blocks, cap + 1, block_size)` each block's Jacobi
      trajectory (the states consistency training learns from).
    """

    tokens: jax.Array
    iterations: jax.Array
    converged: jax.Array
    forward_passes: jax.Array
    iterates: Any = None


def jacobi_decode(
    logits_fn: Callable,
    prompt: jax.Array,
    num_tokens: int,
    *,
    block_size: int,
    method: str = "jacobi",
    window: int | None = None,
    max_iter: int | None = None,
    draft: Callable | None = None,
    return_iterates: bool = False,
) -> JacobiDecoding:
    r"""Greedy decoding, y_t = argmax_v logits(prompt, y_{<t})_v, by fixed-point iteration.

    The continuation is produced in blocks of `block_size` tokens. Within a block the n
    equations y_i = argmax logits(prompt, y_{<block}, y_{<i}) are solved together by
    `solve_autoregressive` (Jacobi decoding: Santilli et al. 2023; CLLMs: Kou, Hu, He, Deng
    & Zhang 2024): each iteration is one
    forward pass over the whole sequence, and the block is exactly greedy once an
    iteration changes nothing, or after `block_size` iterations at most. The starting
    guess repeats the last known token. `method="sequential"` is greedy decoding itself.

    With a `draft` model (for instance a copy fine-tuned with `consistency_loss`), each
    pass also evaluates the draft on the same tokens, and position i of the next iterate
    is the model's greedy token a_i where the iterate already agrees with a_j at every
    j < i (the verified prefix and the one token after it), the draft's greedy token
    beyond. This map is causal, and its only fixed point is the model's greedy
    continuation, so the result is exactly greedy for `logits_fn` whatever the draft
    predicts; the draft only decides how fast the iteration gets there (each pass still
    fixes at least one more token). This is the verification of speculative decoding
    (Leviathan, Kalman & Matias 2023) applied to Jacobi iterates.

    **Arguments:**

    - `logits_fn`: `tokens (L,) -> logits (L, V)`, causal: row t predicts token t + 1.
      It is called on sequences of length `len(prompt) + num_tokens`.
    - `prompt`: `(P,)` integer tokens, P >= 1.
    - `num_tokens`: how many tokens to generate, a multiple of `block_size`.
    - `block_size`: n, tokens per Jacobi block.
    - `method`, `window`, `max_iter`: passed to `solve_autoregressive` for each block.
    - `draft`: `None`, or a causal `tokens (L,) -> logits (L, V)` over the same
      tokens, whose greedy tokens fill the positions past the verified prefix.
    - `return_iterates`: also return each block's trajectory.

    **Returns:** a `JacobiDecoding`.

    Citation: Santilli et al., "Accelerating Transformer Inference for Translation via
    Parallel Decoding", ACL, 2023.

    Citation: Kou, Hu, He, Deng & Zhang, "CLLMs: Consistency Large Language Models",
    arXiv 2403.00858.

    Citation: Leviathan, Kalman & Matias, "Fast Inference from Transformers via
    Speculative Decoding", ICML, 2023.
    """
    prompt = jnp.asarray(prompt)
    if prompt.ndim != 1 or prompt.shape[0] < 1:
        raise ValueError(f"prompt must be a non-empty vector of tokens, received {prompt.shape}")
    if not jnp.issubdtype(prompt.dtype, jnp.integer):
        raise ValueError(f"prompt must hold integer tokens, received dtype {prompt.dtype}")
    if block_size < 1 or num_tokens < 1 or num_tokens % block_size:
        raise ValueError(
            f"num_tokens={num_tokens} must be a positive multiple of block_size={block_size}"
        )
    start0 = prompt.shape[0]
    buffer0 = jnp.concatenate([prompt, jnp.zeros((num_tokens,), prompt.dtype)])
    if draft is not None:
        expected, drafted = jax.eval_shape(logits_fn, buffer0), jax.eval_shape(draft, buffer0)
        if drafted.shape != expected.shape:
            raise ValueError(
                f"draft returns logits of shape {drafted.shape} for {buffer0.shape[0]} tokens, "
                f"the model {expected.shape}: they must share the vocabulary"
            )

    def decode_block(buffer, b):
        start = start0 + b * block_size

        def predict(fn, tokens):
            rows = jax.lax.dynamic_slice_in_dim(fn(tokens), start - 1, block_size)
            return jnp.argmax(rows, axis=-1).astype(buffer.dtype)

        def greedy(y, _):
            tokens = jax.lax.dynamic_update_slice(buffer, y, (start,))
            tokens_greedy = predict(logits_fn, tokens)
            if draft is None:
                return tokens_greedy
            agree = jnp.cumprod(y == tokens_greedy)
            verified = jnp.concatenate([jnp.ones((1,), bool), agree[:-1].astype(bool)])
            return jnp.where(verified, tokens_greedy, predict(draft, tokens))

        guess = jnp.full((block_size,), buffer[start - 1])
        sol = solve_autoregressive(
            greedy,
            guess,
            method=method,
            window=window,
            max_iter=max_iter,
            return_iterates=return_iterates,
        )
        buffer = jax.lax.dynamic_update_slice(buffer, sol.states, (start,))
        return buffer, (sol.iterations, sol.converged, sol.depth, sol.iterates)

    buffer, (iterations, converged, depth, iterates) = jax.lax.scan(
        decode_block, buffer0, jnp.arange(num_tokens // block_size)
    )
    return JacobiDecoding(buffer[start0:], iterations, converged, jnp.sum(depth), iterates)
