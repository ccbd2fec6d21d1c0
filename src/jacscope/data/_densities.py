"""The 2-D densities that normalising flows are shown on (as in FFJORD's experiments).

Each is sampled by `sample_density(name, key, n)`, pure and jittable, in float32:

- `eight_gaussians`: eight Gaussians of standard deviation 0.1 on the circle of radius 2;
- `checkerboard`: uniform on the black squares of a 4 x 4 board on [-2, 2]^2;
- `moons`: two interleaved half circles of radius 1, with noise 0.1 (scaled by 1.5 and
  centred);
- `pinwheel`: five arms, Gaussians sheared by an angle growing with the radius;
- `rings`: four concentric circles of radii 0.5, 1, 1.5 and 2, with noise 0.05.

Citation: Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud, "FFJORD: Free-form
Continuous Dynamics for Scalable Reversible Generative Models", ICLR, 2019.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

DENSITIES = ("eight_gaussians", "checkerboard", "moons", "pinwheel", "rings")


def _eight_gaussians(key, n):
    which, noise = jax.random.split(key)
    angle = jax.random.randint(which, (n,), 0, 8) * (jnp.pi / 4)
    centres = 2.0 * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)
    return centres + 0.1 * jax.random.normal(noise, (n, 2))


def _checkerboard(key, n):
    cell, offset = jax.random.split(key)
    # The 8 black cells of a 4 x 4 board of unit cells: (i + j) even.
    index = jax.random.randint(cell, (n,), 0, 8)
    row = index // 2
    column = 2 * (index % 2) + row % 2
    corner = jnp.stack([column, row], axis=1).astype(jnp.float32) - 2.0
    return corner + jax.random.uniform(offset, (n, 2))


def _moons(key, n):
    which, angle_key, noise = jax.random.split(key, 3)
    upper = jax.random.bernoulli(which, 0.5, (n,))
    angle = jax.random.uniform(angle_key, (n,), maxval=jnp.pi)
    top = jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)
    bottom = jnp.stack([1.0 - jnp.cos(angle), 0.5 - jnp.sin(angle)], axis=1)
    points = jnp.where(upper[:, None], top, bottom) + 0.1 * jax.random.normal(noise, (n, 2))
    return 1.5 * (points - jnp.array([0.5, 0.25]))


def _pinwheel(key, n, arms=5, radial=0.3, tangential=0.05, rate=0.25):
    which, noise = jax.random.split(key)
    arm = jax.random.randint(which, (n,), 0, arms)
    offsets = jax.random.normal(noise, (n, 2)) * jnp.array([radial, tangential])
    offsets = offsets + jnp.array([1.0, 0.0])
    angle = arm * (2 * jnp.pi / arms) + rate * jnp.exp(offsets[:, 0])
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    x = cos * offsets[:, 0] - sin * offsets[:, 1]
    y = sin * offsets[:, 0] + cos * offsets[:, 1]
    return 2.0 * jnp.stack([x, y], axis=1)


def _rings(key, n):
    which, angle_key, noise = jax.random.split(key, 3)
    radius = 0.5 * (1 + jax.random.randint(which, (n,), 0, 4))
    angle = jax.random.uniform(angle_key, (n,), maxval=2 * jnp.pi)
    circle = radius[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)
    return circle + 0.05 * jax.random.normal(noise, (n, 2))


_SAMPLERS = {
    "eight_gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "moons": _moons,
    "pinwheel": _pinwheel,
    "rings": _rings,
}


def sample_density(name: str, key: jax.Array, n: int) -> jax.Array:
    """`(n, 2)` float32 samples of the 2-D density `name` (one of `DENSITIES`).

    **Raises:** `ValueError` for an unknown name or n < 1.
    """
    if name not in _SAMPLERS:
        raise ValueError(f"sample_density: name must be one of {DENSITIES}, got {name!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"sample_density: n must be a positive integer, got {n!r}")
    return _SAMPLERS[name](key, n).astype(jnp.float32)
