"""Mean, Sum, Constant and Random: weightings that ignore the conflicts."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jacscope.descent._checks import check_gramian, check_matrix, check_weights


def mean_weights(G: jax.Array) -> jax.Array:
    """Weights `1/m` each: the average of the gradients.

    **Arguments:**

    - `G`: `(m, m)` Gramian (only its size is read).

    **Returns:** `(m,)` weights.

    **Raises:** `ValueError` for a `G` that is not square or non-finite.
    """
    G = check_gramian(G, "mean_weights")
    return jnp.full((G.shape[0],), 1 / G.shape[0], G.dtype)


def mean(J: jax.Array) -> jax.Array:
    """The average of the rows of J.

    **Arguments:**

    - `J`: `(m, n)` Jacobian.

    **Returns:** the `(n,)` mean row.

    **Raises:** `ValueError` for a `J` that is not a non-empty matrix or non-finite.
    """
    J = check_matrix(J, "mean")
    return jnp.mean(J, axis=0)


def sum_weights(G: jax.Array) -> jax.Array:
    """Weights `1` each: the sum of the gradients.

    **Arguments:**

    - `G`: `(m, m)` Gramian (only its size is read).

    **Returns:** `(m,)` weights.

    **Raises:** `ValueError` for a `G` that is not square or non-finite.
    """
    G = check_gramian(G, "sum_weights")
    return jnp.ones((G.shape[0],), G.dtype)


def sum_rows(J: jax.Array) -> jax.Array:
    """The sum of the rows of J (the Sum aggregator; named so as not to hide `sum`).

    **Arguments:**

    - `J`: `(m, n)` Jacobian.

    **Returns:** the `(n,)` sum of the rows.

    **Raises:** `ValueError` for a `J` that is not a non-empty matrix or non-finite.
    """
    J = check_matrix(J, "sum_rows")
    return jnp.sum(J, axis=0)


def constant_weights(G: jax.Array, weights: jax.Array) -> jax.Array:
    """Fixed weights, whatever the Gramian.

    **Arguments:**

    - `G`: `(m, m)` Gramian (only its size is read).
    - `weights`: `(m,)` the weights.

    **Returns:** `weights`, in G's dtype.

    **Raises:** `ValueError` for a `G` that is not square or non-finite, or `weights`
    not of shape `(m,)`.
    """
    G = check_gramian(G, "constant_weights")
    return check_weights(weights, G.shape[0], "weights", "constant_weights").astype(G.dtype)


def constant(J: jax.Array, weights: jax.Array) -> jax.Array:
    """`weights^T J`: a fixed combination of the rows.

    **Arguments:**

    - `J`: `(m, n)` Jacobian.
    - `weights`: `(m,)` the weights.

    **Returns:** the `(n,)` combination.

    **Raises:** `ValueError` for a `J` that is not a non-empty matrix or non-finite, or
    `weights` not of shape `(m,)`.
    """
    J = check_matrix(J, "constant")
    return check_weights(weights, J.shape[0], "weights", "constant").astype(J.dtype) @ J


def random_weights(G: jax.Array, key: jax.Array) -> jax.Array:
    """Random weights softmax(z), z standard normal (Random Loss Weighting).

    **Arguments:**

    - `G`: `(m, m)` Gramian (only its size is read).
    - `key`: a PRNG key.

    **Returns:** `(m,)` positive weights summing to 1.

    **Raises:** `ValueError` for a `G` that is not square or non-finite.

    Citation: Lin, Ye, Xu, Shi & Zhang, "Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task Learning", TMLR 2022.
    """  # noqa: E501
    G = check_gramian(G, "random_weights")
    return jax.nn.softmax(jax.random.normal(key, (G.shape[0],), G.dtype))


def random(J: jax.Array, key: jax.Array) -> jax.Array:
    """`w^T J` with w = `random_weights(J J^T, key)`.

    **Arguments:**

    - `J`: `(m, n)` Jacobian.
    - `key`: a PRNG key.

    **Returns:** the `(n,)` combination.

    **Raises:** `ValueError` for a `J` that is not a non-empty matrix or non-finite.

    Citation: Lin, Ye, Xu, Shi & Zhang, "Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task Learning", TMLR 2022.
    """  # noqa: E501
    J = check_matrix(J, "random")
    return jax.nn.softmax(jax.random.normal(key, (J.shape[0],), J.dtype)) @ J
