"""The projection onto the dual cone of a Jacobian's rows, for many vectors at once.

For a Jacobian J (m x n) with Gramian G = J J^T and a vector J^T u, the projection of
J^T u onto the dual cone {x : J x >= 0} of the rows of J is J^T w, with w the solution
of the quadratic program (Quinton & Rey, Proposition 1)

    min_w  w^T G w   subject to   w >= u.

Substituting v = w - u >= 0 turns it into the nonnegative quadratic program

    min_v  1/2 v^T G v + q^T v   subject to   v >= 0,   q = G u,

whose KKT conditions are the linear complementarity problem

    v >= 0,   y = G v + q >= 0,   v_i y_i = 0 for every i.

With G positive definite (a P-matrix) the solution is unique. Both methods first
rescale the problem by D = diag(G)^(1/2) (v' = D v, G' = D^-1 G D^-1 with unit
diagonal, q' = D^-1 q), which leaves the constraints bounds and makes the methods
invariant to the scale of each row of J:

- `ActiveSet` is the block principal pivoting method of Judice & Pires with Murty's
  single-pivot backup rule (as in Kim & Park's NNLS solver): each iteration guesses
  the free set F, solves G'_FF v'_F = -q'_F exactly (a masked Cholesky factorisation)
  and exchanges every variable that breaks a sign condition; the backup rule makes it
  finite for a P-matrix. It ends at the exact solution, to rounding, when it stops
  with no infeasible variable (a residual at the rounding level); `max_iterations`
  caps it. Cost: one m x m Cholesky factorisation per row and iteration, typically a
  handful of iterations.
- `ProjectedGradient` is accelerated projected gradient descent (FISTA with the
  gradient restart of O'Donoghue & Candes) on all rows as one matrix, step 1/L with L
  from power iteration on G'. Each iteration is one (k, m) x (m, m) product, so it
  scales to m in the thousands; it is iterative, and the KKT residual it reports says
  how far it is from the solution.

The KKT residual of a row, the one both methods report, is the natural-map residual of
the rescaled problem relative to the data:

    ||min(v', G' v' + q')||_inf / ||q'||_inf     (0 when q' = 0),

zero exactly at the solution.

Gradients (`jax.grad`, `jax.vjp`) come from implicit differentiation of the KKT
conditions on the final active set A = {i : v_i = 0} and free set F: w_A = u_A and
(G w)_F = 0, so dw_F = -G_FF^-1 (dG_F. w + G_FA du_A). This is the derivative wherever
strict complementarity holds (v_i = 0 implies y_i > 0); at a degenerate point it is
the derivative with the active set held fixed. w depends on G through (G + G^T) / 2,
and the cotangent of G is symmetric.

G must be positive definite: a Gramian of a Jacobian is only semi-definite (singular
whenever m > n or two rows are dependent), so the weightings of this package pass
the regularised G / tr(G) + eps I (`regularize_gramian`).

Citation: Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv 2406.16232.
Citation: Judice & Pires, "A block principal pivoting algorithm for large-scale strictly monotone linear complementarity problems", Computers & Operations Research, 1994.
Citation: Kim & Park, "Fast nonnegative matrix factorization: an active-set-like method and comparisons", SIAM Journal on Scientific Computing, 2011.
Citation: Beck & Teboulle, "A fast iterative shrinkage-thresholding algorithm for linear inverse problems", SIAM Journal on Imaging Sciences, 2009.
Citation: O'Donoghue & Candes, "Adaptive restart for accelerated gradient schemes", Foundations of Computational Mathematics, 2015.
"""  # noqa: E501

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_factor, cho_solve

from jacscope._validation import check_count
from jacscope.descent._checks import check_gramian, check_vectors

ACTIVE_SET_MAX_M = 64
"""`method=None` uses `ActiveSet` up to this many rows and `ProjectedGradient` beyond."""


@dataclasses.dataclass(frozen=True)
class ActiveSet:
    """Exact block principal pivoting for the dual-cone quadratic program.

    **Fields:**

    - `max_iterations`: the most pivoting iterations (default `2 m + 20`); each is one
      masked m x m Cholesky factorisation per row. A row that reaches the cap reports
      a residual above rounding.

    Citation: Judice & Pires, "A block principal pivoting algorithm for large-scale strictly monotone linear complementarity problems", Computers & Operations Research, 1994.
    """  # noqa: E501

    max_iterations: int | None = None

    def __post_init__(self):
        if self.max_iterations is not None:
            check_count(self.max_iterations, "max_iterations", "ActiveSet")


