r"""CAGrad: the update that maximises the worst task's improvement near the mean gradient.

CAGrad looks for d maximising min_i g_i^T d subject to ||d - g_0|| <= c ||g_0||, with
g_0 the mean gradient. Its dual is a program over the probability simplex,

    min_{w in simplex}  F(w) = g_w^T g_0 + sqrt(phi) ||g_w||,
    g_w = J^T w,  sqrt(phi) = c ||g_0||,

whose solution gives d = g_0 + (sqrt(phi) / ||g_w||) g_w, i.e. the weights
1/m + (sqrt(phi) / ||g_w||) w. Everything is read off the Gramian: g_w^T g_0 =
w^T G 1 / m and ||g_w||^2 = w^T G w. F is convex with a bounded gradient, so projected
gradient steps (accelerated, with backtracking) converge; each iterate w also gives a
feasible d, so the duality gap F(w) - min_i g_i^T d bounds the error, and the loop (one
`lax.while_loop`) stops when it is within sqrt(machine epsilon) of F, or after 2,000
steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jacscope.descent._checks import check_gramian, check_matrix

_ITERATIONS = 2000


def project_to_simplex(v: jax.Array) -> jax.Array:
    """The Euclidean projection of v onto {w >= 0, sum w = 1} (the sort-based rule)."""
    m = v.shape[0]
    u = jnp.sort(v)[::-1]
    cumulative = jnp.cumsum(u) - 1
    index = jnp.arange(1, m + 1, dtype=v.dtype)
    count = jnp.sum(u - cumulative / index > 0)
    theta = cumulative[count - 1] / count.astype(v.dtype)
    return jnp.maximum(v - theta, 0)


def _cagrad_simplex_weights(Gn, sqrt_phi, tol):
    """The simplex weights w of the dual program, by accelerated projected gradient
    (FISTA with backtracking and restarts), stopped when the duality gap
    F(w) - min_i (G d(w))_i, which bounds the error of F(w), is within `tol` of F."""
    m = Gn.shape[0]
    a = Gn @ jnp.full((m,), 1 / m, Gn.dtype)
    tiny = jnp.finfo(Gn.dtype).tiny

    def norm_of(w):
        return jnp.sqrt(jnp.maximum(w @ Gn @ w, 0))

    def objective(w):
        return a @ w + sqrt_phi * norm_of(w)

    def gradient(w):
        return a + sqrt_phi * (Gn @ w) / jnp.maximum(norm_of(w), tiny)

    def gap(w):
        # d = g_0 + sqrt(phi) g_w / ||g_w|| is feasible, and F's gradient at w is
        # (g_i^T d)_i: min_i g_i^T d <= optimum <= F(w).
        return objective(w) - jnp.min(gradient(w))

    def step(state):
        w, y, momentum, size, count, _ = state
        fy, g = objective(y), gradient(y)

        def candidate(size):
            return project_to_simplex(y - size * g)

        def insufficient(size):
            move = candidate(size) - y
            bound = fy + g @ move + move @ move / (2 * size)
            return (objective(y + move) > bound) & (size > 1e-12)

        size = jax.lax.while_loop(insufficient, lambda size: size / 2, size)
        w_new = candidate(size)
        restart = objective(w_new) > objective(w)
        following = (1 + jnp.sqrt(1 + 4 * momentum**2)) / 2
        y_new = jnp.where(restart, w_new, w_new + (momentum - 1) / following * (w_new - w))
        momentum = jnp.where(restart, 1.0, following)
        return w_new, y_new, momentum, 2 * size, count + 1, gap(w_new)

    def unfinished(state):
        w, _, _, _, count, current_gap = state
        return (count < _ITERATIONS) & (current_gap > tol * jnp.abs(objective(w)) + tiny)

    w0 = jnp.full((m,), 1 / m, Gn.dtype)
    one = jnp.array(1.0, Gn.dtype)
    state = jax.lax.while_loop(unfinished, step, (w0, w0, one, one, 0, gap(w0)))
    return state[0]


def cagrad_weights(G: jax.Array, c: float = 0.5, *, norm_eps: float = 1e-4) -> jax.Array:
    r"""The weights of CAGrad: 1/m + (sqrt(phi) / ||g_w||) w, w solving the dual program.

    The program (see the module) is solved on G / tr(G), as in TorchJD; the weights are
    invariant to that scaling. When ||g_w|| < `norm_eps` (in those units: the mean
    gradient is already a Pareto-stationary combination) the weights are zero.

    **Arguments:**

    - `G`: `(m, m)` Gramian J J^T.
    - `c`: the radius of the ball around g_0, in units of ||g_0|| (c = 0: the mean).
    - `norm_eps`: below this ||g_w|| the point is treated as Pareto-stationary.

    **Returns:** `(m,)` weights.

    **Raises:** `ValueError` for a `G` that is not square or non-finite, or `c < 0`.

    Citation: Liu, Liu, Jin, Stone & Liu, "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021.
    """  # noqa: E501
    G = check_gramian(G, "cagrad_weights")
    if not c >= 0:
        raise ValueError(f"cagrad_weights: c must be >= 0, got {c}")
    m = G.shape[0]
    trace = jnp.trace(G)
    Gn = G / jnp.where(trace > 0, trace, 1)
    mean = jnp.full((m,), 1 / m, G.dtype)
    sqrt_phi = c * jnp.sqrt(jnp.maximum(mean @ Gn @ mean, 0))
    tol = jnp.sqrt(jnp.finfo(G.dtype).eps)
    w = _cagrad_simplex_weights(Gn, sqrt_phi, tol)
    norm = jnp.sqrt(jnp.maximum(w @ Gn @ w, 0))
    ok = (norm >= norm_eps) & (trace > 0)
    return jnp.where(ok, mean + sqrt_phi / jnp.where(ok, norm, 1) * w, 0)


def cagrad(J: jax.Array, c: float = 0.5, *, norm_eps: float = 1e-4) -> jax.Array:
    r"""CAGrad: w^T J with w = `cagrad_weights(J J^T, c)`.

    **Arguments:**

    - `J`: `(m, n)` Jacobian, one gradient per row.
    - `c`, `norm_eps`: as in `cagrad_weights`.

    **Returns:** the `(n,)` update direction.

    **Raises:** `ValueError` for a `J` that is not a non-empty matrix or non-finite, or
    `c < 0`.

    Citation: Liu, Liu, Jin, Stone & Liu, "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021.
    """  # noqa: E501
    J = check_matrix(J, "cagrad")
    return cagrad_weights(J @ J.T, c, norm_eps=norm_eps) @ J
