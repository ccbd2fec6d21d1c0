r"""Nash-MTL and FairGrad: weights that balance the tasks' utilities.

Both look for weights w > 0 with (G w)_i = w_i^{-1/alpha} for every task i, G the
Gramian: alpha = 1 is the Nash bargaining solution (Nash-MTL), any alpha > 0 the
alpha-fair allocation (FairGrad). These are the stationarity conditions of the strictly
convex program

    min_{w > 0}  f(w) = 1/2 w^T G w - sum_i h(w_i),
    h(w) = log w (alpha = 1),  h(w) = w^{1 - 1/alpha} / (1 - 1/alpha) (otherwise),

(h is concave, so -h is convex), which damped Newton steps solve to machine precision in
a few tens of iterations, jittably and for any m. The papers solve it by sequential
convex programs (Nash-MTL) or least squares (FairGrad) on the CPU instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jacscope.descent._checks import check_gramian, check_matrix

_NEWTON_ITERATIONS = 100


def _utility(w, alpha):
    if alpha == 1:
        return jnp.log(w)
    return w ** (1 - 1 / alpha) / (1 - 1 / alpha)


def _objective(G, w, alpha):
    return 0.5 * w @ G @ w - jnp.sum(_utility(w, alpha))


def fair_solution(G: jax.Array, alpha: float, reg_eps: float) -> jax.Array:
    """The w > 0 with (G' w)_i = w_i^{-1/alpha}, G' = G / ||G||_F + reg_eps I."""
    m = G.shape[0]
    norm = jnp.linalg.norm(G)
    Gn = jnp.where(norm > 0, G / jnp.where(norm > 0, norm, 1), 0)
    Gn = Gn + reg_eps * jnp.eye(m, dtype=G.dtype)
    # The solution when G' is diagonal: d_i w_i = w_i^{-1/alpha}.
    w0 = jnp.diag(Gn) ** (-alpha / (alpha + 1))
    tiny = jnp.finfo(G.dtype).eps

    def newton(state):
        w, step, _ = state
        grad = Gn @ w - w ** (-1 / alpha)
        hess = Gn + jnp.diag(w ** (-1 / alpha - 1) / alpha)
        delta = -jnp.linalg.solve(hess, grad)
        # Stay inside w > 0 (fraction to the boundary), then halve until f decreases.
        shrink = jnp.where(delta < 0, -0.99 * w / jnp.where(delta < 0, delta, -1), jnp.inf)
        t0 = jnp.minimum(1.0, jnp.min(shrink))
        f0 = _objective(Gn, w, alpha)
        slope = grad @ delta

        def worse(t):
            return (_objective(Gn, w + t * delta, alpha) > f0 + 1e-4 * t * slope) & (t > tiny)

        t = jax.lax.while_loop(worse, lambda t: t / 2, t0)
        return w + t * delta, step + 1, jnp.linalg.norm(grad)

    def unfinished(state):
        w, step, residual = state
        return (step < _NEWTON_ITERATIONS) & (residual > 10 * tiny * jnp.linalg.norm(w))

    w, _, _ = jax.lax.while_loop(unfinished, newton, (w0, 0, jnp.array(jnp.inf, G.dtype)))
    return w


def _clip_norm(G, w, max_norm):
    """w scaled down so that ||J^T w|| = sqrt(w^T G w) <= max_norm (when max_norm > 0)."""
    if max_norm <= 0:
        return w
    norm = jnp.sqrt(jnp.maximum(w @ G @ w, 0))
    return jnp.where(norm > max_norm, w * (max_norm / jnp.where(norm > 0, norm, 1)), w)


def nash_mtl_weights(G: jax.Array, *, max_norm: float = 1.0, reg_eps: float = 1e-4) -> jax.Array:
    r"""The weights of Nash-MTL: the Nash bargaining solution (G' w)_i = 1 / w_i.

    G' = G / ||G||_F + reg_eps I (normalised as in TorchJD, and regularised so that the
    solution exists when the gradients are linearly dependent). The bargaining problem
    is solved exactly (damped Newton on its convex program, see the module), not
    approximated by the paper's sequence of convex programs; it is stateless, so the
    paper's reuse of the previous weights (`update_weights_every`) is the caller's
    choice. The weights are then scaled down so that ||J^T w|| <= `max_norm`
    (`max_norm <= 0`: no scaling).

    **Arguments:**

    - `G`: `(m, m)` Gramian J J^T.
    - `max_norm`: the largest norm of the update, or `0` for none.
    - `reg_eps`: the multiple of the identity added to the normalised Gramian.

    **Returns:** `(m,)` positive weights (zero for a zero Gramian).

    **Raises:** `ValueError` for a `G` that is not square or non-finite.

    Citation: Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya, "Multi-Task Learning as a Bargaining Game", ICML 2022.
    """  # noqa: E501
    G = check_gramian(G, "nash_mtl_weights")
    w = fair_solution(G, 1.0, reg_eps)
    return jnp.where(jnp.trace(G) > 0, _clip_norm(G, w, max_norm), 0)


def nash_mtl(J: jax.Array, *, max_norm: float = 1.0, reg_eps: float = 1e-4) -> jax.Array:
    r"""Nash-MTL: w^T J with w = `nash_mtl_weights(J J^T)`.

    **Arguments:**

    - `J`: `(m, n)` Jacobian, one gradient per row.
    - `max_norm`, `reg_eps`: as in `nash_mtl_weights`.

    **Returns:** the `(n,)` update direction.

    **Raises:** `ValueError` for a `J` that is not a non-empty matrix or non-finite.

    Citation: Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya, "Multi-Task Learning as a Bargaining Game", ICML 2022.
    """  # noqa: E501
    J = check_matrix(J, "nash_mtl")
    return nash_mtl_weights(J @ J.T, max_norm=max_norm, reg_eps=reg_eps) @ J


def fairgrad_weights(G: jax.Array, alpha: float = 1.0, *, reg_eps: float = 1e-4) -> jax.Array:
    r"""The weights of FairGrad: the alpha-fair allocation (G' w)_i = w_i^{-1/alpha}.

    G' = G / ||G||_F + reg_eps I. alpha -> 0 approaches the linear (sum) utility,
    alpha = 1 is proportional fairness (Nash-MTL's weights without its norm clip),
    alpha -> infinity approaches max-min fairness. Solved exactly by damped Newton on the
    convex program of the module, rather than by the paper's least squares.

    **Arguments:**

    - `G`: `(m, m)` Gramian J J^T.
    - `alpha`: the fairness parameter, > 0.
    - `reg_eps`: the multiple of the identity added to the normalised Gramian.

    **Returns:** `(m,)` positive weights (zero for a zero Gramian).

    **Raises:** `ValueError` for a `G` that is not square or non-finite, or `alpha <= 0`.

    Citation: Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024.
    """
    G = check_gramian(G, "fairgrad_weights")
    if not alpha > 0:
        raise ValueError(f"fairgrad_weights: alpha must be > 0, got {alpha}")
    return jnp.where(jnp.trace(G) > 0, fair_solution(G, float(alpha), reg_eps), 0)


def fairgrad(J: jax.Array, alpha: float = 1.0, *, reg_eps: float = 1e-4) -> jax.Array:
    r"""FairGrad: w^T J with w = `fairgrad_weights(J J^T, alpha)`.

    **Arguments:**

    - `J`: `(m, n)` Jacobian, one gradient per row.
    - `alpha`, `reg_eps`: as in `fairgrad_weights`.

    **Returns:** the `(n,)` update direction.

    **Raises:** `ValueError` for a `J` that is not a non-empty matrix or non-finite, or
    `alpha <= 0`.

    Citation: Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024.
    """
    J = check_matrix(J, "fairgrad")
    return fairgrad_weights(J @ J.T, alpha, reg_eps=reg_eps) @ J
