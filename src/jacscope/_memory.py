"""Peak resident memory of this process, for the reports of long jobs."""

from __future__ import annotations

import resource
import sys


def peak_memory_mib() -> float:
    """Peak resident set size of this process so far (`ru_maxrss`), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB
