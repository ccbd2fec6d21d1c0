"""One JAX device per CPU core, so that work split into independent pieces fills the host.

XLA runs one program on a CPU device with little parallelism outside its matrix
products. `training_jacobian` shards its chunks of tangent columns over devices
(`jax.sharding`), so with one device per core every core works on a chunk of its
own: on a 2-core host the exact Jacobian of the default run takes about 15% less
time. JAX fixes its devices when it first runs anything, so this must come first.
"""

from __future__ import annotations

import os

import jax

_FLAG = "xla_force_host_platform_device_count"


def use_cpu_cores(count: int | None = None) -> int:
    """Expose the host's CPU as `count` JAX devices (default: one per core).

    Call it right after `import jax`, before any JAX computation; the command line
    does. Later calls leave the devices as they are, as does an explicit
    `--xla_force_host_platform_device_count` in `XLA_FLAGS`.

    **Arguments:**

    - `count`: devices to create; default `os.cpu_count()`.

    **Returns:** the number of CPU devices in effect.

    **Raises:** `ValueError` if `count` is not a positive integer.
    """
    count = (os.cpu_count() or 1) if count is None else count
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, received {count!r}")
    if _FLAG not in os.environ.get("XLA_FLAGS", ""):
        try:
            jax.config.update("jax_num_cpu_devices", count)
        except RuntimeError:  # JAX has already run something: its devices are fixed
            pass
    return len(jax.devices("cpu"))
