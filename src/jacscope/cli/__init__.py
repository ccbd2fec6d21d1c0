"""The `jacscope` command line: one subcommand per module of `COMMANDS`.

Each command module exposes `add_parser(subparsers) -> argparse.ArgumentParser` and
`run(args) -> int` (the exit status). Commands parse flags, call a job from
`jacscope.jobs`, draw with `jacscope.report` and print with rich; they compute
nothing themselves.
"""

from __future__ import annotations

import argparse
import errno
from collections.abc import Sequence

from rich.console import Console

import jacscope
from jacscope.cli import _report, _spectrum, _train_jacobian

COMMANDS = (_spectrum, _train_jacobian, _report)

_USER_ERRORS = (ValueError, FloatingPointError)


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

    `import jacscope` has made the host's CPU cores JAX devices (`jacscope.use_cpu_cores`),
    so that chunked work runs on all of them. What the user's situation causes is printed as
    one line and gives status 2: errors in what was asked (`ValueError`,
    `FileExistsError`, `FloatingPointError`, `jacscope.FolderError`) and the file
    system's refusals (`OSError`: a folder under a file, no permission, a read-only
    or full disk). Finished stages are kept, so the same command resumes from them.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except _USER_ERRORS as error:
        message = str(error)
    except OSError as error:
        message = _os_error_message(error, getattr(args, "out", None))
    Console(stderr=True).print(
        f"[bold red]jacscope {args.command}: error:[/] {message}", highlight=False, soft_wrap=True
    )
    return 2


def _os_error_message(error: OSError, out) -> str:
    if error.errno is None:  # raised by jacscope with its own message
        return str(error)
    what = f"{error.strerror or error}" + (f": {error.filename}" if error.filename else "")
    if error.errno == errno.ENOSPC:
        kept = f" in {out}" if out is not None else ""
        return (
            f"the disk is full ({what}); every stage finished before it is kept{kept}, "
            "and the same command resumes from them once space is free"
        )
    return what
