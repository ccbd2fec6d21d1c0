"""The parser and error handling of the `jacscope` command line (see `jacscope.cli`)."""

from __future__ import annotations

import argparse
import difflib
import errno
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

import jacscope
from jacscope._extras import MissingExtra
from jacscope.cli import _flow, _lyapunov, _report, _spectrum, _train_jacobian

COMMANDS = (_spectrum, _train_jacobian, _lyapunov, _flow, _report)

_USER_ERRORS = (ValueError, FloatingPointError, MissingExtra)


class OneLineParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one line, with "did you mean" for a
    misspelt flag or choice and a pointer to `--help` instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        hint = self._suggestion(message)
        Console(stderr=True).print(
            f"[bold red]{self.prog}: error:[/] {message}{hint}; see {self.prog} --help",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)

    def _suggestion(self, message: str) -> str:
        unknown = re.match(r"unrecognized arguments: (\S+)", message)
        if unknown:
            flag = unknown.group(1).split("=")[0]
            close = difflib.get_close_matches(flag, list(self._option_string_actions), n=1)
            return f" (did you mean {close[0]}?)" if close else ""
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'([^']*)'", choice.group(2)) or choice.group(2).split(", ")
            close = difflib.get_close_matches(choice.group(1), options, n=1)
            return f" (did you mean {close[0]}?)" if close else ""
        return ""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `jacscope` with every command of `COMMANDS`."""
    parser = OneLineParser(
        prog="jacscope",
        description="Jacobians of learning: spectra, training Jacobians and reports.",
    )
    parser.add_argument("--version", action="version", version=f"jacscope {jacscope.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        command = module.add_parser(subparsers)
        command.set_defaults(run=module.run, parser=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `jacscope` with `argv` (default: the process arguments); return the exit status.

    `import jacscope` has made the host's CPU cores JAX devices (`jacscope.use_cpu_cores`),
    so that chunked work runs on all of them. What the user's situation causes is printed as
    one line and gives status 2: errors in what was asked (`ValueError`,
    `FloatingPointError`, `jacscope.FolderError`), an extra a command needs and lacks
    (`MissingExtra`: diffrax for `lyapunov --system lorenz`) and the file system's refusals
    (`OSError`: a folder under a file, no permission, a read-only or full disk). Ctrl-C
    stops with a line saying what was saved (status 130). Finished stages are kept, so
    the same command resumes from them.
    """
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # named by the command's parser, which knows the flags to suggest
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    out = getattr(args, "out", None)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        Console(stderr=True).print(
            f"[bold yellow]interrupted:[/] {_saved(out)}; rerun the same command to resume",
            highlight=False,
            soft_wrap=True,
        )
        return 130
    except _USER_ERRORS as error:
        message = str(error)
    except OSError as error:
        message = _os_error_message(error, out)
    Console(stderr=True).print(
        f"[bold red]jacscope {args.command}: error:[/] {escape(message)}",
        highlight=False,
        soft_wrap=True,
    )
    return 2


def _saved(out: Path | None) -> str:
    """What an interrupted job left in `out`: the chunks of J, or the stages."""
    if out is None:
        return "nothing was saved"
    try:
        results = jacscope.load(out)
    except (ValueError, OSError):
        return f"nothing was saved in {out}"
    if "jacobian" not in results.done and results.kind == "train-jacobian":
        finished, chunks = jacscope.training.jacobian_chunks(out)
        return f"{finished} of {chunks} chunks of J saved in {out}"
    total = len(results.done) + len(results.missing)
    return f"{len(results.done)} of {total} stages saved in {out}"


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
    if error.errno in (errno.ENOTDIR, errno.EEXIST) and out is not None and Path(out).is_file():
        return f"--out {out} is a file, not a folder; choose a folder"
    return what
