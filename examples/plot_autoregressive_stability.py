"""# Autoregressive stability: the one-step Jacobian along a learned rollout

A learned time-stepper rolled out on its own predictions amplifies its one-step errors
by the product of its one-step Jacobians, so its stability is read off their spectra
("Towards Stability of Autoregressive Neural Operators", McCabe et al., arXiv
2306.10619). Here a small convolutional neural operator learns one step of the 1-D
heat equation on a periodic grid,
u <- u + nu * Laplacian(u), whose true step is a contraction with spectral norm exactly
1 (the mean is conserved) and Lyapunov exponents log(1 - 4 nu sin^2(pi j / n)) <= 0.
Along the learned model's rollout, `jacscope.linalg.spectral_norm` of the one-step
Jacobian operator (Golub-Kahan-Lanczos, JVPs and VJPs only) and the local exponents of
`lyapunov_spectrum(..., local=True)` show where the model expands what the physics
contracts, and the rollout's error against the true solution follows them.
"""

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from jacscope import jacobian_operator
from jacscope.dynamics import lyapunov_spectrum
from jacscope.linalg import spectral_norm

jax.config.update("jax_enable_x64", True)
SMALL = os.environ.get("JACSCOPE_EXAMPLE_SIZE") == "small"
N, NU, TRAIN_STEPS, ROLLOUT = (32, 0.2, 300, 100) if SMALL else (32, 0.2, 1500, 400)


def heat_step(u):
    return u + NU * (jnp.roll(u, 1) - 2 * u + jnp.roll(u, -1))


def random_fields(key, count):
    """Smooth random periodic fields: a few random Fourier modes."""
    modes = jnp.arange(1, 6)
    amplitudes = jax.random.normal(key, (count, 2, modes.size)) / modes
    x = 2 * jnp.pi * jnp.arange(N) / N
    return jnp.einsum("cm,mx->cx", amplitudes[:, 0], jnp.sin(modes[:, None] * x)) + jnp.einsum(
        "cm,mx->cx", amplitudes[:, 1], jnp.cos(modes[:, None] * x)
    )


# %% [markdown]
# ## Training the one-step model
# Pairs (u_t, u_{t+1}) along true trajectories from random smooth fields; the model is
# residual and translation-equivariant, u + conv(tanh(conv(u))) with periodic
# stencils of width 5 and 16 channels, its output layer starting near zero.

# %%
fields = random_fields(jax.random.key(0), 256)
trajectory = [fields]
for _ in range(20):
    trajectory.append(jax.vmap(heat_step)(trajectory[-1]))
inputs = jnp.concatenate(trajectory[:-1])
targets = jnp.concatenate(trajectory[1:])
WIDTH, CHANNELS = 5, 16
k1, k2 = jax.random.split(jax.random.key(1))
params = {
    "w1": jax.random.normal(k1, (CHANNELS, WIDTH)) / WIDTH**0.5,
    "b1": jnp.zeros(CHANNELS),
    "w2": 1e-2 * jax.random.normal(k2, (CHANNELS, WIDTH)) / (CHANNELS * WIDTH) ** 0.5,
    "b2": jnp.zeros(()),
}


def stencils(u):
    """The periodic neighbourhoods of every grid point, (WIDTH, N)."""
    return jnp.stack([jnp.roll(u, shift) for shift in range(-(WIDTH // 2), WIDTH // 2 + 1)])


def model_step(params, u):
    hidden = jnp.tanh(params["w1"] @ stencils(u) + params["b1"][:, None])
    update = jnp.einsum("ck,ckn->n", params["w2"], jax.vmap(stencils)(hidden))
    return u + update + params["b2"]


def loss(params):
    return jnp.mean((jax.vmap(lambda u: model_step(params, u))(inputs) - targets) ** 2)


optimizer = optax.adam(3e-3)


@jax.jit
def train(params):
    def body(carry, _):
        params, state = carry
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = optimizer.update(grads, state)
        return (optax.apply_updates(params, updates), state), value

    (params, _), losses = jax.lax.scan(body, (params, optimizer.init(params)), None, TRAIN_STEPS)
    return params, losses


params, losses = train(params)
print(f"one-step training loss {losses[0]:.2e} -> {losses[-1]:.2e}")

# %% [markdown]
# ## The rollout and its one-step Jacobians

# %%
u0 = random_fields(jax.random.key(2), 1)[0]


def rollout(step, u, length):
    return jax.lax.scan(lambda u, _: (step(u), u), u, None, length)[1]


learned = rollout(lambda u: model_step(params, u), u0, ROLLOUT)
truth = rollout(heat_step, u0, ROLLOUT)
error = jnp.linalg.norm(learned - truth, axis=1) / jnp.linalg.norm(truth[0])


@jax.jit
def one_step_norm(u):
    return spectral_norm(jacobian_operator(model_step, params, u, wrt=1), key=jax.random.key(3))


every = max(ROLLOUT // 40, 1)
checked = np.arange(0, ROLLOUT, every)
norms = np.array([float(one_step_norm(learned[t]).value) for t in checked])
true_norm = float(spectral_norm(jacobian_operator(heat_step, u0), key=jax.random.key(3)).value)
blocks = 10
spectrum = lyapunov_spectrum(
    lambda u: model_step(params, u), u0, num_steps=ROLLOUT, k=4, local=True,
    num_batches=blocks, key=jax.random.key(4),
)  # fmt: skip
true_exponents = np.sort(np.log(1 - 4 * NU * np.sin(np.pi * np.arange(N) / N) ** 2))[::-1][:4]
print(f"true step: ||J|| = {true_norm:.6f}, exponents {np.round(true_exponents, 5)}")
print(f"learned step along the rollout: ||J_t|| from {norms.min():.4f} to {norms.max():.4f}")
print(f"learned exponents {np.round(np.asarray(spectrum.exponents), 5)}")
print(f"  standard errors {np.round(np.asarray(spectrum.stderr), 5)}")
print(f"rollout error after {ROLLOUT} steps: {float(error[-1]):.3g} of the initial norm")

fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.8))
left.plot(checked, norms, "o-", ms=3, label="learned step")
left.axhline(true_norm, color="k", ls="--", lw=0.8, label="true step")
left.set(xlabel="rollout step t", ylabel="||J_t||_2", title="one-step Jacobian's norm")
left.legend()
steps = np.arange(ROLLOUT)
for i in range(2):
    middle.plot(steps, spectrum.local[:, i], lw=0.8, label=f"local lambda_{i + 1}")
middle.axhline(0, color="grey", lw=0.8)
middle.set(xlabel="rollout step t", ylabel="rate per step", title="local exponents")
middle.legend()
right.semilogy(steps, error, lw=1.2)
right.set(xlabel="rollout step t", ylabel="relative error", title="rollout error")
fig.tight_layout()

# %%
assert abs(true_norm - 1.0) < 1e-6
assert losses[-1] < 1e-2 * losses[0]
assert np.all(np.isfinite(norms)) and spectrum.local.shape == (ROLLOUT, 4)