@dataclasses.dataclass(frozen=True)
class ProjectedGradient:
    """Accelerated projected gradient (FISTA with gradient restart), all rows at once.

    **Fields:**

    - `max_iterations`: the most iterations (each one (k, m) x (m, m) product).
    - `tol`: stop once every row's relative KKT residual is at most `tol` (checked
      every 10 iterations).
    - `polish`: finish with pivoting iterations of `ActiveSet` started from the active
      set found, which make the answer exact when that guess is close (one masked
      Cholesky factorisation per row and iteration: affordable up to m of a few
      hundred on a CPU).

    Citation: Beck & Teboulle, "A fast iterative shrinkage-thresholding algorithm for linear inverse problems", SIAM Journal on Imaging Sciences, 2009.
    Citation: O'Donoghue & Candes, "Adaptive restart for accelerated gradient schemes", Foundations of Computational Mathematics, 2015.
    """  # noqa: E501

    max_iterations: int = 5000
    tol: float = 1e-12
    polish: bool = False

    def __post_init__(self):
        check_count(self.max_iterations, "max_iterations", "ProjectedGradient")
        if not (isinstance(self.tol, int | float) and math.isfinite(self.tol) and self.tol >= 0):
            raise ValueError(
                f"ProjectedGradient: tol must be a finite number >= 0, received {self.tol!r}"
            )
        if not isinstance(self.polish, bool):
            raise ValueError(f"ProjectedGradient: polish must be a bool, received {self.polish!r}")


class DualConeProjection(NamedTuple):
    """The solution of `project_to_dual_cone`.

    **Fields:**

    - `weights`: `(k, m)` (or `(m,)` for one vector) weights w with J^T w the
      projection of J^T u onto the dual cone of the rows of J.
    - `kkt_residual`: `(k,)` (or `()`) relative KKT residual of each row (see the
      module's definition); rounding level when exact.
    - `iterations`: the iterations spent (pivoting iterations for `ActiveSet`, gradient
      steps for `ProjectedGradient`, the largest over the rows).
    """

    weights: jax.Array
    kkt_residual: jax.Array
    iterations: jax.Array


# -- the nonnegative quadratic program, rescaled to a unit diagonal ----------------------


def _tolerance(dtype, m):
    return 16.0 * m * jnp.finfo(dtype).eps


def _masked_solve(Gs, rhs, free):
    """Solve G_FF x_F = rhs_F with x_A = 0 (the system padded with the identity)."""
    m = Gs.shape[0]
    both = free[:, None] & free[None, :]
    M = jnp.where(both, Gs, jnp.eye(m, dtype=Gs.dtype))
    x = cho_solve(cho_factor(M, lower=True), jnp.where(free, rhs, 0))
    return jnp.where(free, x, 0)


def _pivot_row(Gs, q, free0, max_iterations):
    """Block principal pivoting for one row: min 1/2 x^T Gs x + q^T x, x >= 0."""
    m = q.shape[0]
    tol = _tolerance(q.dtype, m)
    scale = jnp.max(jnp.abs(q))

    def solve(free):
        x = _masked_solve(Gs, -q, free)
        y = jnp.where(free, 0, Gs @ x + q)
        return x, y

    def infeasible(free, x, y):
        xtol = tol * jnp.maximum(jnp.max(jnp.abs(x)), scale)
        return (free & (x < -xtol)) | (~free & (y < -tol * scale))

    def cond(state):
        free, x, y, it, _, _ = state
        return jnp.any(infeasible(free, x, y)) & (it < max_iterations)

    def body(state):
        free, x, y, it, alpha, beta = state
        bad = infeasible(free, x, y)
        count = jnp.sum(bad, dtype=jnp.int32)
        better = count < beta
        full = better | (alpha >= 1)
        last = m - 1 - jnp.argmax(bad[::-1])
        flip = jnp.where(full, bad, jnp.arange(m) == last)
        free = free ^ flip
        alpha = jnp.where(better, 3, jnp.where(alpha >= 1, alpha - 1, 0)).astype(jnp.int32)
        beta = jnp.where(better, count, beta)
        x, y = solve(free)
        return free, x, y, it + 1, alpha, beta

    x, y = solve(free0)
    state = (free0, x, y, jnp.zeros((), jnp.int32), jnp.int32(3), jnp.int32(m + 1))
    free, x, _, it, _, _ = jax.lax.while_loop(cond, body, state)
    return jnp.maximum(x, 0), free, it


