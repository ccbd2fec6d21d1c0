"""Rich progress bars for `jacscope.Progress` reports: one bar per task, for every command."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from jacscope._progress import Progress as Update


class Bars:
    """The bars of one command: `bars(update)` draws a `jacscope.Progress` report;
    `last` holds the latest report of every task (what an interruption had reached)."""

    def __init__(self, progress: Progress):
        self._progress = progress
        self._tasks: dict[str, int] = {}
        self.last: dict[str, Update] = {}

    def __call__(self, update: Update) -> None:
        self.last[update.task] = update
        rate = (
            f"{update.flops / update.elapsed / 1e9:.1f} GFLOP/s"
            if update.elapsed > 0 and update.flops
            else ""
        )
        total = update.total or None
        if update.task not in self._tasks:
            self._tasks[update.task] = self._progress.add_task(
                update.task, total=total, completed=update.done, unit=update.unit, rate=rate
            )
        else:
            self._progress.update(
                self._tasks[update.task], completed=update.done, total=total, rate=rate
            )

    def log(self, message: str) -> None:
        """Print a line above the bars."""
        self._progress.console.log(message)


@contextlib.contextmanager
def progress_bars(console: Console) -> Iterator[Bars]:
    """Draw the reports of the block's computation as bars on `console`."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[rate]}"),
    )
    with Progress(*columns, console=console) as progress:
        yield Bars(progress)


def run_job(args, config, run, write_report, report_tables) -> int:
    """A job command's run, written once: `run(config, out, force, progress)` under
    progress bars, `write_report(out, result)`, the `report_tables(report)` printed,
    what was reused and what was written."""
    console = Console(log_path=False)
    with progress_bars(console) as bars:
        result = run(config, args.out, force=args.force, progress=bars)
        bars.log("writing report.html")
        html_path = write_report(args.out, result)
    for table in report_tables(result._asdict()):
        console.print(table)
    if result.resumed:
        console.print(f"reused from {args.out}: {', '.join(result.resumed)}")
    console.print(f"wrote {html_path} and {Path(args.out) / 'report.json'}")
    return 0
