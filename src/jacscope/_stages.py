"""Stages of a long computation, and where the finished ones are kept.

A capability that runs in stages (the matrix-free analysis: top-k of J, of J - I, one
probe batch of the density at a time) computes each through `Stages.stage(name,
compute, depends=...)`. The base class keeps nothing, so every stage is computed;
`jacscope.jobs.JobFolder` keeps each finished stage in its output folder and gives it
back to a later call computed from the same `depends`, so a killed job resumes.
Capabilities compute, jobs store: the capability never touches a file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np


def plain(value: Any) -> Any:
    """`value` as JSON: NamedTuples and dicts as dicts, tuples as lists, NumPy and JAX
    scalars as Python numbers, non-finite floats as `None`."""
    if hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, jax.Array | np.ndarray):
        return plain(np.asarray(value).tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def split_arrays(value: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The fields of a stage's value (a NamedTuple or a dict) as (JSON numbers, arrays)."""
    fields = dict(value._asdict() if hasattr(value, "_asdict") else value)
    arrays = {k: np.asarray(v) for k, v in fields.items() if isinstance(v, np.ndarray)}
    return plain({k: v for k, v in fields.items() if k not in arrays}), arrays


class Stages:
    """Where finished stages are kept: here, nowhere (every stage is computed).

    `resumed` lists the stages given back instead of computed.
    """

    def __init__(self):
        self.resumed: list[str] = []

    def load(self, name: str, depends: Mapping[str, Any] | None = None) -> dict | None:
        """The finished stage `name` computed from `depends`, or `None`."""
        del name, depends
        return None

    def save(
        self, name: str, value: Any, *, depends: Mapping[str, Any] | None = None, seconds=0.0
    ) -> dict:
        """Keep a finished stage; **returns** it as `load` would give it back: its JSON
        numbers and its arrays in one dict, with `seconds`."""
        del name, depends
        numbers, arrays = split_arrays(value)
        return {**numbers, **arrays, "seconds": float(seconds)}

    def stage(
        self, name: str, compute: Callable[[], Any], *, depends: Mapping[str, Any] | None = None
    ) -> dict:
        """Stage `name`: given back when it finished from `depends`, else computed by
        `compute()` (a NamedTuple or a dict) and kept at once."""
        saved = self.load(name, depends)
        if saved is not None:
            self.resumed.append(name)
            return saved
        start = time.perf_counter()
        value = compute()
        return self.save(name, value, depends=depends, seconds=time.perf_counter() - start)
