"""A small decoder-only transformer: the causal model of the decoding experiments."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp


class _Block(eqx.Module):
    norm_attention: eqx.nn.LayerNorm
    attention: eqx.nn.MultiheadAttention
    norm_mlp: eqx.nn.LayerNorm
    expand: eqx.nn.Linear
    contract: eqx.nn.Linear

    def __init__(self, width: int, heads: int, *, key: jax.Array):
        k_att, k_up, k_down = jax.random.split(key, 3)
        self.norm_attention = eqx.nn.LayerNorm(width)
        self.attention = eqx.nn.MultiheadAttention(heads, width, key=k_att)
        self.norm_mlp = eqx.nn.LayerNorm(width)
        self.expand = eqx.nn.Linear(width, 4 * width, key=k_up)
        self.contract = eqx.nn.Linear(4 * width, width, key=k_down)

    def __call__(self, h: jax.Array) -> jax.Array:
        length = h.shape[0]
        causal = jnp.tril(jnp.ones((length, length), bool))
        normed = jax.vmap(self.norm_attention)(h)
        h = h + self.attention(normed, normed, normed, mask=causal)
        normed = jax.vmap(self.norm_mlp)(h)
        return h + jax.vmap(lambda z: self.contract(jax.nn.gelu(self.expand(z))))(normed)


class CausalTransformer(eqx.Module):
    """A pre-norm decoder-only transformer over tokens (Vaswani et al., 2017; Radford et
    al., 2019): token and learned position embeddings, `depth` blocks of causal
    multi-head self-attention and a GELU MLP, a final layer norm and a linear read-out.

    Calling it on tokens (L,) with L <= `max_len` returns logits (L, vocab_size); row t
    is the distribution of token t + 1 given tokens 0, ..., t, so each row depends on
    the tokens up to its own position only.

    **Arguments:**

    - `vocab_size`, `max_len`: the token alphabet and the longest sequence.
    - `width`, `depth`, `heads`: model width, number of blocks, attention heads.
    - `key`: a `jax.random` key for the initial weights.
    """

    embed: eqx.nn.Embedding
    position: jax.Array
    blocks: tuple[_Block, ...]
    norm: eqx.nn.LayerNorm
    unembed: eqx.nn.Linear
    max_len: int = eqx.field(static=True)

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        width: int = 64,
        depth: int = 2,
        heads: int = 4,
        *,
        key: jax.Array,
    ):
        k_emb, k_pos, k_out, *k_blocks = jax.random.split(key, 3 + depth)
        self.embed = eqx.nn.Embedding(vocab_size, width, key=k_emb)
        self.position = 0.02 * jax.random.normal(k_pos, (max_len, width))
        self.blocks = tuple(_Block(width, heads, key=k) for k in k_blocks)
        self.norm = eqx.nn.LayerNorm(width)
        self.unembed = eqx.nn.Linear(width, vocab_size, key=k_out)
        self.max_len = max_len

    def __call__(self, tokens: jax.Array) -> jax.Array:
        length = tokens.shape[0]
        if length > self.max_len:
            raise ValueError(f"tokens of length {length} exceed max_len={self.max_len}")
        h = jax.vmap(self.embed)(tokens) + self.position[:length]
        for block in self.blocks:
            h = block(h)
        return jax.vmap(lambda z: self.unembed(self.norm(z)))(h)