def _residual(Gs, Q, X):
    """Relative natural-map residual of each row of X."""
    Y = X @ Gs + Q
    r = jnp.max(jnp.abs(jnp.minimum(X, Y)), axis=-1)
    scale = jnp.max(jnp.abs(Q), axis=-1)
    return jnp.where(scale > 0, r / jnp.where(scale > 0, scale, 1), r)


def _largest_eigenvalue(Gs):
    """An upper estimate of lambda_max(Gs): power iteration, with a margin, capped by
    the Gershgorin bound."""
    m = Gs.shape[0]
    v0 = jnp.ones((m,), Gs.dtype) + 0.1 * jnp.cos(jnp.arange(m, dtype=Gs.dtype))

    def step(_, v):
        v = Gs @ v
        return v / jnp.linalg.norm(v)

    v = jax.lax.fori_loop(0, 60, step, v0 / jnp.linalg.norm(v0))
    estimate = v @ (Gs @ v)
    gershgorin = jnp.max(jnp.sum(jnp.abs(Gs), axis=1))
    return jnp.minimum(1.25 * estimate, gershgorin)


def _projected_gradient(Gs, Q, max_iterations, tol):
    """FISTA with gradient restart on every row of Q at once."""
    step = 1 / _largest_eigenvalue(Gs)
    block = 10

    def one(_, state):
        X, Y, t = state
        Xn = jnp.maximum(Y - step * (Y @ Gs + Q), 0)
        tn = (1 + jnp.sqrt(1 + 4 * t * t)) / 2
        restart = jnp.sum((Y - Xn) * (Xn - X), axis=-1, keepdims=True) > 0
        momentum = jnp.where(restart, 0, (t - 1) / tn)
        Yn = Xn + momentum * (Xn - X)
        tn = jnp.where(restart, 1.0, tn)
        return Xn, Yn, tn

    def cond(state):
        _, _, _, it, res = state
        return (it < max_iterations) & (jnp.max(res) > tol)

    def body(state):
        X, Y, t, it, _ = state
        X, Y, t = jax.lax.fori_loop(0, block, one, (X, Y, t))
        return X, Y, t, it + block, _residual(Gs, Q, X)

    X0 = jnp.zeros_like(Q)
    t0 = jnp.ones(Q.shape[:-1] + (1,), Q.dtype)
    state = (X0, X0, t0, jnp.zeros((), jnp.int32), _residual(Gs, Q, X0))
    X, _, _, it, _ = jax.lax.while_loop(cond, body, state)
    return X, it


def _solve_scaled(Gs, Q, method):
    """Solve every row of min 1/2 x^T Gs x + q^T x, x >= 0; returns X, free mask, iterations."""
    m = Gs.shape[0]
    if isinstance(method, ActiveSet):
        cap = method.max_iterations if method.max_iterations is not None else 2 * m + 20
        free0 = jnp.zeros(Q.shape, bool)
        X, free, it = jax.vmap(lambda q, f: _pivot_row(Gs, q, f, cap))(Q, free0)
        return X, free, jnp.max(it, initial=0)
    X, it = _projected_gradient(Gs, Q, method.max_iterations, method.tol)
    Y = X @ Gs + Q
    free = X > Y
    if method.polish:
        X, free, pivots = jax.vmap(lambda q, f: _pivot_row(Gs, q, f, 10))(Q, free)
        it = it + jnp.max(pivots, initial=0)
    return X, free, it


def _scale(G):
    G = (G + G.T) / 2
    d = jnp.sqrt(jnp.diagonal(G))
    d = jnp.where(d > 0, d, 1)
    return G, d, G / d[:, None] / d[None, :]


# -- the solution map (G, Q) -> X, with its implicit derivative --------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _nonnegative_qp(Gs, Q, method):
    X, _, it = _solve_scaled(Gs, Q, method)
    return X, it


def _nonnegative_qp_fwd(Gs, Q, method):
    X, free, it = _solve_scaled(Gs, Q, method)
    return (X, it), (Gs, X, free)


