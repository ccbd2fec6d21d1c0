"""Speculative Jacobi sampling: parallel sampling with the exact sequence distribution."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class SpeculativeSample(NamedTuple):
    """The result of `speculative_jacobi_sample`.

    **Fields:**

    - `tokens`: `(T,)` the sample.
    - `iterations`: forward passes used (sequential sampling needs T).
    - `accepted`: how many of the T tokens were accepted drafts (the others were drawn
      from a residual distribution at a rejection).
    """

    tokens: jax.Array
    iterations: jax.Array
    accepted: jax.Array


def speculative_jacobi_sample(
    logits_fn: Callable, key: jax.Array, length: int, vocab_size: int
) -> SpeculativeSample:
    r"""Sample x ~ p(x) = prod_t p(x_t | x_{<t}) with Jacobi passes and speculative checks.

    Every pass evaluates all conditionals p_t = p(. | x_{<t}) of the current draft at
    once. From the first position not yet fixed, draft x_t (drawn earlier from a
    recorded distribution q_t) is accepted with probability min(1, p_t(x_t) / q_t(x_t));
    at the first rejection x_t is drawn from norm(max(0, p_t - q_t)) and fixed, and
    every later position is redrawn from its current p_t, which becomes its q_t (Teng
    et al. 2024; the acceptance rule of Leviathan, Kalman & Matias 2023, and of Chen et
    al. 2023). The first drafts are uniform.

    Each accepted or resampled token is distributed exactly as p(. | fixed prefix), so
    the whole sequence is distributed exactly as sequential ancestral sampling's; each
    pass fixes at least one position, so at most T passes are needed.

    **Arguments:**

    - `logits_fn`: `tokens (T,) -> logits (T, V)`, causal: row t are the logits of
      token t given `tokens[:t]` (wrap a prompt into it).
    - `key`: a `jax.random` key.
    - `length`: T.
    - `vocab_size`: V.

    **Returns:** a `SpeculativeSample`. Jit- and vmap-compatible (vmap over keys draws
    independent samples).

    Citation: Teng et al., "Accelerating auto-regressive text-to-image generation with
    training-free speculative Jacobi decoding", preprint, 2024.

    Citation: Leviathan, Kalman & Matias, "Fast Inference from Transformers via
    Speculative Decoding", ICML, 2023.
    """
    if length < 1 or vocab_size < 1:
        raise ValueError(f"length and vocab_size must be positive, received {length}, {vocab_size}")
    out = jax.eval_shape(logits_fn, jax.ShapeDtypeStruct((length,), jnp.int32))
    if out.shape != (length, vocab_size):
        raise ValueError(
            f"logits_fn maps tokens ({length},) to shape {out.shape}, expected "
            f"({length}, {vocab_size})"
        )
    positions = jnp.arange(length)
    size = length + (length + 1) * vocab_size

    def randomness(k):
        """Pass k's T uniforms and (T + 1) x V Gumbel variables, from one draw."""
        u = jax.random.uniform(jax.random.fold_in(key, k), (size,))
        return u[:length], -jnp.log(-jnp.log(u[length:])).reshape(length + 1, vocab_size)

    tokens0 = jnp.argmax(randomness(length)[1][:length], axis=-1)  # uniform drafts
    draft0 = jnp.full((length, vocab_size), 1.0 / vocab_size)

    def cond(carry):
        k, _, _, start, _ = carry
        return (start < length) & (k < length)

    def body(carry):
        k, tokens, draft, start, accepted = carry
        uniform, gumbel = randomness(k)
        log_p = jax.nn.log_softmax(logits_fn(tokens), axis=-1)
        p = jnp.exp(log_p)
        p_x = jnp.take_along_axis(p, tokens[:, None], axis=1)[:, 0]
        q_x = jnp.take_along_axis(draft, tokens[:, None], axis=1)[:, 0]
        ok = (uniform * q_x < p_x) | (positions < start)
        reject = jnp.where(jnp.all(ok), length, jnp.argmin(ok))
        at = jnp.minimum(reject, length - 1)
        residual = jnp.maximum(p[at] - draft[at], 0.0)
        residual = jnp.where(jnp.sum(residual) > 0, residual, p[at])
        resampled = jnp.argmax(jnp.log(residual) + gumbel[length])  # Gumbel-max sampling
        redrawn = jnp.argmax(log_p + gumbel[:length], axis=-1)
        tokens = jnp.where(
            positions < reject, tokens, jnp.where(positions == reject, resampled, redrawn)
        )
        draft = jnp.where((positions > reject)[:, None], p, draft)
        accepted = accepted + (reject - start).astype(jnp.int32)
        following = jnp.minimum(reject + 1, length).astype(jnp.int32)
        return k + 1, tokens, draft, following, accepted

    zero = jnp.asarray(0, jnp.int32)
    k, tokens, _, _, accepted = jax.lax.while_loop(cond, body, (zero, tokens0, draft0, zero, zero))
    return SpeculativeSample(tokens, k, accepted)
