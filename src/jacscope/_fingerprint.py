"""Fingerprints of what a stored result depends on: arrays, JSON values and programs.

A result folder records the hash of everything its content depends on, so that a
later call that would compute something else is refused instead of being served the
old result. Arrays are hashed by structure, dtype, shape and bytes; a program (a
training step) by its jaxpr, which holds the operations, their static parameters and
literals (a learning rate, a schedule's constants, the loss), together with the
values of the arrays it closes over.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jacscope._validation import is_prng_key

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def hash_tree(tree: Any) -> str:
    """SHA-256 of a pytree of arrays: structure, shapes, dtypes and bytes (typed PRNG
    keys by their key data)."""
    digest = hashlib.sha256()
    leaves, treedef = jax.tree.flatten(tree)
    digest.update(str(treedef).encode())
    for leaf in leaves:
        if is_prng_key(leaf):
            digest.update(str(leaf.dtype).encode())
            leaf = jax.random.key_data(leaf)
        arr = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{arr.dtype.str}{arr.shape}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def hash_json(value: Any, what: str) -> str:
    """SHA-256 of a JSON-able value (keys sorted); `ValueError` naming `what` if it is
    not JSON-able."""
    try:
        text = json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be JSON-serialisable: {err}") from None
    return hashlib.sha256(text.encode()).hexdigest()


def hash_program(fn: Callable, *args: Any) -> str:
    """SHA-256 of `fn` as a program at `args`: the text of its jaxpr (operations, shapes,
    dtypes, static parameters and literals; function addresses removed, so the hash is
    the same in every process) and the values of the constants it closes over."""
    closed = jax.make_jaxpr(fn)(*args)
    digest = hashlib.sha256(_ADDRESS.sub("", str(closed.jaxpr)).encode())
    digest.update(hash_tree(list(closed.consts)).encode())
    return digest.hexdigest()


def combined_hash(fingerprint: dict[str, str]) -> str:
    """One hash of named hashes."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()


def differing(stored: dict[str, str], current: dict[str, str]) -> list[str]:
    """The names whose hashes differ between two fingerprints (either side missing too)."""
    return sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
