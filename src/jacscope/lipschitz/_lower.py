"""Lower bounds on the local Lipschitz constant of any function, by projected gradient
ascent on the norm of its Jacobian over the ball."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from jacscope._validation import check_count, check_finite
from jacscope.lipschitz._norms import check_eps, check_norm, project_ball
from jacscope.operators import jacobian_operator


class LowerBound(NamedTuple):
    """A lower bound on the local Lipschitz constant and a point that attains it.

    **Fields:**

    - `value`: `||J(x)||_{p->p}` at `x`, computed exactly from the dense Jacobian.
    - `x`: the point of the ball where it was found.
    """

    value: jax.Array
    x: jax.Array


def _norm_and_witness(f: Callable, x: jax.Array, norm: str):
    """||J(x)|| and unit vectors (u, v) with u^T J(x) v = ||J(x)|| (Danskin's maximisers).

    l_inf: row i* with the largest l_1 norm, u = e_i*, v = sign(J_i*). l_2: the top
    singular pair.
    """
    op = jacobian_operator(f, x)
    jac = op.materialize(chunk_size=min(op.shape))
    if norm == "inf":
        row_norms = jnp.sum(jnp.abs(jac), axis=1)
        row = jnp.argmax(row_norms)
        left = jax.nn.one_hot(row, jac.shape[0], dtype=jac.dtype)
        right = jnp.sign(jac[row])
        return row_norms[row], left, right
    left, sing, right_t = jnp.linalg.svd(jac, full_matrices=False)
    return sing[0], left[:, 0], right_t[0]


def lipschitz_lower(
    f: Callable,
    x0: jax.Array,
    eps: Any,
    norm: Literal["inf", 2] = "inf",
    *,
    key: jax.Array,
    num_steps: int = 20,
    num_restarts: int = 4,
    step_size: float | None = None,
) -> LowerBound:
    r"""A lower bound on the local Lipschitz constant `sup_{||x - x0||_p <= eps} ||J(x)||_{p->p}`.

    Projected gradient ascent on `x -> ||J(x)||_{p->p}` over the ball: at each
    iterate the norm is computed exactly from the dense Jacobian (`min(m, n)` JVPs
    or VJPs through `jacscope.jacobian_operator`), together with maximisers u, v
    with `u^T J(x) v = ||J(x)||` (for l_inf the row of largest l_1 norm and the signs
    of its entries, as in Shi et al. 2022; for l_2 the top singular pair). By
    Danskin's theorem `g = grad_x u^T J(x) v` (one more JVP, differentiated) is the
    gradient of the norm where the maximisers are unique, and an ascent direction
    of the active piece otherwise. Steps are signed for l_inf (`x + a sign(g)`) and
    normalised for l_2 (`x + a g / ||g||`), each followed by the projection onto the
    ball. The first restart starts at x0, the others at uniform random points of the
    ball. Every iterate is a point of the ball, so the best norm met is a valid lower
    bound; it is at least `||J(x0)||`, the value at eps = 0.

    The ascent needs second derivatives of `f`; for piecewise-linear networks (ReLU)
    they vanish almost everywhere, and the bound then rests on the random restarts.

    **Arguments:**

    - `f`: any function of one input array `x` (shape of `x0`) returning a pytree
      of arrays (flattened).
    - `x0`: the centre of the ball.
    - `eps`: its radius, >= 0.
    - `norm`: `"inf"` or `2`.
    - `key`: a `jax.random` key for the restarts.
    - `num_steps`: ascent steps per restart.
    - `num_restarts`: starting points (the first is x0).
    - `step_size`: default `2.5 eps / num_steps` (Madry et al. 2018).

    **Returns:** `LowerBound(value, x)`.

    Citation: Shi, Wang, Zhang, Kolter & Hsieh, "Efficiently Computing Local Lipschitz
    Constants of Neural Networks via Bound Propagation", NeurIPS, 2022.

    Citation: Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models
    Resistant to Adversarial Attacks", arXiv 1706.06083.
    """
    what = "lipschitz_lower"
    norm = check_norm(norm, what)
    check_eps(eps, what)
    for name, count in (("num_steps", num_steps), ("num_restarts", num_restarts)):
        check_count(count, name, what)
    x0 = jnp.asarray(x0)
    if not jnp.issubdtype(x0.dtype, jnp.inexact):
        raise ValueError(f"{what}: x0 must hold floating-point values, received {x0.dtype}")
    check_finite(x0, f"{what}: x0")
    eps = jnp.asarray(eps, x0.dtype)
    alpha = 2.5 * eps / num_steps if step_size is None else jnp.asarray(step_size, x0.dtype)

    def ascent_direction(x, left, right):
        grad = jax.grad(lambda y: left @ jacobian_operator(f, y).mv(right))(x)
        if norm == "inf":
            return jnp.sign(grad)
        return grad / jnp.maximum(jnp.linalg.norm(grad), jnp.finfo(x.dtype).tiny)

    def step(_, carry):
        x, best_value, best_x = carry
        value, left, right = _norm_and_witness(f, x, norm)
        better = value > best_value
        best_value = jnp.where(better, value, best_value)
        best_x = jnp.where(better, x, best_x)
        x = project_ball(x + alpha * ascent_direction(x, left, right), x0, eps, norm)
        return x, best_value, best_x

    def climb(start):
        # num_steps moves, num_steps + 1 evaluated points (the last move is not taken)
        carry = (start, jnp.asarray(-jnp.inf, x0.dtype), start)
        _, best_value, best_x = jax.lax.fori_loop(0, num_steps + 1, step, carry)
        return best_value, best_x

    starts = jnp.concatenate([x0[None], _random_points(key, x0, eps, norm, num_restarts - 1)])
    values, points = jax.vmap(climb)(starts)
    best = jnp.argmax(values)
    return LowerBound(values[best], points[best])


def _random_points(key, x0, eps, norm: str, count: int) -> jax.Array:
    """`count` points drawn uniformly from the p-ball of radius eps around x0."""
    shape = (count, *x0.shape)
    if norm == "inf":
        return x0 + eps * jax.random.uniform(key, shape, x0.dtype, -1.0, 1.0)
    key_dir, key_rad = jax.random.split(key)
    direction = jax.random.normal(key_dir, (count, x0.size), x0.dtype)
    direction = direction / jnp.linalg.norm(direction, axis=1, keepdims=True)
    radius = eps * jax.random.uniform(key_rad, (count, 1), x0.dtype) ** (1.0 / x0.size)
    return x0 + (radius * direction).reshape(shape)
