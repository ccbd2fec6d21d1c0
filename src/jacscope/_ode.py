"""One adaptive diffrax solve to its end point: the solve every ODE capability makes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from jacscope._extras import require


def solve_to_end(
    field: Callable[[Any, Any, Any], Any],
    y0: Any,
    *,
    t0: Any,
    t1: Any,
    args: Any = None,
    solver: Any = None,
    rtol: float,
    atol: float,
    max_steps: int,
    adjoint: Any = None,
    caller: str,
) -> tuple[Any, jax.Array]:
    """`(y(t1), steps taken)` of dy/dt = field(t, y, args) from y(t0) = y0 (t1 < t0
    solves backwards): `solver` (default Tsit5) under a PID controller of `rtol`, `atol`,
    `adjoint` (default `RecursiveCheckpointAdjoint`). Needs the `ode` extra (`caller`
    names what asked, for its message)."""
    diffrax = require("diffrax", caller)
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Tsit5() if solver is None else solver,
        t0,
        t1,
        None,
        y0,
        args=args,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint,
        saveat=diffrax.SaveAt(t1=True),
        max_steps=max_steps,
    )
    return jax.tree.map(lambda a: a[-1], solution.ys), solution.stats["num_steps"]
