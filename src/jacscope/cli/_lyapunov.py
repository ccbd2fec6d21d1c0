"""`jacscope lyapunov`: the Lyapunov spectrum of a built-in dynamical system."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import jax
from rich.table import Table

from jacscope.cli._flags import add_flags, add_folder_flags, flag_name, given, given_flags, merged
from jacscope.cli._progress import run_job
from jacscope.dynamics import SYSTEMS
from jacscope.jobs import LyapunovConfig, run_lyapunov
from jacscope.jobs._config_file import build, read_toml
from jacscope.jobs.lyapunov import KIND_FIELDS
from jacscope.report import (
    EXPONENT_HEADERS,
    exponent_rows,
    kaplan_yorke_text,
    write_lyapunov_report,
)
from jacscope.report._html import human_seconds


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `lyapunov` with the `jacscope` subcommand parsers."""
    parser = subparsers.add_parser(
        "lyapunov",
        help="Lyapunov spectrum of a built-in system (logistic, henon, lorenz, rate-network, gru)",
        description=(
            "Measure the k leading Lyapunov exponents of a built-in system by the QR method "
            "(Jacobian-vector products, never the Jacobian), with standard errors from "
            "batch means and the Kaplan-Yorke dimension, or 'unresolved' when k exponents "
            f"cannot fix it. Systems: {', '.join(SYSTEMS)}; the flags of a system's "
            "parameters start with its name. Writes DIR/job.json, DIR/config.toml, "
            "DIR/stages/, DIR/report.html and, last, DIR/report.json; the same command on "
            "a finished folder recomputes nothing; --config DIR/config.toml reproduces a run."
        ),
    )
    add_folder_flags(parser)
    add_flags(parser.add_argument_group("lyapunov"), "lyapunov", LyapunovConfig)
    return parser


_KIND_NAMES = {"map": "maps", "ode": "ODEs"}


def _refuse_other_system(args: argparse.Namespace, config: LyapunovConfig) -> None:
    """A flag of another system's parameters, or of the other kind, is an error."""
    chosen = config.system.replace("-", "_")
    for name in SYSTEMS:
        field = name.replace("-", "_")
        if field != chosen and given_flags(args, "lyapunov", field):
            flags = ", ".join(given_flags(args, "lyapunov", field))
            raise ValueError(f"{flags} apply to --system {name}, not {config.system}")
    kind = config.settings.kind
    for other, fields in KIND_FIELDS.items():
        names = {flag_name(f"lyapunov.{field}") for field in fields}
        wrong = [flag for flag in given_flags(args, "lyapunov") if flag in names]
        if other != kind and wrong:
            systems = [name for name, cls in SYSTEMS.items() if cls.kind == other]
            raise ValueError(
                f"{', '.join(wrong)} apply to the {_KIND_NAMES[other]} "
                f"({', '.join(systems)}), not to {config.system}"
            )


def configuration(args: argparse.Namespace) -> LyapunovConfig:
    """The configuration: from `--config` if given, the flags on top; checked before any
    work."""
    file = read_toml(args.config) if args.config is not None else {}
    values = merged(file.get("lyapunov", {}), given(args, "lyapunov"))
    config = build(LyapunovConfig, values, "lyapunov")
    _refuse_other_system(args, config)
    return config


def report_tables(report: Mapping[str, Any]) -> list[Table]:
    """The rich tables of a Lyapunov report: the exponents and a summary."""
    system = report["system"]
    exponents = Table(title=f"Lyapunov exponents of {system['name']} (per {system['unit']})")
    for name in EXPONENT_HEADERS:
        exponents.add_column(name, justify="right")
    for row in exponent_rows(report):
        exponents.add_row(*(str(cell) for cell in row))
    summary = Table(show_header=False)
    summary.add_column("quantity", style="bold")
    summary.add_column("value")
    summary.add_row("system", f"{system['summary']} (n = {system['state_size']:,})")
    summary.add_row("Kaplan-Yorke dimension", kaplan_yorke_text(report))
    summary.add_row(
        "measured",
        f"{report['num_steps']:,} {'steps' if system['kind'] == 'map' else 'intervals'} "
        f"in {report['config']['num_batches']} batches",
    )
    summary.add_row(
        "time",
        f"spectrum {human_seconds(report['timings']['spectrum'])}, "
        f"total (this call) {human_seconds(report['timings']['total'])}",
    )
    return [exponents, summary]


def run(args: argparse.Namespace) -> int:
    """Compute (or resume) the spectrum, write report.html, print the tables."""
    config = configuration(args)
    if config.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    return run_job(args, config, run_lyapunov, write_lyapunov_report, report_tables)
