r"""The local-error regulariser: the adaptive solver's own error estimate at a random time.

An adaptive solver takes as many steps as its error estimate forces it to: a step of
size h is accepted when the scaled error norm

    E(t, h) = RMS_i( err_i / (atol + rtol * max(|z_i|, |z'_i|)) ),

of its embedded error estimate err (z the state, z' the step's result) is at most 1,
and E grows like h^(p+1) for a method of order p. Pal, Edelman & Rackauckas (2023)
penalise this estimate at a time drawn uniformly along the trajectory, so that the
learned dynamics become easier to integrate, at the cost of one step of the solver
per draw, independent of the adjoint used for the main solve (their "unbiased
sampling" strategy). Here the state z(t) comes from a solve of the trajectory (its
gradient stopped, as the step, not the path to it, is what the penalty shapes) and h is
the step the controller would choose from there (Hairer's initial-step heuristic, as
diffrax's `PIDController` picks it).

Since E(t, h) ~ C(t) h^q (q the solver's error order), the step the controller would
settle on at t is about h* = safety * h * E^(-1/q) (the step it accepts, shrunk by its
safety factor), and the steps of the whole solve are int dt / h*(t). So
(t1 - t0) / h*(t) at t ~ U(t0, t1) is an estimate, unbiased over t, of the accepted
steps a solve of the trajectory takes: the `steps` field, a penalty in the units of the
cost it is meant to cut.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jacscope._extras import require
from jacscope._ode import solve_to_end
from jacscope._validation import check_finite


class LocalError(NamedTuple):
    """The result of `local_error` at one point.

    - `error`: E(t, h), the scaled error estimate of one step (Pal et al.'s penalty).
    - `steps`: (t1 - t0) / h*(t), the estimate of the accepted steps of a solve.
    - `time`: the time t drawn.
    - `step_size`: h, the controller's step there (gradient stopped).
    """

    error: jax.Array
    steps: jax.Array
    time: jax.Array
    step_size: jax.Array


def local_error(
    vector_field: Callable[[Any, jax.Array, Any], jax.Array],
    params: Any,
    x: jax.Array,
    *,
    key: jax.Array,
    t0: float = 0.0,
    t1: float = 1.0,
    solver: Any = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
) -> LocalError:
    r"""E(t, h), the solver's scaled error estimate of one step at a random time t.

    The flow is solved from the data point `x` at `t1` towards `t0` (the direction of
    `cnf_log_density`), to t ~ U(t0, t1) drawn from `key`; from z(t) one step of size h,
    the controller's choice there, gives the embedded error estimate, scaled as the
    controller scales it (see the module). Add `lambda * local_error(...).error` or
    `.steps` (mean over a batch, a key per point) to a loss; its gradient in `params`
    flows through that one step only. E below 1 means the solver would accept the step.

    **Arguments:**

    - `vector_field`: `(t, z, params) -> dz/dt`, flat `(d,)` in and out.
    - `params`: its parameters, any pytree.
    - `x`: the data point, `(d,)`.
    - `key`: a PRNG key for the time point.
    - `t0`, `t1`: the flow's time interval.
    - `solver`: a diffrax solver with an error estimate (default `diffrax.Tsit5()`).
    - `rtol`, `atol`: the controller's tolerances (those of the solves it is to cheapen).
    - `max_steps`: the step limit of the solve to t.

    **Returns:** a `LocalError`.

    **Raises:** `ValueError` for `x` not a flat finite array or a solver without an
    error estimate; `MissingExtra` without diffrax (the `ode` extra).

    Citation: Pal, Edelman & Rackauckas, "Locally Regularized Neural Differential Equations: Some Black Boxes Were Meant to Remain Closed!", ICML, 2023.
    """  # noqa: E501
    diffrax = require("diffrax", "local_error")
    solver = diffrax.Tsit5() if solver is None else solver
    x = jnp.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"local_error: x must be one flat point (d,), got shape {x.shape}")
    check_finite(x, "x")
    # Reversed time s = -t, so that every solve and step runs forwards from x at s = -t1.
    term = diffrax.ODETerm(lambda s, z, args: -vector_field(-s, z, args))
    if solver.error_order(term) is None:
        raise ValueError(f"local_error: {type(solver).__name__} has no error estimate")
    s = -jax.random.uniform(key, (), x.dtype, t0, t1)
    z, _ = solve_to_end(
        term.vector_field, x, t0=-t1, t1=s, args=params, solver=solver, rtol=rtol, atol=atol,
        max_steps=max_steps, caller="local_error",
    )  # fmt: skip
    z = jax.lax.stop_gradient(z)
    controller = diffrax.PIDController(rtol=rtol, atol=atol)
    s_next, _ = controller.init(
        term, s, -t0, z, None, params, lambda term, s, z, args: term.vf(s, z, args),
        solver.error_order(term),
    )  # fmt: skip
    s_next = jax.lax.stop_gradient(s_next)
    state = solver.init(term, s, s_next, z, params)
    z_next, error, *_ = solver.step(term, s, s_next, z, params, state, made_jump=False)
    scale = atol + rtol * jnp.maximum(jnp.abs(z), jnp.abs(z_next))
    scaled_error = jnp.sqrt(jnp.mean((error / scale) ** 2))
    step_size = s_next - s
    settled_step = controller.safety * step_size * scaled_error ** (-1 / solver.error_order(term))
    return LocalError(
        error=scaled_error, steps=(t1 - t0) / settled_step, time=-s, step_size=step_size
    )