def _nonnegative_qp_bwd(method, residuals, cotangents):
    # On the free set F, Gs_FF x_F + q_F = 0 and x_A = 0, so
    # dx_F = -Gs_FF^-1 (dGs_F. x + dq_F); with z = Gs_FF^-1 xbar_F (z_A = 0) the
    # cotangents are qbar = -z and Gbar = -z x^T (symmetrised).
    Gs, X, free = residuals
    X_bar, _ = cotangents
    Z = jax.vmap(lambda xbar, f: _masked_solve(Gs, xbar, f))(X_bar, free)
    G_bar = -(Z.T @ X + X.T @ Z) / 2
    return G_bar, -Z


_nonnegative_qp.defvjp(_nonnegative_qp_fwd, _nonnegative_qp_bwd)


def solve_nonnegative_qp(G, Q, method):
    """Rows x of min 1/2 x^T G x + q^T x, x >= 0, for each row q of Q (G positive
    definite), with the relative KKT residual of the rescaled problem and the
    iterations; differentiable in G and Q."""
    G, d, Gs = _scale(G)
    Qs = Q / d
    Xs, it = _nonnegative_qp(Gs, Qs, method)
    Xs_ = jax.lax.stop_gradient(Xs)
    residual = _residual(jax.lax.stop_gradient(Gs), jax.lax.stop_gradient(Qs), Xs_)
    return Xs / d, residual, it


@functools.partial(jax.jit, static_argnames=("method",))
def _project_jit(G, U, method):
    X, residual, it = solve_nonnegative_qp(G, U @ ((G + G.T) / 2), method)
    return U + X, residual, it


def default_method(m: int) -> ActiveSet | ProjectedGradient:
    """The method `method=None` stands for at m rows: `ActiveSet` up to
    `ACTIVE_SET_MAX_M` rows, `ProjectedGradient` beyond."""
    return ActiveSet() if m <= ACTIVE_SET_MAX_M else ProjectedGradient()


def project_to_dual_cone(
    G: jax.Array, U: jax.Array, *, method: ActiveSet | ProjectedGradient | None = None
) -> DualConeProjection:
    r"""Weights of the projections of J^T u onto the dual cone of J's rows, for each u.

    For every row u of `U`, solves

        min_w  w^T G w   subject to   w >= u,

    so that J^T w is the projection of J^T u onto {x : J x >= 0} when G = J J^T
    (Quinton & Rey, Proposition 1). All rows are solved as one batch.

    What is exact and what is iterative: `ActiveSet` ends at the exact solution (to
    rounding: the reported residual is at the rounding level) unless it reaches its
    iteration cap; `ProjectedGradient` is iterative and stops at relative KKT residual
    `tol` or its cap; its `polish` option finishes with exact pivoting from the active
    set it found. `method=None` picks `ActiveSet` for m <= 64 and `ProjectedGradient`
    beyond. Works in float32 and float64, on any device, under `jit` and `vmap`;
    differentiable in `G` and `U` by implicit differentiation of the KKT conditions
    (see the module's text).

    **Arguments:**

    - `G`: `(m, m)` symmetric positive definite matrix (regularise a Gramian first:
      `regularize_gramian`).
    - `U`: `(k, m)` vectors to project, or one `(m,)` vector.
    - `method`: `ActiveSet()`, `ProjectedGradient()` or `None`.

    **Returns:** a `DualConeProjection(weights, kkt_residual, iterations)`.

    **Raises:** `ValueError` for a `G` that is not square, a `U` whose last axis is not
    m, a non-finite input, or a method of another kind.

    Citation: Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv 2406.16232.
    """  # noqa: E501
    G = jnp.asarray(G)
    U = jnp.asarray(U)
    check_gramian(G, "project_to_dual_cone")
    check_vectors(U, G.shape[0], "U", "project_to_dual_cone")
    if method is None:
        method = default_method(G.shape[0])
    if not isinstance(method, ActiveSet | ProjectedGradient):
        raise ValueError(
            f"project_to_dual_cone: method must be ActiveSet(), ProjectedGradient() or None,"
            f" received {method!r}"
        )
    dtype = jnp.result_type(G.dtype, U.dtype, jnp.float32)
    G, U = G.astype(dtype), U.astype(dtype)
    single = U.ndim == 1
    W, residual, it = _project_jit(G, jnp.atleast_2d(U), method)
    if single:
        return DualConeProjection(W[0], residual[0], it)
    return DualConeProjection(W, residual, it)
