"""The `jacscope` command line: one subcommand per module of `jacscope.cli._main.COMMANDS`.

Each command module exposes `add_parser(subparsers) -> argparse.ArgumentParser` and
`run(args) -> int` (the exit status). Commands parse flags (generated from the
configuration dataclasses, `_flags.py`), call a job from `jacscope.jobs`, draw with
`jacscope.report` and print with rich; they compute nothing themselves. The command
line needs the `cli` extra (`pip install 'jacscope[cli]'`); without it `main` says so
in one line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jacscope._extras import missing


def main(argv: Sequence[str] | None = None) -> int:
    """Run `jacscope` with `argv` (default: the process arguments); return the exit status.

    See `jacscope.cli._main.main`; without the packages of the `cli` extra it prints
    which are missing and returns 2.
    """
    absent = missing("cli")
    if absent:
        print(
            f"jacscope: the command line needs the 'cli' extra (missing: {', '.join(absent)}): "
            "pip install 'jacscope[cli]'",
            file=sys.stderr,
        )
        return 2
    from jacscope.cli._main import main as run

    return run(argv)
