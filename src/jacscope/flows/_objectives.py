"""The training objective of a continuous normalising flow: maximum likelihood, plain or
with one of its regularisers.

One shared copy of the loss that `jacscope flow`, benchmarks/flows.py and
examples/plot_cnf_regularisers.py train by: the mean negative log-likelihood of a batch
(exact divergence), plus `weight` times RNODE's kinetic energy and Jacobian Frobenius
penalties (Finlay et al. 2020) or the local-error regulariser's step estimate (Pal et
al. 2023).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from jacscope.flows._cnf import cnf_log_density
from jacscope.flows._field import concat_field
from jacscope.flows._local_error import local_error

REGULARISERS = ("none", "rnode", "local-error")
"""The regularisers `maximum_likelihood_loss` knows."""


def maximum_likelihood_loss(
    params: Any,
    x: jax.Array,
    key: jax.Array,
    *,
    regulariser: str = "none",
    field: Callable[[Any, jax.Array, Any], jax.Array] = concat_field,
    weight: float = 0.05,
) -> jax.Array:
    """The maximum-likelihood loss of a flow dz/dt = field(t, z, params) on a batch.

    -mean log p(x) over the batch `x` (`(B, d)`, exact divergence), plus, for
    `regulariser="rnode"`, `weight` (mean kinetic energy + mean Jacobian Frobenius
    integral), or for `"local-error"`, `weight` times the mean of `local_error`'s step
    estimate (one key per point, split from `key`); `"none"` adds nothing.

    **Raises:** `ValueError` for an unknown `regulariser`.
    """
    if regulariser not in REGULARISERS:
        raise ValueError(
            f"regulariser must be one of {', '.join(REGULARISERS)}; received {regulariser!r}"
        )
    runs = jax.vmap(lambda x: cnf_log_density(field, params, x, penalties=True))(x)
    value = -runs.log_density.mean()
    if regulariser == "rnode":
        value += weight * (runs.kinetic_energy.mean() + runs.jacobian_frobenius.mean())
    elif regulariser == "local-error":
        keys = jax.random.split(key, x.shape[0])
        local = jax.vmap(lambda x, k: local_error(field, params, x, key=k))(x, keys)
        value += weight * local.steps.mean()
    return value
