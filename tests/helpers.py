"""Assertions and references shared by the test modules."""

import jax
import numpy as np


def tree_allclose(a, b, rtol=1e-10, atol=1e-10) -> bool:
    """Whether two pytrees have the same structure and element-wise close leaves."""
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    if tree_a != tree_b:
        return False
    return all(
        np.allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)
        for x, y in zip(leaves_a, leaves_b, strict=True)
    )
