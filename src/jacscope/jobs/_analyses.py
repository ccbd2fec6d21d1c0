"""The analyses of the exact training Jacobian, registered in one place.

Each `Analysis` says what it needs (the singular vectors, further exact Jacobians of
other runs), which settings its result depends on and how it is computed from the job's
state; `ANALYSES` lists them in the order they run. The job runs them, the report has
one section per name (`jacscope.report.SECTIONS`), and the command line offers the
names as `--analyses` choices; a test checks that the three agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jacscope._parameters import ravel_parameters
from jacscope.dynamics import training_lyapunov_spectrum
from jacscope.models import cross_entropy
from jacscope.training import (
    DEFAULT_EPS,
    DEFAULT_TAUS,
    TrainingConfig,
    alignment,
    bulk_order,
    data_dependence,
    function_space_overlap,
    output_sensitivity,
    perturbation_response,
    probe_inputs,
    region_counts,
    restricted_training,
    seed_overlap,
)

TAUS = DEFAULT_TAUS
RESTRICTED_FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.4)
"""Subspace dimensions of the restricted-training analysis, as fractions of P."""

DATA_VARIANTS = (
    ("real", {"labels": "real", "inputs": "real"}),
    ("shuffled labels", {"labels": "shuffled", "inputs": "real"}),
    ("noise inputs", {"labels": "real", "inputs": "noise"}),
)
"""The runs of the `data` analysis: the same initialisation on three distributions."""


class Analysis(NamedTuple):
    """One analysis of the exact training Jacobian.

    **Fields:**

    - `name`: its name on the command line, in the folder and in the report.
    - `summary`: what it measures, in one line (the `--analyses` help).
    - `needs_vectors`: whether it reads U and Vt (a full SVD) besides S.
    - `extra_runs`: `config -> {slug: TrainingConfig}`, the further runs whose exact
      Jacobians it reads (each as costly as the main one).
    - `settings`: `job -> dict`, the settings its result depends on.
    - `compute`: `(job, settings) -> NamedTuple`, the result (a `jacscope.training` one).
    - `default`: whether it runs unless `--analyses` says otherwise.
    """

    name: str
    summary: str
    needs_vectors: bool
    extra_runs: Callable[[TrainingConfig], dict[str, TrainingConfig]]
    settings: Callable[[Any], dict]
    compute: Callable[[Any, dict], Any]
    default: bool = True


def _no_runs(config: TrainingConfig) -> dict[str, TrainingConfig]:
    del config
    return {}


def _taus(job: Any) -> dict:
    del job
    return {"taus": list(TAUS)}


def _data_runs(config: TrainingConfig) -> dict[str, TrainingConfig]:
    base = dataclasses.replace(config, labels="real", inputs="real")
    runs = {}
    for label, change in DATA_VARIANTS:
        variant = dataclasses.replace(base, **change)
        if variant != config:
            runs[label.replace(" ", "_")] = variant
    return runs


def _seed_runs(config: TrainingConfig) -> dict[str, TrainingConfig]:
    return {f"seed_{config.seed + 1}": dataclasses.replace(config, seed=config.seed + 1)}


def _test_loss_fn(job: Any) -> Callable:
    x = jnp.asarray(job.setup.dataset.x_test)
    y = jnp.asarray(job.setup.dataset.y_test)
    apply_fn = job.setup.apply_fn
    return lambda params: cross_entropy(apply_fn(params, x), y)


def _spectrum(job, settings):
    return region_counts(job.singular_values(), settings["taus"])


def _alignment(job, settings):
    U, S, Vt = job.singular_vectors()
    return alignment(U, S, Vt, settings["taus"])


def _linearity(job, settings):
    U, S, Vt = job.singular_vectors()
    return perturbation_response(
        job.setup.run,
        U,
        S,
        Vt,
        [int(bulk_order(S)[0]), 0],
        labels=settings["directions"],
        eval_fn=_test_loss_fn(job),
        eps=settings["eps"],
    )


def _restricted(job, settings):
    _, S, Vt = job.singular_vectors()
    run = job.setup.run
    return restricted_training(
        job.setup.loss_fn,
        job.setup.optimizer,
        run.params0,
        run.batches,
        S,
        Vt,
        settings["ks"],
        eval_fn=_test_loss_fn(job),
    )


def _outputs(job, settings):
    _, S, Vt = job.singular_vectors()
    data = job.setup.dataset
    return output_sensitivity(
        job.setup.apply_fn,
        job.theta_T,
        Vt,
        probe_inputs(data.x_train, data.x_test, jax.random.key(settings["noise_seed"])),
        scale=settings["scale"],
        singular_values=S,
        taus=settings["taus"],
    )


def _function_space(job, settings):
    _, S, Vt = job.singular_vectors()
    return function_space_overlap(
        job.setup.apply_fn,
        job.setup.run.params0,
        jnp.asarray(job.setup.dataset.x_test),
        Vt,
        singular_values=S,
        taus=settings["taus"],
    )


def _data(job, settings):
    base = dataclasses.replace(job.config, labels="real", inputs="real")
    spectra = {}
    for label, change in DATA_VARIANTS:
        variant = dataclasses.replace(base, **change)
        if variant == job.config:
            spectra[label] = job.singular_values()
        else:
            spectra[label] = job.extra_spectrum(label.replace(" ", "_"), variant)[0]
    return data_dependence(spectra, settings["taus"])


def _seeds(job, settings):
    _, S, Vt = job.singular_vectors()
    ((slug, other),) = _seed_runs(job.config).items()
    S2, Vt2 = job.extra_spectrum(slug, other, vectors=True)
    return seed_overlap(
        S, Vt, S2, Vt2, taus=settings["taus"], principal_tau=settings["principal_tau"]
    )


def _lyapunov(job, settings):
    return training_lyapunov_spectrum(
        job.setup.run,
        k=settings["k"],
        num_phases=settings["num_phases"],
        singular_values=job.singular_values(),
        key=jax.random.key(settings["seed"]),
    )


LYAPUNOV_EXPONENTS = 20
"""Exponents of the `lyapunov` analysis (at most the state's size)."""


ANALYSES = {
    analysis.name: analysis
    for analysis in (
        Analysis(
            "spectrum",
            "chaotic, bulk and stable counts per tau (always run)",
            False,
            _no_runs,
            _taus,
            _spectrum,
        ),
        Analysis(
            "alignment",
            "cos(u_i, v_i) per region",
            True,
            _no_runs,
            _taus,
            _alignment,
        ),
        Analysis(
            "linearity",
            "theta_T's response to theta_0 + eps v_i against s_i eps",
            True,
            _no_runs,
            lambda job: {
                "taus": list(TAUS),
                "directions": ["bulk", "top"],
                "eps": list(DEFAULT_EPS),
            },
            _linearity,
        ),
        Analysis(
            "restricted",
            "test loss of training restricted to k singular directions",
            True,
            _no_runs,
            lambda job: {"ks": job.restricted_ks},
            _restricted,
        ),
        Analysis(
            "outputs",
            "KL of the predictions when theta_T moves along v_i",
            True,
            _no_runs,
            lambda job: {"taus": list(TAUS), "scale": 1.0, "noise_seed": job.config.seed},
            _outputs,
        ),
        Analysis(
            "function_space",
            "share of each v_i in the nullspace of the output Jacobian",
            True,
            _no_runs,
            _taus,
            _function_space,
        ),
        Analysis(
            "data",
            "spectra on shuffled labels and noise inputs (two more exact Jacobians)",
            False,
            _data_runs,
            _taus,
            _data,
            default=False,
        ),
        Analysis(
            "seeds",
            "overlap of the bulks of two initialisations (one more exact Jacobian)",
            True,
            _seed_runs,
            lambda job: {
                "taus": list(TAUS),
                "principal_tau": 1e-2,
                "other_seed": job.config.seed + 1,
            },
            _seeds,
            default=False,
        ),
        Analysis(
            "lyapunov",
            "Lyapunov exponents of the training map beside log s_i / T",
            False,
            _no_runs,
            lambda job: {
                "k": min(LYAPUNOV_EXPONENTS, ravel_parameters(job.setup.run.params0)[0].size),
                "num_phases": 5,
                "seed": job.config.seed,
            },
            _lyapunov,
            default=False,
        ),
    )
}
"""Every analysis, by name, in the order the job runs them."""

DEFAULT_ANALYSES = tuple(name for name, analysis in ANALYSES.items() if analysis.default)
"""The analyses run unless asked otherwise: all but `data` and `seeds`, which need
further exact Jacobians, and `lyapunov`, which runs the training map's tangents."""


def parse_analyses(names: str | Any) -> tuple[str, ...]:
    """Analysis names from a list or a comma-separated string (`"all"`, `"default"`).

    **Returns:** the names in `ANALYSES` order, `"spectrum"` always included.

    **Raises:** `ValueError` naming an unknown analysis.
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    chosen = {"spectrum"}
    for name in names:
        if name == "all":
            chosen.update(ANALYSES)
        elif name == "default":
            chosen.update(DEFAULT_ANALYSES)
        elif name in ANALYSES:
            chosen.add(name)
        else:
            raise ValueError(
                f"unknown analysis {name!r}; choose from {', '.join(ANALYSES)}, all, default"
            )
    return tuple(name for name in ANALYSES if name in chosen)
