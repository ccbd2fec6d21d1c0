"""The `jacscope` command line: one subcommand per module of `COMMANDS`.

Each command module exposes `add_parser(subparsers) -> argparse.ArgumentParser` and
`run(args) -> int` (the exit status). Commands parse flags, call a job from
`jacscope.jobs`, draw with `jacscope.report` and print with rich; they compute
nothing themselves.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rich.console import Console

import jacscope
from jacscope.cli import _report, _spectrum, _train_jacobian

COMMANDS = (_spectrum, _train_jacobian, _report)

_USER_ERRORS = (ValueError, FileExistsError, FloatingPointError)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `jacscope` with every command of `COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="jacscope",
        description="Jacobians of learning: spectra, training Jacobians and reports.",
    )
    parser.add_argument("--version", action="version", version=f"jacscope {jacscope.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.add_parser(subparsers).set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `jacscope` with `argv` (default: the process arguments); return the exit status.

    The host's CPU cores become JAX devices first (`jacscope.use_cpu_cores`), so that
    chunked work runs on all of them. Errors in what the user asked for
    (`ValueError`, `FileExistsError`, `FloatingPointError`) are printed as one line
    and give status 2.
    """
    args = build_parser().parse_args(argv)
    jacscope.use_cpu_cores()
    try:
        return int(args.run(args))
    except _USER_ERRORS as error:
        Console(stderr=True).print(
            f"[bold red]jacscope {args.command}: error:[/] {error}", highlight=False
        )
        return 2
