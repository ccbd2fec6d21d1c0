r"""Whether gradients through an unrolled system are dominated by its chaos.

Differentiating a loss through T steps of x_{t+1} = F(x_t; theta) multiplies T
Jacobians: the gradient grows like exp(lambda_1 T) when the largest Lyapunov exponent
lambda_1 is positive, and its variance over the unroll's randomness grows with it, so
that beyond some length one sampled gradient says more about the noise than about the
mean gradient (Metz, Freeman, Schoenholz & Kachman 2021). The report measures both
sides: lambda_1 of the system (`lyapunov_spectrum`, with its standard error) and, per
unroll length L, the gradients of `num_samples` unrolls with independent keys: the
unbiased squared norm of the mean gradient ||E g||^2 = ||mean g||^2 - tr C / S, the
total variance tr C (C the sample covariance), and their ratio, the signal-to-noise of
one sampled gradient. The verdict: "chaotic" when lambda_1 exceeds zero by four
standard errors: beyond the Lyapunov time 1 / lambda_1 (in steps) perturbations, and so
gradients, are dominated by the chaos, and the measured growth rate of the gradient
variance past it (a least-squares slope of log tr C against L) checks that the loss
feels it: it averages exp(2 L lambda_L) over the finite-time exponents lambda_L of the
samples, so by Jensen's inequality it grows at least at 2 lambda_1 (the generalised
exponent, larger the more lambda_L varies); "contracting" when lambda_1 is below zero by
four standard errors; else "unresolved", with a longer exponent run the way to resolve
it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jacscope._parameters import ravel_parameters
from jacscope._validation import check_finite
from jacscope.dynamics._lyapunov import lyapunov_spectrum


class GradientExplosionReport(NamedTuple):
    """The result of `gradient_explosion_report`.

    - `lengths`: `(L,)` the unroll lengths, ascending.
    - `mean_gradient_norm`: `(L,)` sqrt of the unbiased ||E g||^2 (0 where the estimate
      is negative: the mean is not resolved from the noise).
    - `gradient_norm`: `(L,)` the mean norm of one sampled gradient, E ||g||.
    - `gradient_variance`: `(L,)` tr C, the total variance of one sampled gradient.
    - `signal_to_noise`: `(L,)` ||E g||^2 / tr C.
    - `exponent`, `exponent_stderr`: lambda_1 of the system per step, and its standard
      error.
    - `chaos_length`: the Lyapunov time ceil(1 / lambda_1) in steps when the verdict is
      "chaotic", else `None`.
    - `variance_growth`: the least-squares slope of log tr C against the length, per
      step, over the lengths from `chaos_length` on (chaotic) or all of them
      (otherwise); `None` with fewer than two such lengths.
    - `verdict`: "chaotic", "contracting" or "unresolved".
    - `summary`: one sentence saying what the numbers mean and, when unresolved, what
      would resolve it.
    """

    lengths: np.ndarray
    mean_gradient_norm: np.ndarray
    gradient_norm: np.ndarray
    gradient_variance: np.ndarray
    signal_to_noise: np.ndarray
    exponent: float
    exponent_stderr: float
    chaos_length: int | None
    variance_growth: float | None
    verdict: str
    summary: str


def _gradient_moments(grad_fn, flat, keys):
    grads = jax.vmap(grad_fn, in_axes=(None, 0))(flat, keys)
    check_finite(grads, "the unrolled loss's gradient")
    num = grads.shape[0]
    mean = jnp.mean(grads, axis=0)
    variance = jnp.sum(jnp.var(grads, axis=0, ddof=1))
    signal = jnp.sum(mean**2) - variance / num
    return signal, variance, jnp.mean(jnp.linalg.norm(grads, axis=1))


def gradient_explosion_report(
    unrolled_loss: Callable[[Any, int, jax.Array], jax.Array],
    params: Any,
    lengths: Sequence[int],
    *,
    step: Callable[[Any, Any], Any],
    x0: Any,
    num_samples: int = 32,
    exponent_steps: int = 2000,
    key: jax.Array,
) -> GradientExplosionReport:
    r"""Diagnose whether gradients of an unroll are dominated by the system's chaos.

    **Arguments:**

    - `unrolled_loss`: `(params, length, key) -> scalar`, the loss of one unroll of
      `length` steps (a Python int, so each length is compiled once), its randomness
      (initial state, noise, data) drawn from `key`.
    - `params`: the parameters the gradient is taken of: any pytree (equinox Modules
      included; their non-array leaves are held fixed).
    - `lengths`: the unroll lengths to measure, positive.
    - `step`: `(x, params) -> x`, one step of the system the loss unrolls, for its
      largest Lyapunov exponent.
    - `x0`: the state the exponent's run starts from.
    - `num_samples`: unrolls per length, `>= 2`.
    - `exponent_steps`: steps of the exponent's run (after a transient of a tenth).
    - `key`: a PRNG key.

    **Returns:** a `GradientExplosionReport`.

    **Raises:** `ValueError` naming the problem: an empty or non-positive length, fewer
    than 2 samples, a non-finite leaf of `params` or `x0`, a non-finite gradient (the
    explosion overflowed: the lengths tried are too long to measure).

    Citation: Metz, Freeman, Schoenholz & Kachman, "Gradients are Not All You Need", arXiv 2111.05803, 2021.
    """  # noqa: E501
    lengths = sorted(int(length) for length in lengths)
    if not lengths or lengths[0] < 1:
        raise ValueError(f"gradient_explosion_report: lengths must be positive, got {lengths}")
    if num_samples < 2:
        raise ValueError(f"gradient_explosion_report: num_samples must be >= 2, got {num_samples}")
    check_finite(params, "params")
    flat, unravel = ravel_parameters(params)
    exponent_key, sample_key = jax.random.split(key)
    spectrum = lyapunov_spectrum(
        lambda x: step(x, params),
        x0,
        num_steps=exponent_steps,
        transient=exponent_steps // 10,
        k=1,
        key=exponent_key,
    )
    exponent, stderr = float(spectrum.exponents[0]), float(spectrum.stderr[0])
    keys = jax.random.split(sample_key, num_samples)
    moments = []
    for length in lengths:
        grad_fn = jax.jit(jax.grad(lambda p, k, n=length: unrolled_loss(unravel(p), n, k)))
        moments.append([float(m) for m in _gradient_moments(grad_fn, flat, keys)])
    signal, variance, norm = (np.array(column) for column in zip(*moments, strict=True))
    ratio = signal / np.where(variance > 0, variance, np.inf)
    lengths_array = np.array(lengths)
    chaotic = exponent - 4 * stderr > 0
    chaos_length = int(np.ceil(1 / exponent)) if chaotic else None
    past = lengths_array >= (chaos_length or 0)
    growth = None
    if np.sum(past) >= 2:
        growth = float(np.polyfit(lengths_array[past], np.log(variance[past]), 1)[0])
    measured = (
        f"the gradient variance grows at {growth:.3g} per step"
        if growth is not None
        else "too few lengths to measure the gradient variance's growth"
    )
    if chaotic:
        verdict = "chaotic"
        summary = (
            f"lambda_1 = {exponent:.4g} +- {stderr:.2g} per step: gradients of this unroll "
            f"are dominated by chaos beyond length {chaos_length} (the Lyapunov time); "
            f"past it {measured} (at least 2 lambda_1 = {2 * exponent:.3g} expected)"
        )
    elif exponent + 4 * stderr < 0:
        verdict = "contracting"
        summary = (
            f"lambda_1 = {exponent:.4g} +- {stderr:.2g} per step: the system contracts, so "
            f"gradients through long unrolls stay bounded ({measured})"
        )
    else:
        verdict = "unresolved"
        summary = (
            f"lambda_1 = {exponent:.4g} +- {stderr:.2g} per step is within four standard "
            "errors of 0: unresolved; a longer exponent run (exponent_steps) would "
            f"resolve its sign ({measured})"
        )
    return GradientExplosionReport(
        lengths=lengths_array,
        mean_gradient_norm=np.sqrt(np.maximum(signal, 0.0)),
        gradient_norm=norm,
        gradient_variance=variance,
        signal_to_noise=ratio,
        exponent=exponent,
        exponent_stderr=stderr,
        chaos_length=chaos_length,
        variance_growth=growth,
        verdict=verdict,
        summary=summary,
    )
