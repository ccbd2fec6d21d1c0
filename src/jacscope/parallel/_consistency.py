"""The consistency loss that teaches a causal model to jump to its Jacobi fixed point."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def consistency_loss(
    logits_fn: Callable, context: jax.Array, states: jax.Array, fixed_point: jax.Array
) -> jax.Array:
    r"""Mean cross-entropy of the fixed point's tokens predicted from Jacobi states.

    For a block of n tokens decoded after `context` (P tokens), y* its greedy fixed
    point and y^(1), ..., y^(K) states on its Jacobi trajectory,

        L = (1 / (K n)) sum_k sum_i -log softmax(logits(context, y^(k)))_{P-1+i}[y*_i],

    the global consistency loss of CLLMs (Kou, Hu, He, Deng & Zhang 2024) with the
    teacher's greedy tokens as targets: it pulls the prediction made from any state
    towards the fixed point, so that later Jacobi iterations get there in fewer passes.
    Including y* itself among the states adds the autoregressive (distillation) term
    that keeps the greedy output in place.

    **Arguments:**

    - `logits_fn`: `tokens (P + n,) -> logits (P + n, V)`, causal.
    - `context`: `(P,)` tokens, P >= 1.
    - `states`: `(K, n)` token states.
    - `fixed_point`: `(n,)` target tokens.

    **Returns:** the scalar loss, differentiable in whatever `logits_fn` closes over.

    Citation: Kou, Hu, He, Deng & Zhang, "CLLMs: Consistency Large Language Models",
    arXiv 2403.00858.
    """
    context = jnp.asarray(context)
    states = jnp.asarray(states)
    fixed_point = jnp.asarray(fixed_point)
    if states.ndim != 2 or states.shape[1:] != fixed_point.shape or fixed_point.ndim != 1:
        raise ValueError(
            f"states must have shape (K, n) and fixed_point (n,); received {states.shape} "
            f"and {fixed_point.shape}"
        )
    if context.ndim != 1 or context.shape[0] < 1:
        raise ValueError(f"context must be a non-empty vector of tokens, received {context.shape}")
    start, size = context.shape[0], fixed_point.shape[0]

    def cross_entropy(state):
        logits = logits_fn(jnp.concatenate([context, state.astype(context.dtype)]))
        log_p = jax.nn.log_softmax(logits[start - 1 : start - 1 + size], axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_p, fixed_point[:, None], axis=1))

    return jnp.mean(jax.vmap(cross_entropy)(states))
