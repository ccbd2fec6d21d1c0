"""One JAX device per CPU core, so that work split into independent pieces fills the host.

XLA runs one program on a CPU device with little parallelism outside its matrix
products. `training_jacobian` shards its chunks of tangent columns over devices
(`jax.sharding`), so with one device per core every core works on a chunk of its
own: on a 2-core host the exact Jacobian of the default run takes about 15% less
time. JAX fixes its devices when it first runs anything, so `import jacscope` asks
for one CPU device per core, unless JAX has already started, the user chose a count
(`jax_num_cpu_devices`, `--xla_force_host_platform_device_count` in `XLA_FLAGS`),
or `JACSCOPE_CPU_DEVICES` names one (`JACSCOPE_CPU_DEVICES=1` keeps JAX's single
device). Arrays still live on the first device unless placed elsewhere.
"""

from __future__ import annotations

import os

import jax

from jacscope._validation import check_count

_FLAG = "xla_force_host_platform_device_count"
_ENV = "JACSCOPE_CPU_DEVICES"


def use_cpu_cores(count: int | None = None) -> int:
    """Expose the host's CPU as `count` JAX devices (default: one per core).

    `import jacscope` already asks for one device per core; call this before any JAX
    computation for another count. Once JAX has started, calls leave the devices as
    they are, as does an explicit `--xla_force_host_platform_device_count` in
    `XLA_FLAGS`.

    **Arguments:**

    - `count`: devices to create; default `os.cpu_count()`.

    **Returns:** the number of CPU devices in effect.

    **Raises:** `ValueError` if `count` is not a positive integer.
    """
    count = (os.cpu_count() or 1) if count is None else count
    _request(check_count(count, "count"))
    return len(jax.devices("cpu"))


def use_cpu_cores_by_default() -> None:
    """What `import jacscope` does: ask for `JACSCOPE_CPU_DEVICES` CPU devices (default
    one per core) unless a count was chosen already; JAX starts no sooner for it."""
    if jax.config.jax_num_cpu_devices != -1:  # set by the user
        return
    requested = os.environ.get(_ENV, "").strip()
    if requested and (not requested.isdigit() or int(requested) < 1):
        raise ValueError(f"{_ENV} must be a positive integer, received {requested!r}")
    _request(int(requested) if requested else os.cpu_count() or 1)


def _request(count: int) -> None:
    if _FLAG not in os.environ.get("XLA_FLAGS", ""):
        try:
            jax.config.update("jax_num_cpu_devices", count)
        except RuntimeError:  # JAX has already run something: its devices are fixed
            pass
