"""The one progress protocol of every long computation: a callback receiving `Progress`.

A computation that runs for more than a few seconds (the exact training Jacobian's
chunks, the matrix-free stages, a job's stages) takes `progress: ProgressCallback |
None` and calls it with a `Progress` whenever work advances: once when a task begins
(`done` counts the work found finished, `total` 0 when the amount is unknown) and
after each unit of work. The command line draws every task as one rich bar.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple


class Progress(NamedTuple):
    """How far one task of a computation has come.

    **Fields:**

    - `task`: what advances (`"J"`, `"top_j"`, `"density"`, `"svd"`, a stage name).
    - `done`, `total`: units finished and in all (`total` 0: not known in advance).
    - `unit`: what is counted (`"columns"`, `"passes through training"`, `"stages"`).
    - `elapsed`: seconds this call has spent on the task.
    - `flops`: floating-point operations this call has spent on it (0 if not counted),
      so `flops / elapsed` is the achieved rate.
    """

    task: str
    done: int
    total: int
    unit: str
    elapsed: float = 0.0
    flops: float = 0.0


ProgressCallback = Callable[[Progress], None]
"""`progress(Progress)`; it must not raise (a raised exception stops the computation)."""


def report_to(progress: ProgressCallback | None) -> ProgressCallback:
    """`progress`, or a callback that ignores every report when it is `None`."""
    return progress if progress is not None else _ignore


def _ignore(update: Progress) -> None:
    del update
