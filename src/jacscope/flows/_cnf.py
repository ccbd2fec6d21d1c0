r"""Continuous normalising flows: log-densities through the instantaneous change of
variables, with exact or stochastic divergences.

A flow dz/dt = f(t, z; theta) carries base samples z(t0) ~ p_0 to data x = z(t1). The
log-density along a trajectory obeys d log p(z(t)) / dt = -tr(df/dz) (Chen et al.
2018), so log p_1(x) = log p_0(z(t0)) - int_{t0}^{t1} tr(df/dz) dt, with z(t0) found by
solving backwards from x. The divergence tr(df/dz) is computed at every evaluation of
the augmented field (z, a) -> (f, tr(df/dz)):

- `"exact"`: d JVPs of one linearisation of f (a batched forward mode), for moderate d;
- `"hutchinson"`: v^T (df/dz) v for m fixed probes v (FFJORD, Grathwohl et al. 2019);
- `"hutchpp"`: Hutch++ (Meyer et al. 2021): tr(Q^T J Q) + g^T P J P g, P = I - Q Q^T,
  with Q the orthonormal basis of J S at the data point (S a random sketch) held fixed
  through the solve, and m fixed probes g.

The probes (and Q) are fixed before the solve, so the adaptive solver integrates a
smooth field (redrawing them inside a solve makes its step count explode; a basis
recomputed at every evaluation jumps where J S loses rank). Each probe carries its own
integral, an unbiased estimate of the log-density (for Hutch++, for any fixed Q), so
their spread gives the standard error.

With `penalties=True` the same solve also integrates RNODE's two regularisers (Finlay
et al. 2020) along the trajectory, from the products the divergence already takes:
the kinetic energy K = int ||f||^2 dt and the Jacobian's Frobenius norm
B = int ||df/dz||_F^2 dt, exact (from the d columns of J) for `"exact"`, else the
unbiased ||J v||^2 per probe (E[v v^T] = I) and, for Hutch++, ||J Q||_F^2 +
||J P g||^2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jacscope._ode import solve_to_end
from jacscope._validation import check_finite
from jacscope.linalg._trace import hutchpp_parts

DIVERGENCES = ("exact", "hutchinson", "hutchpp")
PROBES = ("rademacher", "gaussian")


def standard_normal_log_density(z: jax.Array) -> jax.Array:
    """log N(z; 0, I) of a flat `z`."""
    return -0.5 * jnp.sum(z**2) - 0.5 * z.size * jnp.log(2 * jnp.pi)


class CNFLogDensity(NamedTuple):
    """The result of `cnf_log_density` at one point.

    - `log_density`: log p_1(x), exact up to the solver's tolerance for `"exact"`, else
      the mean of the probes' estimates.
    - `stderr`: the standard error of that mean from the probes' spread; 0 for
      `"exact"`, NaN with one probe (no spread to measure).
    - `per_probe`: `(m,)` each probe's estimate (`(1,)` for `"exact"`).
    - `base_point`: z(t0), the point of the base distribution x comes from.
    - `num_steps`: the steps the solver took (accepted and rejected).
    - `kinetic_energy`: int_{t0}^{t1} ||f(t, z(t))||^2 dt along the trajectory (with
      `penalties=True`, else `None`).
    - `jacobian_frobenius`: int_{t0}^{t1} ||df/dz||_F^2 dt, exact for `"exact"`, else
      the mean of the probes' unbiased estimates (with `penalties=True`, else `None`).
    """

    log_density: jax.Array
    stderr: jax.Array
    per_probe: jax.Array
    base_point: jax.Array
    num_steps: jax.Array
    kinetic_energy: jax.Array | None = None
    jacobian_frobenius: jax.Array | None = None


def _probes(key, shape, kind, dtype):
    if kind == "rademacher":
        return jax.random.rademacher(key, shape, dtype)
    return jax.random.normal(key, shape, dtype)


def cnf_log_density(
    vector_field: Callable[[Any, jax.Array, Any], jax.Array],
    params: Any,
    x: jax.Array,
    *,
    t0: float = 0.0,
    t1: float = 1.0,
    divergence: str = "exact",
    num_probes: int = 1,
    sketch_size: int | None = None,
    probe: str = "rademacher",
    base_log_density: Callable[[jax.Array], jax.Array] = standard_normal_log_density,
    key: jax.Array | None = None,
    solver: Any = None,
    adjoint: Any = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
    penalties: bool = False,
) -> CNFLogDensity:
    r"""log p_1(x) of the flow dz/dt = vector_field(t, z, params) from a base density.

    One point `x` of shape `(d,)`; `jax.vmap` over a batch (with a key per point, or
    one shared). Differentiable in `params` and `x` through diffrax's `adjoint`.

    **Arguments:**

    - `vector_field`: `(t, z, params) -> dz/dt`, flat `(d,)` in and out.
    - `params`: its parameters, any pytree.
    - `x`: the data point, `(d,)`.
    - `t0`, `t1`: the base distribution lives at `t0`, the data at `t1`.
    - `divergence`: `"exact"`, `"hutchinson"` or `"hutchpp"` (see the module).
    - `num_probes`: m, the probes of a stochastic divergence (Hutch++: the residual
      probes, besides `sketch_size` sketch vectors, default m).
    - `probe`: `"rademacher"` or `"gaussian"` probes.
    - `base_log_density`: log p_0 of a flat point (default: standard normal).
    - `key`: a PRNG key for the probes (stochastic divergences only).
    - `solver`: a diffrax solver (default `diffrax.Tsit5()`).
    - `adjoint`: a diffrax adjoint (default `diffrax.RecursiveCheckpointAdjoint()`;
      `diffrax.BacksolveAdjoint()` holds O(1) memory in the number of steps).
    - `rtol`, `atol`: the adaptive step-size controller's tolerances.
    - `max_steps`: the solver's step limit (diffrax raises past it).
    - `penalties`: also integrate RNODE's kinetic energy and Jacobian Frobenius norm
      (see the module), for a loss `-log p + lambda_K K + lambda_B B`.

    **Returns:** a `CNFLogDensity`.

    **Raises:** `ValueError` naming the problem: an unknown divergence or probe kind,
    a stochastic divergence without `key`, fewer than one probe, `x` not a flat finite
    array; `MissingExtra` without diffrax (the `ode` extra).

    Citation: Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud, "FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models", ICLR, 2019.

    Citation: Finlay, Jacobsen, Nurbekyan & Oberman, "How to train your neural ODE: the world of Jacobian and kinetic regularization", ICML, 2020.
    """  # noqa: E501
    if divergence not in DIVERGENCES:
        raise ValueError(
            f"cnf_log_density: divergence must be one of {DIVERGENCES}, got {divergence!r}"
        )
    if probe not in PROBES:
        raise ValueError(f"cnf_log_density: probe must be one of {PROBES}, got {probe!r}")
    x = jnp.asarray(x)
    if x.ndim != 1:
        raise ValueError(
            f"cnf_log_density: x must be one flat point (d,), got shape {x.shape}; "
            "jax.vmap over a batch"
        )
    check_finite(x, "x")
    d = x.shape[0]
    stochastic = divergence != "exact"
    if stochastic and key is None:
        raise ValueError(f"cnf_log_density: divergence={divergence!r} needs a key for its probes")
    if stochastic and num_probes < 1:
        raise ValueError(f"cnf_log_density: num_probes must be >= 1, got {num_probes}")
    m = num_probes if stochastic else 1

    def linearized(t, z, params):
        dz, linear = jax.linearize(lambda u: vector_field(t, u, params), z)
        return dz, lambda block: jax.vmap(linear, in_axes=1, out_axes=1)(block)

    probes = basis = None
    if stochastic:
        probe_key, sketch_key = jax.random.split(key)
        probes = _probes(probe_key, (d, m), probe, x.dtype)
        if divergence == "hutchpp":
            size = min(m if sketch_size is None else int(sketch_size), d)
            sketch = _probes(sketch_key, (d, size), probe, x.dtype)
            basis, _ = jnp.linalg.qr(linearized(t1, x, params)[1](sketch))
    identity = jnp.eye(d, dtype=x.dtype)

    def augmented(t, y, args):
        z = y[0]
        params, probes, basis = args
        dz, mm = linearized(t, z, params)
        if divergence == "exact":
            jacobian = mm(identity)
            samples, squares = jnp.trace(jacobian)[None], jnp.sum(jacobian**2)[None]
        elif divergence == "hutchinson":
            products = mm(probes)
            samples, squares = jnp.sum(probes * products, 0), jnp.sum(products**2, 0)
        else:
            low_rank, residual, (on_basis, on_probes) = hutchpp_parts(mm, basis, probes)
            samples = low_rank + residual
            squares = jnp.sum(on_basis**2) + jnp.sum(on_probes**2, 0)
        if not penalties:
            return dz, samples
        return dz, samples, jnp.sum(dz**2), squares

    zeros = jnp.zeros(m, x.dtype)
    y0 = (x, zeros, jnp.zeros((), x.dtype), zeros) if penalties else (x, zeros)
    (z0, integral, *penalty_integrals), num_steps = solve_to_end(
        augmented,
        y0,
        t0=t1,
        t1=t0,
        args=(params, probes, basis),
        solver=solver,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        adjoint=adjoint,
        caller="cnf_log_density",
    )
    # Solved from t1 back to t0: integral = -int_{t0}^{t1} tr(df/dz) dt per probe.
    per_probe = base_log_density(z0) + integral
    if stochastic and m > 1:
        stderr = jnp.std(per_probe, ddof=1) / jnp.sqrt(m)
    else:
        stderr = jnp.asarray(0.0 if not stochastic else jnp.nan, x.dtype)
    # Solved backwards, each penalty's state holds minus its integral.
    kinetic, frobenius = (
        (-penalty_integrals[0], -jnp.mean(penalty_integrals[1])) if penalties else (None, None)
    )
    return CNFLogDensity(
        log_density=jnp.mean(per_probe),
        stderr=stderr,
        per_probe=per_probe,
        base_point=z0,
        num_steps=num_steps,
        kinetic_energy=kinetic,
        jacobian_frobenius=frobenius,
    )


def cnf_sample(
    vector_field: Callable[[Any, jax.Array, Any], jax.Array],
    params: Any,
    z0: jax.Array,
    *,
    t0: float = 0.0,
    t1: float = 1.0,
    solver: Any = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
) -> jax.Array:
    """x = z(t1), the flow of base points `z0` (`(d,)`, or `(B, d)` for a batch).

    Draw `z0` from the base density (`jax.random.normal(key, (B, d))` for the default);
    `cnf_log_density` gives the samples' log-densities.

    **Raises:** `ValueError` for a non-finite `z0`; `MissingExtra` without diffrax.
    """
    z0 = jnp.asarray(z0)
    check_finite(z0, "z0")

    def push(z):
        x, _ = solve_to_end(
            vector_field, z, t0=t0, t1=t1, args=params, solver=solver, rtol=rtol, atol=atol,
            max_steps=max_steps, caller="cnf_sample",
        )  # fmt: skip
        return x

    return jax.vmap(push)(z0) if z0.ndim == 2 else push(z0)
