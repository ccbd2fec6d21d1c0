"""The Lyapunov spectrum of a built-in dynamical system, in a folder that resumes.

`run_lyapunov` builds one of `jacscope.dynamics.SYSTEMS` (a map, or the Lorenz flow)
and measures its k leading Lyapunov exponents by the QR method: `lyapunov_spectrum`
for a map, `lyapunov_spectrum_ode` for an ODE, with batch-means standard errors, the
running estimates after each batch and the Kaplan-Yorke dimension (or whether the k
exponents leave it unresolved). The measurement is one stage, kept in the folder's
`stages/` (`jacscope.jobs.JobFolder`), so the same command on a finished folder
recomputes nothing; the result is written last as `report.json`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jacscope._extras import require
from jacscope._progress import Progress, ProgressCallback, report_to
from jacscope._stages import plain
from jacscope._validation import check_count, check_number, check_x64
from jacscope.dynamics import (
    SYSTEMS,
    HenonMap,
    LogisticMap,
    Lorenz63,
    RateNetwork,
    TrainedGRU,
    lyapunov_spectrum,
    lyapunov_spectrum_ode,
)
from jacscope.jobs._folder import JobFolder

KIND = "lyapunov"

MODE = "lyapunov"
"""The `mode` of a Lyapunov report.json, which picks its layout in `jacscope.report`."""

STAGES = ("spectrum",)
"""The stages of `run_lyapunov`, in order, as passed to its progress callback."""

KIND_FIELDS = {"map": ("num_steps", "transient"), "ode": ("duration", "interval", "transient_time")}
"""The fields of `LyapunovConfig` that apply to the systems of each kind only."""


@dataclasses.dataclass(frozen=True)
class LyapunovConfig:
    """What `run_lyapunov` computes: the Lyapunov spectrum of a built-in system.

    **Fields:**

    - `system`: one of `jacscope.dynamics.SYSTEMS`: the maps `logistic`, `henon`,
      `rate-network` and `gru`, or the flow `lorenz` (an ODE, which needs diffrax).
    - `k`: exponents wanted, 1 <= k <= n, the state's size (default: all n).
    - `num_steps`: steps measured, after the transient (maps).
    - `transient`: steps run before measuring (maps).
    - `duration`: time measured, after the transient (ODEs).
    - `interval`: time between reorthonormalisations (ODEs).
    - `transient_time`: time run before measuring (ODEs).
    - `num_batches`: batches of equal length; their spread gives the standard errors.
    - `seed`: seeds the system (couplings, weights, start state) and the initial
      tangent frame.
    - `dtype`: `"float64"` or `"float32"` (float64 needs `jax_enable_x64`).
    - `logistic`, `henon`, `lorenz`, `rate_network`, `gru`: each system's parameters;
      only those of `system` apply.
    """

    system: Literal["logistic", "henon", "lorenz", "rate-network", "gru"] = "henon"
    k: int | None = None
    num_steps: int = 10_000
    transient: int = 1_000
    duration: float = 100.0
    interval: float = 0.5
    transient_time: float = 10.0
    num_batches: int = 10
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float64"
    logistic: LogisticMap = LogisticMap()
    henon: HenonMap = HenonMap()
    lorenz: Lorenz63 = Lorenz63()
    rate_network: RateNetwork = RateNetwork()
    gru: TrainedGRU = TrainedGRU()

    def __post_init__(self):
        if self.system not in SYSTEMS:
            raise ValueError(
                f"system must be one of {', '.join(SYSTEMS)}; received {self.system!r}"
            )
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64; received {self.dtype!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, received {self.seed!r}")
        check_count(self.num_batches, "num_batches", minimum=2)
        n = self.settings.state_size()
        if self.k is not None and check_count(self.k, "k") > n:
            raise ValueError(f"k={self.k} exceeds n = {n}, the state's size of {self.system}")
        if self.settings.kind == "map":
            check_count(self.num_steps, "num_steps", minimum=self.num_batches)
            check_count(self.transient, "transient", minimum=0)
        else:
            check_number(self.interval, "interval")
            check_number(self.transient_time, "transient_time", positive=False)
            if check_number(self.duration, "duration") < self.num_batches * self.interval:
                raise ValueError(
                    f"duration={self.duration} cannot fill {self.num_batches} batches of "
                    f"intervals of {self.interval}; measure longer or use fewer batches"
                )

    @property
    def settings(self) -> Any:
        """The parameters of the chosen system (the field named after it)."""
        return getattr(self, self.system.replace("-", "_"))


class LyapunovResult(NamedTuple):
    """What `run_lyapunov` returns; every field is a plain JSON value.

    **Fields:**

    - `mode`: `"lyapunov"`.
    - `config`: `dataclasses.asdict(LyapunovConfig)`.
    - `system`: `name`, `summary`, `kind` (`"map"` or `"ode"`), `state_size` n,
      `time_per_step` (of a map's step, or an ODE's interval), `unit` of the exponents
      (`"step"` or `"unit time"`), and what building the system measured (the GRU's
      `loss_first` and `loss_last`).
    - `exponents`: the k leading exponents, per `unit`.
    - `stderr`: their standard errors from the batch means.
    - `running`: `(num_batches, k)` the running estimates after each batch.
    - `kaplan_yorke`: the Kaplan-Yorke dimension; a lower bound (k) when not resolved.
    - `kaplan_yorke_resolved`: whether the k exponents fix it (their partial sums turn
      negative, or k = n).
    - `num_steps`: steps (ODE: intervals) measured.
    - `measured`: the length measured, in `unit`s (batch b ends at
      (b + 1) measured / num_batches).
    - `timings`: `spectrum`, the seconds its computation took (kept in the stage, so
      also for a resumed run), and `total`, those of this call.
    - `dtype`: the floating-point type of the computation.
    - `resumed`: the stages taken from the folder instead of computed.
    """

    mode: str
    config: dict
    system: dict
    exponents: list
    stderr: list
    running: list
    kaplan_yorke: float
    kaplan_yorke_resolved: bool
    num_steps: int
    measured: float
    timings: dict
    dtype: str
    resumed: list


def _measure(config: LyapunovConfig) -> dict:
    """Build the system and measure its spectrum: the one stage of `run_lyapunov`."""
    system_key, frame_key = jax.random.split(jax.random.key(config.seed))
    system = config.settings.build(system_key, jnp.dtype(config.dtype))
    if system.kind == "map":
        measure = functools.partial(
            lyapunov_spectrum,
            system.fn,
            num_steps=config.num_steps,
            transient=config.transient,
            dt=system.dt,
        )
        time_per_step = system.dt
    else:
        measure = functools.partial(
            lyapunov_spectrum_ode,
            system.fn,
            duration=config.duration,
            interval=config.interval,
            transient=config.transient_time,
        )
        time_per_step = config.interval
    spectrum = jax.jit(
        lambda x0, key: measure(x0, k=config.k, num_batches=config.num_batches, key=key)
    )(system.x0, frame_key)
    exponents = np.asarray(spectrum.exponents)
    if not np.all(np.isfinite(exponents)):
        raise FloatingPointError(
            f"the exponents of {config.system} are not finite: its trajectory diverged; "
            "choose parameters with a bounded orbit"
        )
    return {
        "exponents": exponents,
        "stderr": np.asarray(spectrum.stderr),
        "running": np.asarray(spectrum.running),
        "kaplan_yorke": float(spectrum.kaplan_yorke),
        "kaplan_yorke_resolved": bool(spectrum.kaplan_yorke_resolved),
        "num_steps": int(spectrum.num_steps),
        "time_per_step": float(time_per_step),
        "info": system.info,
    }


def run_lyapunov(
    config: LyapunovConfig,
    out: str | os.PathLike | None = None,
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> LyapunovResult:
    r"""Measure the Lyapunov spectrum of the built-in system `config` names.

    The k leading exponents lambda_1 >= ... >= lambda_k of a map x_{t+1} = F(x_t)
    (per step, or per unit time for the rate network, whose step is 0.1 time units)
    or of the flow dx/dt = f(x) (per unit time), by the QR method with k JVPs per step
    (`jacscope.dynamics.lyapunov_spectrum`, `lyapunov_spectrum_ode`), the Jacobian
    never formed; the standard errors from `num_batches` batch means, and the
    Kaplan-Yorke dimension j + (lambda_1 + ... + lambda_j) / |lambda_{j+1}|.

    **Arguments:**

    - `config`: a `LyapunovConfig`.
    - `out`: the output folder; the measurement is kept there and reused by the same
      command (`None`: keep nothing).
    - `force`: discard what `out` holds and start over.
    - `progress`: called with a `jacscope.Progress` (task `"lyapunov"`, unit
      `"stages"`) as the measurement begins and once it is done.

    **Returns:** a `LyapunovResult` (also written to `out/report.json`, last).

    **Raises:** `ValueError` for `float64` without `jax_enable_x64`, before anything is
    written (the configuration checks itself when built); `jacscope.FolderError` if
    `out` holds another configuration (without `force`); `FloatingPointError` if the
    GRU's training or the trajectory diverges; `MissingExtra` for an ODE without
    diffrax.
    """
    start = time.perf_counter()
    progress = report_to(progress)
    check_x64(config.dtype)
    if config.settings.kind == "ode":
        require("diffrax", "the Lyapunov spectrum of an ODE")
    identity = {"config": dataclasses.asdict(config)}
    folder = JobFolder(out, KIND, identity, {"command": KIND, "lyapunov": config})
    with folder.claimed(force=force):
        progress(Progress("lyapunov", 0, len(STAGES), "stages"))
        measured = folder.stage("spectrum", lambda: _measure(config))
        progress(Progress("lyapunov", len(STAGES), len(STAGES), "stages"))
        settings = config.settings
        time_per_step = measured["time_per_step"]
        system = {
            "name": config.system,
            "summary": settings.summary,
            "kind": settings.kind,
            "state_size": settings.state_size(),
            "time_per_step": time_per_step,
            "unit": "step" if settings.kind == "map" and time_per_step == 1 else "unit time",
            **measured["info"],
        }
        result = LyapunovResult(
            mode=MODE,
            config=plain(dataclasses.asdict(config)),
            system=system,
            exponents=plain(measured["exponents"]),
            stderr=plain(measured["stderr"]),
            running=plain(measured["running"]),
            kaplan_yorke=measured["kaplan_yorke"],
            kaplan_yorke_resolved=measured["kaplan_yorke_resolved"],
            num_steps=measured["num_steps"],
            measured=measured["num_steps"] * time_per_step,
            timings={"spectrum": measured["seconds"], "total": time.perf_counter() - start},
            dtype=config.dtype,
            resumed=list(folder.resumed),
        )
        folder.finish(result)
        return result
