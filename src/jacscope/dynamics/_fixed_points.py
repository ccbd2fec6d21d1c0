r"""Fixed points of maps, zeros of vector fields, their stability, and their branches.

A fixed point of a map F (of its p-th iterate F^p, to find period-p orbits) is a zero
of G(x) = F^p(x) - x; an equilibrium of a flow dx/dt = f(x) is a zero of G = f. From
many candidates at once (vmapped), two phases find them:

1. **Descent** (Sussillo & Barak 2013): minimise q(x) = 1/2 ||G(x)||^2 with an optax
   optimizer, Adam by default, for a bounded number of steps, keeping each candidate's
   lowest q. Its gradient (J_G)^T G(x) is one VJP. Adam rather than Gauss-Newton or
   Levenberg-Marquardt: G is square, so Gauss-Newton on q is Newton on G, which the
   second phase already does; what this phase must do is carry far candidates towards
   a zero, and Adam's steps, about one learning rate per coordinate, stay bounded where
   J_G is nearly singular (near slow points, folds, the saddles of a trained network)
   while Gauss-Newton's steps leap out of the region.
2. **Newton polishing**: x <- x - t (J_G)^{-1} G(x), with t the largest of
   1, 1/2, ..., 1/128 that lowers ||G|| (none: x stays), so it converges quadratically
   once near a zero and never moves a candidate uphill. J_G is J - I for a map (J that
   of F^p) and J for a flow. The step is a dense solve of J_G, materialised by n JVPs
   of one linearisation, while the candidates' Jacobians fit `max_bytes` (exact, and
   cheaper than an iterative solve for small n, which needs about n products anyway
   for the non-normal J - I of a saddle); past that, or when asked, matrix-free: a
   lineax solver (GMRES by default) on `lineax.FunctionLinearOperator` of the JVP.

A candidate is converged when its final residual ||G(x)|| is at most `tol`; the others
(minima of q with q > 0, the slow points, or candidates that did not get there) are
reported as such and never among the fixed points. The converged ones are deduplicated
within `unique_tol` and classified by the eigenvalues of J, the Jacobian of F^p (the
multipliers; a map's multiplier is unstable when |lambda| > 1) or of f (unstable when
Re lambda > 0): "stable" (none unstable), "unstable" (all), "saddle" (some, the
unstable dimension counts them) or "non-hyperbolic" (one within sqrt(eps) of the
boundary, where the linearisation does not decide).

`continue_fixed_point` follows one fixed point of F(., p) as p steps through given
values (natural-parameter continuation): a tangent predictor dx/dp = -(J_G)^{-1}
dG/dp, then Newton. Where the unstable dimension changes between two steps, bisection
on p locates the change and the eigenvalue nearest the boundary types it: for a map a
multiplier through +1 is a "fold", through -1 "period-doubling", a complex pair
"Neimark-Sacker"; for a flow a real eigenvalue through 0 is a "fold", a complex pair
"Hopf". "fold" names the linear signature shared by the saddle-node, transcritical and
pitchfork bifurcations, which only higher-order terms tell apart.

Citation: Sussillo & Barak, "Opening the black box: low-dimensional dynamics in high-dimensional recurrent neural networks", Neural Computation, 2013.

Citation: Kuznetsov, "Elements of Applied Bifurcation Theory", Springer, 2004.
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jacscope._extras import require
from jacscope._memory import format_bytes
from jacscope._validation import (
    check_count,
    check_finite,
    check_number,
    eval_shape_explained,
)
from jacscope.operators._linear_operator import _DEFAULT_MAX_BYTES

_KINDS = ("map", "flow")
_TRIALS = 2.0 ** -np.arange(8)
"""The Newton step lengths tried, longest first."""


class FixedPoints(NamedTuple):
    """The result of `find_fixed_points`: m distinct fixed points from B candidates.

    - `points`: the fixed points, the candidates' pytree structure with a leading axis m.
    - `residuals`: `(m,)` their residuals ||F^p(x) - x|| (flow: ||f(x)||), each <= `tol`.
    - `eigenvalues`: `(m, n)` complex, the eigenvalues of the Jacobian of F^p (the
      multipliers; largest modulus first) or of f (largest real part first); `None`
      without classification.
    - `unstable_dimension`: `(m,)` how many are unstable (|lambda| > 1; Re lambda > 0).
    - `stability`: m labels, "stable", "unstable", "saddle" or "non-hyperbolic".
    - `minimal_period`: `(m,)` the least d dividing `period` with F^d(x) = x to `tol`
      (a fixed point of F is also one of F^2; flows: 1).
    - `candidate`: `(m,)` the candidate each point was polished from (of its duplicates,
      the one with the smallest residual).
    - `count`: `(m,)` how many converged candidates reached each point.
    - `converged`: `(B,)` whether each candidate's final residual is <= `tol`.
    - `candidate_points`: every candidate's final point, leading axis B; where
      `converged` is False these are not fixed points (minima of q with q > 0, the slow
      points, or candidates that ran out of steps).
    - `candidate_residuals`: `(B,)` their residuals.
    - `num_converged`: how many candidates converged.
    """

    points: Any
    residuals: jax.Array
    eigenvalues: jax.Array | None
    unstable_dimension: jax.Array | None
    stability: tuple[str, ...] | None
    minimal_period: jax.Array
    candidate: jax.Array
    count: jax.Array
    converged: jax.Array
    candidate_points: Any
    candidate_residuals: jax.Array
    num_converged: int


class Stability(NamedTuple):
    """The result of `fixed_point_stability` at one point of n scalars.

    - `eigenvalues`: `(n,)` complex, of the Jacobian of F^p (largest modulus first) or
      of f (largest real part first).
    - `unstable_dimension`: how many are unstable (|lambda| > 1; Re lambda > 0).
    - `hyperbolic`: False when one lies within sqrt(eps) of the boundary (|lambda| = 1;
      Re lambda = 0, relative to the largest |lambda|).
    """

    eigenvalues: jax.Array
    unstable_dimension: jax.Array
    hyperbolic: jax.Array


class Bifurcation(NamedTuple):
    """A change of stability found by `continue_fixed_point`.

    - `type`: "fold", "period-doubling", "Neimark-Sacker" (maps) or "fold", "Hopf"
      (flows), from the eigenvalue nearest the boundary.
    - `parameter`: the midpoint of `bracket`.
    - `bracket`: `(lo, hi)`, the parameters on either side after bisection, at most
      `parameter_tol` apart unless the corrector failed inside (then wider).
    - `point`: the fixed point at `lo` (the state's pytree structure).
    - `eigenvalues`: `(n,)` the eigenvalues there, sorted as in `FixedPoints`.
    - `critical_eigenvalue`: the one nearest the boundary.
    - `unstable_dimension`: `(before, after)` along the direction of continuation.
    """

    type: str
    parameter: float
    bracket: tuple[float, float]
    point: Any
    eigenvalues: jax.Array
    critical_eigenvalue: complex
    unstable_dimension: tuple[int, int]


class Branch(NamedTuple):
    """The result of `continue_fixed_point`: a branch at m of the parameters.

    - `parameters`: `(m,)` the parameters the branch reached, in the order given.
    - `points`: the fixed point at each, the state's structure with a leading axis m.
    - `residuals`: `(m,)` their residuals.
    - `eigenvalues`: `(m, n)` complex, sorted as in `FixedPoints`.
    - `unstable_dimension`: `(m,)`.
    - `bifurcations`: the changes of stability found between the parameters, in order.
    - `stopped_at`: the first parameter where the corrector did not converge (the branch
      ends before it, m < len(parameters)), or `None` when it covers them all.
    - `stop_reason`: one line saying why it stopped, or `None`.
    """

    parameters: jax.Array
    points: Any
    residuals: jax.Array
    eigenvalues: jax.Array
    unstable_dimension: jax.Array
    bifurcations: tuple[Bifurcation, ...]
    stopped_at: float | None
    stop_reason: str | None


# --- shared pieces ------------------------------------------------------------------


def _check_kind(kind: str, period: Any, what: str) -> int:
    if kind not in _KINDS:
        raise ValueError(f"{what}: kind must be 'map' or 'flow', got {kind!r}")
    period = check_count(period, "period", what)
    if kind == "flow" and period != 1:
        raise ValueError(f"{what}: period applies to maps; a flow takes period=1, got {period}")
    return period


def _default_tol(tol: Any, dtype: Any, what: str) -> float:
    if tol is None:
        return float(np.sqrt(jnp.finfo(dtype).eps))
    return float(check_number(tol, f"{what}: tol"))


def _check_step(step: Callable, example: Any, extra: tuple, what: str) -> None:
    """Refuse a step whose output is not a state of the structure and shapes it takes."""
    out = eval_shape_explained(
        lambda x: step(x, *extra), example, failure=f"{what}: step cannot be called on a state"
    )
    shapes_in = [tuple(leaf.shape) for leaf in jax.tree.leaves(example)]
    shapes_out = [tuple(jnp.shape(leaf)) for leaf in jax.tree.leaves(out)]
    if jax.tree.structure(out) != jax.tree.structure(example) or shapes_in != shapes_out:
        raise ValueError(
            f"{what}: step returns shapes {shapes_out} from a state of shapes {shapes_in}; "
            "it must return a state of the same structure"
        )


def _flat_maps(step: Callable, unravel: Callable, kind: str, period: int):
    """`(h, g)` on flat states: h = F^p (map) or f (flow), g = h - x (map) or f (flow);
    both take `(x, *extra)`."""

    def flat_step(x, *extra):
        flat, _ = ravel_pytree(step(unravel(x), *extra))
        return flat.astype(x.dtype)

    if kind == "flow":
        return flat_step, flat_step

    def h(x, *extra):
        if period == 1:
            return flat_step(x, *extra)
        return jax.lax.fori_loop(0, period, lambda _, y: flat_step(y, *extra), x)

    def g(x, *extra):
        return h(x, *extra) - x

    return h, g


def _margin(dtype: Any) -> float:
    return float(np.sqrt(jnp.finfo(dtype).eps))


def _classify(jacobian: jax.Array, kind: str) -> Stability:
    """Eigenvalues of a dense Jacobian, sorted, with the unstable count and hyperbolicity."""
    eigenvalues = jnp.linalg.eigvals(jacobian)
    margin = _margin(jacobian.dtype)
    if kind == "map":
        key = jnp.abs(eigenvalues)
        unstable = key > 1
        hyperbolic = jnp.all(jnp.abs(key - 1) > margin)
    else:
        key = eigenvalues.real
        unstable = key > 0
        scale = jnp.maximum(1.0, jnp.max(jnp.abs(eigenvalues)))
        hyperbolic = jnp.all(jnp.abs(key) > margin * scale)
    order = jnp.argsort(-key, stable=True)
    return Stability(eigenvalues[order], jnp.sum(unstable), hyperbolic)


def _label(unstable: int, n: int, hyperbolic: bool) -> str:
    if not hyperbolic:
        return "non-hyperbolic"
    return "stable" if unstable == 0 else "unstable" if unstable == n else "saddle"


def _check_dense(n: int, dtype: Any, max_bytes: int, what: str, advice: str) -> None:
    needed = n * n * jnp.dtype(dtype).itemsize
    if needed > max_bytes:
        raise ValueError(
            f"{what}: the dense {n} x {n} Jacobian needs {needed:,} bytes "
            f"({format_bytes(needed)}), over max_bytes={max_bytes:,} "
            f"({format_bytes(max_bytes)}); {advice}"
        )


def _newton(g: Callable, x: jax.Array, num_steps: int, solve: Callable) -> jax.Array:
    """`num_steps` damped Newton steps on g from x; `solve(linear, r)` returns
    (J_G)^{-1} r for the linearisation `linear` of g at x."""
    trials = jnp.asarray(_TRIALS, x.dtype)

    def body(_, x):
        r, linear = jax.linearize(g, x)
        d = solve(linear, r)
        tries = x[None] - trials[:, None] * d[None]
        norms = jax.vmap(lambda y: jnp.linalg.norm(g(y)))(tries)
        better = norms < jnp.linalg.norm(r)  # False for NaN
        return jnp.where(jnp.any(better), tries[jnp.argmax(better)], x)

    return jax.lax.fori_loop(0, num_steps, body, x)


def _dense_solve(linear: Callable, r: jax.Array) -> jax.Array:
    eye = jnp.eye(r.shape[0], dtype=r.dtype)
    return jnp.linalg.solve(jax.vmap(linear, out_axes=1)(eye), r)


def _lineax_solve(solver: Any) -> Callable:
    """Newton steps by a lineax solver on the JVP (`None`: GMRES)."""
    lx = require("lineax", "find_fixed_points' matrix-free Newton steps")
    solver = lx.GMRES(rtol=1e-10, atol=1e-12) if solver is None else solver

    def solve(linear, r):
        operator = lx.FunctionLinearOperator(linear, jax.ShapeDtypeStruct(r.shape, r.dtype))
        return lx.linear_solve(operator, r, solver, throw=False).value

    return solve


def _divisors(period: int) -> list[int]:
    return [d for d in range(1, period) if period % d == 0]


# --- public functions ---------------------------------------------------------------


def fixed_point_stability(
    step: Callable[[Any], Any],
    x: Any,
    *,
    kind: str = "map",
    period: int = 1,
    max_bytes: int = _DEFAULT_MAX_BYTES,
) -> Stability:
    r"""The eigenvalues of the Jacobian at a fixed point, and the stability they imply.

    For a map the Jacobian is that of F^period at x (the product of the Jacobians along
    the orbit), its eigenvalues the multipliers, unstable when |lambda| > 1; for a flow
    it is that of f, unstable when Re lambda > 0. The Jacobian is dense (n JVPs, forward
    mode) and its eigenvalues those of `jnp.linalg.eigvals`. Pure, jit- and
    vmap-compatible (vmap over `x` or a parameter closed over by `step`).

    **Arguments:**

    - `step`: `(x) -> x` (map) or `(x) -> dx/dt` (flow), the same pytree structure in and
      out.
    - `x`: the point, a pytree of floating-point arrays (n scalars).
    - `kind`: `"map"` or `"flow"`.
    - `period`: the iterate of a map whose Jacobian is taken.
    - `max_bytes`: refuse a dense Jacobian larger than this.

    **Returns:** a `Stability`.

    **Raises:** `ValueError` naming the problem: an unknown `kind`, a `period` below 1
    (or not 1 for a flow), a non-finite leaf of `x`, a step that changes the state's
    shapes, a Jacobian over `max_bytes`.

    Citation: Kuznetsov, "Elements of Applied Bifurcation Theory", Springer, 2004.
    """
    what = "fixed_point_stability"
    period = _check_kind(kind, period, what)
    check_finite(x, "x")
    _check_step(step, x, (), what)
    flat, unravel = ravel_pytree(x)
    _check_dense(flat.size, flat.dtype, max_bytes, what, "the stability needs it")
    h, _ = _flat_maps(step, unravel, kind, period)
    return _classify(jax.jacfwd(h)(flat), kind)


def find_fixed_points(
    step: Callable[[Any], Any],
    candidates: Any,
    *,
    kind: str = "map",
    period: int = 1,
    optimizer: optax.GradientTransformation | None = None,
    num_steps: int = 200,
    newton_steps: int = 20,
    tol: float | None = None,
    unique_tol: float = 1e-6,
    solver: Any = None,
    classify: bool = True,
    max_bytes: int = _DEFAULT_MAX_BYTES,
) -> FixedPoints:
    r"""The distinct fixed points of a map (or zeros of a vector field) reached from B
    candidates, and their stability.

    Each candidate is descended on q(x) = 1/2 ||G(x)||^2 by `optimizer` for `num_steps`
    steps, then polished by `newton_steps` damped Newton steps (see the module's
    explanation); G(x) = F^period(x) - x for a map, f(x) for a flow. The candidates run
    vmapped in one compiled program. Those whose final residual is at most `tol` are
    deduplicated: two are one point when ||x_i - x_j|| <= `unique_tol` max(1, ||x_j||),
    the one with the smaller residual kept. A map's fixed points of F^period are those
    of its period-d orbits for d dividing the period, each point of an orbit listed (the
    logistic map's period-2 orbit gives two points, and its fixed points two more, with
    `minimal_period` 1). The deduplication makes the number of points depend on the
    values, so this function runs eagerly and cannot itself be jitted or vmapped;
    `fixed_point_stability` can.

    **Arguments:**

    - `step`: `(x) -> x` (map) or `(x) -> dx/dt` (flow), the same pytree structure in and
      out.
    - `candidates`: starting points, the state's pytree with a leading axis B on every
      leaf.
    - `kind`: `"map"` or `"flow"`.
    - `period`: find the fixed points of F^period (maps only).
    - `optimizer`: an optax optimizer for the descent (default `optax.adam(1e-2)`).
    - `num_steps`: descent steps, `>= 0` (0: Newton from the candidates).
    - `newton_steps`: Newton steps, `>= 0`.
    - `tol`: the largest residual ||G(x)|| of a converged candidate (default sqrt(eps)
      of the state's dtype: 1.5e-8 in float64).
    - `unique_tol`: the relative distance within which two points are one.
    - `solver`: the Newton steps' linear solver: `None` for a dense solve while the B
      Jacobians fit `max_bytes` and `lineax.GMRES(rtol=1e-10, atol=1e-12)` otherwise, or
      a lineax solver (matrix-free, on the JVP; needs the `lineax` extra).
    - `classify`: whether to compute the eigenvalues (a dense n x n Jacobian at each
      point); without, `eigenvalues`, `unstable_dimension` and `stability` are `None`.
    - `max_bytes`: the budget of the dense Jacobians.

    **Returns:** a `FixedPoints`; `points` may be empty (m = 0) when no candidate
    converged.

    **Raises:** `ValueError` naming the problem: an unknown `kind`, a `period` below 1
    (or not 1 for a flow), candidates without a common leading axis or with a
    non-finite or integer leaf, a step that changes the state's shapes, a non-positive
    `tol` or `unique_tol`, classification of a point whose Jacobian exceeds `max_bytes`.

    Citation: Sussillo & Barak, "Opening the black box: low-dimensional dynamics in high-dimensional recurrent neural networks", Neural Computation, 2013.
    """  # noqa: E501
    what = "find_fixed_points"
    period = _check_kind(kind, period, what)
    num_steps = check_count(num_steps, "num_steps", what, minimum=0)
    newton_steps = check_count(newton_steps, "newton_steps", what, minimum=0)
    check_number(unique_tol, f"{what}: unique_tol")
    leaves = jax.tree.leaves(candidates)
    if not leaves:
        raise ValueError(f"{what}: candidates holds no arrays")
    for path, leaf in jax.tree_util.tree_leaves_with_path(candidates):
        name = "candidates" + jax.tree_util.keystr(path)
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise ValueError(f"{what}: {name} must be floating point, got {jnp.result_type(leaf)}")
        if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != jnp.shape(leaves[0])[0]:
            raise ValueError(
                f"{what}: every leaf of candidates needs the leading candidate axis of "
                f"length {jnp.shape(leaves[0])[0] if jnp.ndim(leaves[0]) else 0}; {name} has "
                f"shape {jnp.shape(leaf)}"
            )
    check_finite(candidates, "candidates")
    num_candidates = jnp.shape(leaves[0])[0]
    if num_candidates == 0:
        raise ValueError(f"{what}: candidates holds no candidate (leading axis of length 0)")
    example = jax.tree.map(lambda a: jnp.asarray(a)[0], candidates)
    _check_step(step, example, (), what)
    flat0, unravel = ravel_pytree(example)
    n, dtype = flat0.size, flat0.dtype
    tol = _default_tol(tol, dtype, what)
    if classify:
        _check_dense(n, dtype, max_bytes, what, "pass classify=False, or a larger max_bytes")
    fits = num_candidates * n * n * jnp.dtype(dtype).itemsize <= max_bytes
    solve = _dense_solve if solver is None and fits else _lineax_solve(solver)
    optimizer = optax.adam(1e-2) if optimizer is None else optimizer
    h, g = _flat_maps(step, unravel, kind, period)
    once, _ = _flat_maps(step, unravel, "flow", 1)  # F itself, for the minimal periods

    def q(x):
        return 0.5 * jnp.sum(g(x) ** 2)

    def one(x0):
        def descend(carry, _):
            x, state, best, best_q = carry
            value, grad = jax.value_and_grad(q)(x)
            better = value < best_q  # False for NaN
            best = jnp.where(better, x, best)
            best_q = jnp.where(better, value, best_q)
            updates, state = optimizer.update(grad, state, x)
            return (optax.apply_updates(x, updates), state, best, best_q), None

        if num_steps:
            carry = (x0, optimizer.init(x0), x0, jnp.asarray(jnp.inf, dtype))
            (x, _, best, best_q), _ = jax.lax.scan(descend, carry, None, length=num_steps)
            x0 = jnp.where(q(x) < best_q, x, best)
        x = _newton(g, x0, newton_steps, solve)
        residual = jnp.linalg.norm(g(x))
        periods = jnp.asarray(period)
        for d in reversed(_divisors(period)):
            y = jax.lax.fori_loop(0, d, lambda _, z: once(z), x)
            periods = jnp.where(jnp.linalg.norm(y - x) <= tol, d, periods)
        return x, residual, periods

    @jax.jit
    def search(candidates):
        flats = jax.vmap(lambda c: ravel_pytree(c)[0].astype(dtype))(candidates)
        finals, residuals, periods = jax.vmap(one)(flats)
        return finals, residuals, periods, jax.vmap(unravel)(finals)

    @jax.jit
    def finish(finals, indices):
        points = finals[indices]
        if not classify:
            return jax.vmap(unravel)(points), None
        per_point = n * n * jnp.dtype(dtype).itemsize * 4
        batch = int(np.clip(max_bytes // per_point, 1, indices.shape[0]))
        stability = jax.lax.map(
            lambda x: _classify(jax.jacfwd(h)(x), kind), points, batch_size=batch
        )
        return jax.vmap(unravel)(points), stability

    finals, residuals, periods, candidate_points = search(candidates)
    residuals_host = np.asarray(residuals)
    converged = residuals_host <= tol
    keep = _deduplicate(np.asarray(finals), residuals_host, converged, unique_tol)
    indices = np.array([i for i, _ in keep], dtype=int)
    counts = np.array([c for _, c in keep], dtype=int)
    eigenvalues = unstable = labels = None
    if indices.size:
        points, stability = finish(finals, jnp.asarray(indices))
    else:
        points = jax.tree.map(lambda a: a[:0], candidate_points)
        complex_dtype = jnp.result_type(dtype, jnp.complex64)
        stability = Stability(jnp.zeros((0, n), complex_dtype), jnp.zeros(0, int), ())
    if classify:
        eigenvalues, unstable = stability.eigenvalues, stability.unstable_dimension
        labels = tuple(
            _label(int(u), n, bool(hyp))
            for u, hyp in zip(np.asarray(unstable), np.asarray(stability.hyperbolic), strict=True)
        )
    return FixedPoints(
        points=points,
        residuals=jnp.asarray(residuals_host[indices]),
        eigenvalues=eigenvalues,
        unstable_dimension=unstable,
        stability=labels,
        minimal_period=jnp.asarray(np.asarray(periods)[indices]),
        candidate=jnp.asarray(indices),
        count=jnp.asarray(counts),
        converged=jnp.asarray(converged),
        candidate_points=candidate_points,
        candidate_residuals=residuals,
        num_converged=int(converged.sum()),
    )


def _deduplicate(
    points: np.ndarray, residuals: np.ndarray, converged: np.ndarray, unique_tol: float
) -> list[tuple[int, int]]:
    """`(index, count)` of one representative per cluster of converged points, the one
    with the smallest residual, in the order of their indices."""
    order = [i for i in np.argsort(residuals, kind="stable") if converged[i]]
    kept: list[int] = []
    counts: list[int] = []
    for i in order:
        if kept:
            reps = points[kept]
            distance = np.linalg.norm(reps - points[i], axis=1)
            scale = np.maximum(1.0, np.linalg.norm(reps, axis=1))
            near = np.flatnonzero(distance <= unique_tol * scale)
            if near.size:
                counts[near[0]] += 1
                continue
        kept.append(int(i))
        counts.append(1)
    pairs = sorted(zip(kept, counts, strict=True))
    return pairs


def continue_fixed_point(
    step: Callable[[Any, jax.Array], Any],
    x0: Any,
    parameters: Any,
    *,
    kind: str = "map",
    period: int = 1,
    newton_steps: int = 20,
    tol: float | None = None,
    parameter_tol: float = 1e-10,
    max_bytes: int = _DEFAULT_MAX_BYTES,
) -> Branch:
    r"""Follow a fixed point of x -> step(x, p) (or a zero of step(x, p) = dx/dt) as p
    steps through `parameters`, and locate where its stability changes.

    Natural-parameter continuation: `x0` is first corrected by Newton at
    `parameters[0]`; from each point of the branch the next is predicted along the
    tangent dx/dp = -(J_G)^{-1} dG/dp (or taken as the last point, when that is closer
    to a zero) and corrected by `newton_steps` damped dense Newton steps. Where the
    unstable dimension differs between consecutive parameters, bisection on p, each
    midpoint Newton-corrected from the stable side, narrows the bracket to
    `parameter_tol`, and the eigenvalue nearest the boundary there gives the type (see
    the module's explanation). A bracket holding two changes that cancel shows none:
    step more finely than the bifurcations are apart. A branch that turns back (a fold
    in p) cannot be followed past the turn: the corrector fails beyond it, the branch
    stops there and `stopped_at` and `stop_reason` say so. Runs eagerly (the number of
    points and bifurcations depends on the values), one compiled corrector per call.

    **Arguments:**

    - `step`: `(x, p) -> x` (map) or `(x, p) -> dx/dt` (flow), `p` a scalar array, the
      state's pytree structure in and out.
    - `x0`: a fixed point at `parameters[0]`, or a guess Newton can correct.
    - `parameters`: `(k,)` strictly increasing or decreasing parameter values, `k >= 2`.
    - `kind`: `"map"` or `"flow"`.
    - `period`: follow a fixed point of F^period (a period-p orbit; maps only).
    - `newton_steps`: Newton steps at each parameter, `>= 1`.
    - `tol`: the largest residual of a converged point (default sqrt(eps) of the
      state's dtype).
    - `parameter_tol`: the width to which bisection narrows a bifurcation's bracket.
    - `max_bytes`: refuse a dense Jacobian larger than this (the eigenvalues need it).

    **Returns:** a `Branch`.

    **Raises:** `ValueError` naming the problem: an unknown `kind`, a `period` below 1
    (or not 1 for a flow), a non-finite leaf of `x0` or of `parameters`, parameters
    that are not a strictly monotone 1-D array of two or more, a step that changes the
    state's shapes, an `x0` that Newton does not bring to a fixed point at
    `parameters[0]`, a Jacobian over `max_bytes`.

    Citation: Kuznetsov, "Elements of Applied Bifurcation Theory", Springer, 2004.
    """
    what = "continue_fixed_point"
    period = _check_kind(kind, period, what)
    newton_steps = check_count(newton_steps, "newton_steps", what)
    check_number(parameter_tol, f"{what}: parameter_tol")
    check_finite(x0, "x0")
    flat0, unravel = ravel_pytree(x0)
    n, dtype = flat0.size, flat0.dtype
    values = np.asarray(parameters, dtype=dtype)
    check_finite(values, "parameters")
    steps = np.diff(values) if values.ndim == 1 else np.zeros(0)
    if values.ndim != 1 or values.size < 2 or not (np.all(steps > 0) or np.all(steps < 0)):
        raise ValueError(
            f"{what}: parameters must be a strictly increasing or decreasing 1-D array of "
            f"two or more values, got shape {values.shape}"
        )
    tol = _default_tol(tol, dtype, what)
    _check_dense(n, dtype, max_bytes, what, "continuation needs the eigenvalues")
    _check_step(step, x0, (jnp.asarray(values[0]),), what)
    h, g = _flat_maps(step, unravel, kind, period)
    eye = jnp.eye(n, dtype=dtype)

    @jax.jit
    def correct(x_prev, tangent, p_prev, p):
        guess = x_prev + (p - p_prev) * tangent
        worse = ~(jnp.linalg.norm(g(guess, p)) < jnp.linalg.norm(g(x_prev, p)))
        start = jnp.where(worse, x_prev, guess)
        x = _newton(lambda y: g(y, p), start, newton_steps, _dense_solve)
        residual = jnp.linalg.norm(g(x, p))
        jacobian = jax.jacfwd(h)(x, p)
        stability = _classify(jacobian, kind)
        jg = jacobian - eye if kind == "map" else jacobian
        dgdp = jax.jacfwd(g, argnums=1)(x, p)
        return x, residual, stability, -jnp.linalg.solve(jg, dgdp)

    def at(x_prev, tangent, p_prev, p):
        x, residual, stability, new_tangent = correct(
            x_prev, tangent, jnp.asarray(p_prev, dtype), jnp.asarray(p, dtype)
        )
        ok = bool(residual <= tol)
        if ok and not bool(jnp.all(jnp.isfinite(new_tangent))):
            new_tangent = jnp.zeros_like(new_tangent)  # singular J_G: no predictor
        return ok, x, float(residual), stability, new_tangent

    ok, x, residual, stability, tangent = at(flat0, jnp.zeros(n, dtype), values[0], values[0])
    if not ok:
        raise ValueError(
            f"{what}: Newton does not bring x0 to a fixed point at parameters[0]={values[0]:.6g} "
            f"(residual {residual:.3g} > tol {tol:.3g})"
        )
    points, residuals, stabilities, tangents = [x], [residual], [stability], [tangent]
    stopped_at = stop_reason = None
    for k in range(1, values.size):
        ok, x, residual, stability, tangent = at(points[-1], tangents[-1], values[k - 1], values[k])
        if not ok:
            stopped_at = float(values[k])
            stop_reason = (
                f"the corrector did not converge at parameter {values[k]:.6g} (residual "
                f"{residual:.3g} > tol {tol:.3g}); the branch may turn back (a fold) or the "
                "step be too large"
            )
            break
        points.append(x)
        residuals.append(residual)
        stabilities.append(stability)
        tangents.append(tangent)

    bifurcations = []
    dims = [int(s.unstable_dimension) for s in stabilities]
    for k in range(len(points) - 1):
        if dims[k] == dims[k + 1]:
            continue
        lo, hi = float(values[k]), float(values[k + 1])
        x_lo, t_lo, s_lo = points[k], tangents[k], stabilities[k]
        while abs(hi - lo) > parameter_tol:
            mid = 0.5 * (lo + hi)
            if mid in (lo, hi):  # the bracket is as narrow as the dtype allows
                break
            ok, x_mid, _, s_mid, t_mid = at(x_lo, t_lo, lo, mid)
            if not ok:
                break
            if int(s_mid.unstable_dimension) == dims[k]:
                lo, x_lo, t_lo, s_lo = mid, x_mid, t_mid, s_mid
            else:
                hi = mid
        bifurcations.append(
            Bifurcation(
                type=_bifurcation_type(s_lo.eigenvalues, kind),
                parameter=0.5 * (lo + hi),
                bracket=(lo, hi),
                point=unravel(x_lo),
                eigenvalues=s_lo.eigenvalues,
                critical_eigenvalue=complex(_critical(s_lo.eigenvalues, kind)),
                unstable_dimension=(dims[k], dims[k + 1]),
            )
        )

    stacked = jnp.stack(points)
    return Branch(
        parameters=jnp.asarray(values[: len(points)]),
        points=jax.vmap(unravel)(stacked),
        residuals=jnp.asarray(residuals, dtype),
        eigenvalues=jnp.stack([s.eigenvalues for s in stabilities]),
        unstable_dimension=jnp.asarray(dims),
        bifurcations=tuple(bifurcations),
        stopped_at=stopped_at,
        stop_reason=stop_reason,
    )


def _critical(eigenvalues: jax.Array, kind: str) -> jax.Array:
    """The eigenvalue nearest the stability boundary."""
    distance = jnp.abs(jnp.abs(eigenvalues) - 1) if kind == "map" else jnp.abs(eigenvalues.real)
    return eigenvalues[jnp.argmin(distance)]


def _bifurcation_type(eigenvalues: jax.Array, kind: str) -> str:
    critical = complex(_critical(eigenvalues, kind))
    complex_pair = abs(critical.imag) > _margin(eigenvalues.real.dtype) * max(1.0, abs(critical))
    if kind == "flow":
        return "Hopf" if complex_pair else "fold"
    if complex_pair:
        return "Neimark-Sacker"
    return "fold" if critical.real > 0 else "period-doubling"
