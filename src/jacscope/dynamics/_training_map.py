r"""The Lyapunov spectrum of a training run, seen as a dynamical system.

Training is the driven map s_{t+1} = step(s_t, batch_t) on the state s = (theta, the
optimizer's floating-point state: momentum, Adam moments), its integer counters
(schedule steps) carried alongside as inputs, since they do not depend on theta. Its
finite-time Lyapunov exponents over the T steps of the run, by the QR method
(`lyapunov_spectrum`), are the growth rates of the product of the T step Jacobians;
the training Jacobian J = d theta_T / d theta_0 is that product's parameter block, so
log s_i(J) / T sits beside them (Belrose & Scherlis's chaotic region: s_i > 1, a
positive rate; the bulk: s_i ~ 1, a rate near 0). A run is deterministic: the
exponents are exact for this run and this starting frame, not estimates, so no
standard error is claimed; the rate of each phase of the run shows how they change as
training goes (the schedule, the loss landscape).

A finite run does not always align the random starting frame with the leading
directions: the i-th vector separates from its neighbours by exp(gap x T), gap the
difference of neighbouring rates. Where log s_i / T of the training Jacobian (a proxy
for the product's) put both of an exponent's gaps times T below `ALIGNMENT` (e^-5 <
1 % leakage), that exponent is unresolved: its value mixes its neighbours'. The sum of
the first j exponents is the growth of a j-dimensional volume whatever the alignment,
at most the sum of the product's first j log singular values over T.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import numpy as np

from jacscope.dynamics._lyapunov import lyapunov_spectrum
from jacscope.training import TrainingRun
from jacscope.training._run import split_state

ALIGNMENT = 5.0
"""gap x T above which neighbouring exponents are told apart (leakage below e^-5)."""


class TrainingLyapunovSpectrum(NamedTuple):
    """The result of `training_lyapunov_spectrum`.

    - `exponents`: `(k,)` the k leading finite-time exponents of the run, per step.
    - `phase_rates`: `(num_phases, k)` the exponents of each consecutive phase of the
      run (equal numbers of steps), in order.
    - `singular_rates`: `(k,)` log s_i / T of the given singular values of the
      training Jacobian, or `None` without them.
    - `resolved`: `(k,)` whether each exponent is told apart from its neighbours (see
      the module), or `None` without singular values.
    - `num_steps`: the steps measured (T, less a remainder that does not fill the
      phases).
    - `state_size`: n, the scalars of the state (parameters and optimizer state).
    """

    exponents: np.ndarray
    phase_rates: np.ndarray
    singular_rates: np.ndarray | None
    resolved: np.ndarray | None
    num_steps: int
    state_size: int


def training_lyapunov_spectrum(
    run: TrainingRun,
    *,
    k: int,
    num_phases: int = 10,
    singular_values: Any = None,
    key: jax.Array,
) -> TrainingLyapunovSpectrum:
    r"""The k leading finite-time Lyapunov exponents of a training run's map.

    **Arguments:**

    - `run`: a `jacscope.TrainingRun`.
    - `k`: exponents wanted, at most the state's size.
    - `num_phases`: consecutive phases the run is cut into for `phase_rates`, `>= 2`.
    - `singular_values`: the training Jacobian's singular values (descending), for
      `singular_rates`; optional.
    - `key`: a PRNG key for the starting tangent frame.

    **Returns:** a `TrainingLyapunovSpectrum`.

    **Raises:** `ValueError` from `lyapunov_spectrum` (k out of range, a run too short
    for the phases).

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the Training Jacobian", arXiv 2412.07003, 2024.
    """  # noqa: E501
    state0 = run.init_state(run.params0)
    floats0, _ = split_state(state0)

    def record(carry, batch):  # the counters before each step
        params, state = carry
        params, state_next, _ = run.step(params, state, batch)
        return (params, state_next), split_state(state)[1]

    _, counters = jax.lax.scan(record, (run.params0, state0), run.batches)

    def training_map(state, inputs):
        params, floats = state
        batch, counter = inputs
        params, state_next, _ = run.step(params, eqx.combine(floats, counter), batch)
        return params, split_state(state_next)[0]

    spectrum = lyapunov_spectrum(
        training_map,
        (run.params0, floats0),
        (run.batches, counters),
        k=k,
        num_batches=num_phases,
        key=key,
    )
    rates = resolved = None
    if singular_values is not None:
        logs = np.log(np.asarray(singular_values)[: k + 1]) / run.num_steps
        rates = logs[:k]
        gaps = np.abs(np.diff(logs)) * run.num_steps  # gap i: between i and i + 1
        before = np.concatenate([[np.inf], gaps[: k - 1]])
        after = gaps[:k] if gaps.size >= k else np.concatenate([gaps, [np.inf]])
        resolved = np.minimum(before, after) >= ALIGNMENT
    return TrainingLyapunovSpectrum(
        exponents=np.asarray(spectrum.exponents),
        phase_rates=np.asarray(spectrum.batch_estimates),
        singular_rates=rates,
        resolved=resolved,
        num_steps=spectrum.num_steps,
        state_size=int(spectrum.vectors.shape[0]),
    )
