"""MADE: an autoregressive model of binary vectors whose conditionals share one pass."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp


class MADE(eqx.Module):
    r"""A masked autoencoder for distribution estimation (Germain, Gregor, Murray &
    Larochelle 2015) over D binary variables in their natural order.

    One hidden layer of H ReLU units with degrees m_k = 1 + (k mod (D - 1)), masked so
    that logit_d depends only on x_0, ..., x_{d-1}, plus a strictly lower-triangular
    direct connection:
    logit = (W_out * M_out) relu((W_in * M_in) x + b_in) + (W_dir * M_dir) x + b_out,
    M_in[k, d] = [m_k >= d + 1], M_out[d, k] = [d + 1 > m_k], M_dir[d, e] = [d > e].
    p(x) = prod_d Bernoulli(x_d; sigmoid(logit_d)).

    The masks are rebuilt from the static sizes at each call, so the module's arrays are
    exactly its trainable parameters.

    **Arguments:**

    - `num_inputs`: D >= 2.
    - `hidden`: H.
    - `key`: a `jax.random` key for the initial weights (scaled normal, zero biases).

    Citation: Germain, Gregor, Murray & Larochelle, "MADE: Masked Autoencoder for
    Distribution Estimation", arXiv 1502.03509.
    """

    w_in: jax.Array
    b_in: jax.Array
    w_out: jax.Array
    w_direct: jax.Array
    b_out: jax.Array
    num_inputs: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)

    def __init__(self, num_inputs: int, hidden: int, *, key: jax.Array):
        if num_inputs < 2 or hidden < 1:
            raise ValueError(
                f"MADE needs num_inputs >= 2 and hidden >= 1, received {num_inputs}, {hidden}"
            )
        k_in, k_out, k_dir = jax.random.split(key, 3)
        self.w_in = jax.random.normal(k_in, (hidden, num_inputs)) / jnp.sqrt(num_inputs)
        self.b_in = jnp.zeros((hidden,))
        self.w_out = jax.random.normal(k_out, (num_inputs, hidden)) / jnp.sqrt(hidden)
        self.w_direct = jax.random.normal(k_dir, (num_inputs, num_inputs)) / jnp.sqrt(num_inputs)
        self.b_out = jnp.zeros((num_inputs,))
        self.num_inputs = num_inputs
        self.hidden = hidden

    def _masks(self):
        degrees = 1 + jnp.arange(self.hidden) % (self.num_inputs - 1)
        position = 1 + jnp.arange(self.num_inputs)
        mask_in = degrees[:, None] >= position[None, :]
        mask_out = position[:, None] > degrees[None, :]
        mask_direct = position[:, None] > position[None, :]
        return mask_in, mask_out, mask_direct

    def logits(self, x: jax.Array) -> jax.Array:
        """The D conditional logits of a binary vector `x` (D,), in one pass."""
        mask_in, mask_out, mask_direct = self._masks()
        x = jnp.asarray(x, self.w_in.dtype)
        hidden = jax.nn.relu((self.w_in * mask_in) @ x + self.b_in)
        return (self.w_out * mask_out) @ hidden + (self.w_direct * mask_direct) @ x + self.b_out

    def log_prob(self, x: jax.Array) -> jax.Array:
        """log p(x) for a binary vector `x` (D,)."""
        logit = self.logits(x)
        x = jnp.asarray(x, logit.dtype)
        return jnp.sum(x * jax.nn.log_sigmoid(logit) + (1 - x) * jax.nn.log_sigmoid(-logit))

    def sampling_map(self, x: jax.Array, u: jax.Array) -> jax.Array:
        """The causal map of sampling with pre-drawn uniforms u (D,):
        x_d = [u_d < sigmoid(logit_d(x_{<d}))], returned in the dtype of `x`.

        Its fixed point is the sample that sequential ancestral sampling draws with the
        same uniforms; pass it to `solve_autoregressive`.
        """
        return (u < jax.nn.sigmoid(self.logits(x))).astype(jnp.asarray(x).dtype)
