"""Memory in messages and reports: the peak resident memory of this process, and byte
counts written for people."""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys


def peak_memory_mib() -> float:
    """Peak resident set size of this process so far (`ru_maxrss`), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


def format_bytes(num: float) -> str:
    """A byte count in binary units with three significant digits: `1536` -> `"1.5 KiB"`,
    `4810**2 * 4` -> `"88.3 MiB"`."""
    value = float(num)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{value:.0f} B" if unit == "B" else f"{value:.3g} {unit}"


def release_freed_memory() -> None:
    """Hand the heap memory already freed back to the operating system (glibc's
    `malloc_trim`; a no-op elsewhere). XLA's compiler frees what it used once a program
    is built, but the C allocator keeps those pages; released, they are not counted
    again in the process's peak when a long computation fills its result."""
    if not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
