"""Penalties on the input Jacobian of a network, for any optax training loop.

`jacobian_frobenius_penalty` (Jacobian regularisation, Hoffman et al. 2019),
`jacobian_spectral_penalty` (power iteration carried across steps) and
`nuclear_norm_penalty` (Scarvelis & Solomon 2024) are pure functions of
`(f, params, x, ...)`: `jax.jit`-able, differentiable in `params`, each with an exact
mode. `lazy_penalty` applies any of them on every k-th step only, k times as strong.
"""

from jacscope.penalties._frobenius import (
    jacobian_frobenius_penalty as jacobian_frobenius_penalty,
)
from jacscope.penalties._lazy import lazy_penalty as lazy_penalty
from jacscope.penalties._nuclear import nuclear_norm_penalty as nuclear_norm_penalty
from jacscope.penalties._spectral import SpectralPenalty as SpectralPenalty
from jacscope.penalties._spectral import jacobian_spectral_penalty as jacobian_spectral_penalty
