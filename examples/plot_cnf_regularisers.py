"""# A continuous normalising flow on eight Gaussians, with and without its regularisers

A flow dz/dt = f(t, z; theta) is trained by maximum likelihood on samples of eight
Gaussians on a circle (FFJORD, Grathwohl et al. 2019): `cnf_log_density` solves each
point back to the standard-normal base with the exact divergence (d = 2). Three runs
from the same initialisation: unregularised; RNODE's kinetic energy and Jacobian
Frobenius penalties (Finlay et al. 2020, `penalties=True`, integrated in the same
solve); and the local-error regulariser of Pal et al. (2023, `local_error`, the solver's
step count implied by its error estimate at a random time). For each: the held-out
negative log-likelihood, the solver's steps per solve, and the learned density.
"""

# %%
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from jacscope.data import sample_density
from jacscope.flows import (
    cnf_log_density,
    concat_field,
    init_concat_field,
    maximum_likelihood_loss,
)

SMALL = os.environ.get("JACSCOPE_EXAMPLE_SIZE") == "small"
HIDDEN, ITERATIONS, BATCH = ((32, 32), 80, 128) if SMALL else ((64, 64, 64), 600, 256)


def train(regulariser):
    optimizer = optax.adam(1e-3)
    params = init_concat_field(jax.random.key(0), 2, HIDDEN)
    state = optimizer.init(params)

    @jax.jit
    def step(params, state, key):
        data_key, loss_key = jax.random.split(key)
        x = sample_density("eight_gaussians", data_key, BATCH)
        grads = jax.grad(maximum_likelihood_loss)(
            params, x, loss_key, regulariser=regulariser.replace(" ", "-")
        )
        updates, state = optimizer.update(grads, state)
        return optax.apply_updates(params, updates), state

    start = time.perf_counter()
    for key in jax.random.split(jax.random.key(1), ITERATIONS):
        params, state = step(params, state, key)
    return params, time.perf_counter() - start


test_x = sample_density("eight_gaussians", jax.random.key(2), 512)
evaluate = jax.jit(jax.vmap(lambda params, x: cnf_log_density(concat_field, params, x), (None, 0)))
untrained = float(
    -evaluate(init_concat_field(jax.random.key(0), 2, HIDDEN), test_x).log_density.mean()
)
results = {}
for regulariser in ("none", "rnode", "local error"):
    params, seconds = train(regulariser)
    runs = evaluate(params, test_x)
    results[regulariser] = params
    nll, steps = float(-runs.log_density.mean()), float(runs.num_steps.mean())
    print(
        f"{regulariser:>12}: test NLL {nll:.3f} (untrained {untrained:.3f}), "
        f"{steps:.1f} steps per solve, trained in {seconds:.0f} s"
    )
    assert np.isfinite(nll) and nll < untrained - 0.5, (regulariser, nll, untrained)

# %%
# The learned densities on a grid, beside the data.
side = 60 if SMALL else 120
axis = np.linspace(-3, 3, side)
grid = jnp.asarray(np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2), jnp.float32)
fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
axes[0].hist2d(
    *np.asarray(sample_density("eight_gaussians", jax.random.key(3), 20000)).T,
    bins=side,
    range=[[-3, 3], [-3, 3]],
    cmap="magma",
)
axes[0].set_title("data")
for ax, (name, params) in zip(axes[1:], results.items(), strict=True):
    density = np.exp(np.asarray(evaluate(params, grid).log_density)).reshape(side, side)
    ax.imshow(density, origin="lower", extent=(-3, 3, -3, 3), cmap="magma")
    ax.set_title(f"flow, {name}")
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
plt.show()
