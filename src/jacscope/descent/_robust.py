"""Krum and the trimmed mean: aggregators robust to a few arbitrary rows."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jacscope._validation import check_count
from jacscope.descent._checks import check_gramian, check_matrix


def krum_weights(G: jax.Array, n_byzantine: int, n_selected: int = 1) -> jax.Array:
    r"""The weights of (multi-)Krum: the mean of the rows with the smallest scores.

    With squared distances D_ij = G_ii + G_jj - 2 G_ij, the score of row i is the sum
    of its distances ||g_i - g_j|| to its m - f - 2 nearest other rows (f =
    `n_byzantine`); the `n_selected` rows of smallest score get weight 1 / n_selected
    each (ties to the lower index).

    **Arguments:**

    - `G`: `(m, m)` Gramian J J^T, with m >= f + 3 and m >= `n_selected`.
    - `n_byzantine`: f >= 0, the number of arbitrary rows tolerated.
    - `n_selected`: how many rows are averaged (1: Krum).

    **Returns:** `(m,)` weights.

    **Raises:** `ValueError` for a `G` that is not square or non-finite, counts that
    are not integers, or too few rows.

    Citation: Blanchard, El Mhamdi, Guerraoui & Stainer, "Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017.
    """  # noqa: E501
    G = check_gramian(G, "krum_weights")
    f = check_count(n_byzantine, "n_byzantine", "krum_weights", minimum=0)
    s = check_count(n_selected, "n_selected", "krum_weights")
    m = G.shape[0]
    if m < f + 3 or m < s:
        raise ValueError(
            f"krum_weights: needs at least max(n_byzantine + 3, n_selected) ="
            f" {max(f + 3, s)} rows, got {m}"
        )
    norms = jnp.diagonal(G)
    distances = jnp.sqrt(jnp.clip(norms[:, None] + norms[None, :] - 2 * G, 0))
    nearest = jnp.sort(distances, axis=1)[:, 1 : m - f - 1]
    scores = jnp.sum(nearest, axis=1)
    chosen = jnp.argsort(scores, stable=True)[:s]
    return jnp.zeros((m,), G.dtype).at[chosen].set(1 / s)


def krum(J: jax.Array, n_byzantine: int, n_selected: int = 1) -> jax.Array:
    r"""(Multi-)Krum: w^T J with w = `krum_weights(J J^T, n_byzantine, n_selected)`.

    **Arguments:**

    - `J`: `(m, n)` Jacobian, one gradient per row.
    - `n_byzantine`, `n_selected`: as in `krum_weights`.

    **Returns:** the `(n,)` update direction.

    **Raises:** as `krum_weights`, and `ValueError` for a `J` that is not a non-empty
    matrix or non-finite.

    Citation: Blanchard, El Mhamdi, Guerraoui & Stainer, "Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017.
    """  # noqa: E501
    J = check_matrix(J, "krum")
    return krum_weights(J @ J.T, n_byzantine, n_selected) @ J


def trimmed_mean(J: jax.Array, trim_number: int) -> jax.Array:
    r"""The coordinate-wise trimmed mean: per column, drop the `trim_number` largest and
    smallest entries and average the rest (not a weighting of the Gramian).

    **Arguments:**

    - `J`: `(m, n)` Jacobian, with m >= 2 `trim_number` + 1.
    - `trim_number`: entries dropped at each end of every column.

    **Returns:** the `(n,)` trimmed mean.

    **Raises:** `ValueError` for a `J` that is not a non-empty matrix or non-finite, a
    `trim_number` that is not an integer >= 0, or too few rows.

    Citation: Yin, Chen, Ramchandran & Bartlett, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates", ICML 2018.
    """  # noqa: E501
    J = check_matrix(J, "trimmed_mean")
    t = check_count(trim_number, "trim_number", "trimmed_mean", minimum=0)
    m = J.shape[0]
    if m < 2 * t + 1:
        raise ValueError(
            f"trimmed_mean: needs at least 2 trim_number + 1 = {2 * t + 1} rows, got {m}"
        )
    return jnp.mean(jnp.sort(J, axis=0)[t : m - t], axis=0)
