"""# The training Jacobian of your own equinox model

jacscope takes a model as it is. Here it is a small equinox Module written for this
example: a residual MLP whose activation function and residual scale are fields that
are not arrays. `jacscope.TrainingRun` trains its floating-point array leaves with any
optax optimizer (here SGD with Nesterov momentum behind gradient clipping) and holds
the rest fixed; `jacscope.training_jacobian` computes the exact Jacobian of the
whole run, J = d theta_T / d theta_0, with the optimizer's state differentiated
through (Belrose & Scherlis, "Understanding Gradient Descent through the Training
Jacobian", arXiv 2412.07003).

The example checks a few columns of J against `jax.jacfwd` of the run, draws the
spectrum of J with its chaotic, bulk and stable regions, and shows that
`run.parameters` gives back a Module with its static fields.
"""

# %%
import os
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

import jacscope
from jacscope.data import load_digits, make_batches
from jacscope.training import region_counts

SMALL = os.environ.get("JACSCOPE_EXAMPLE_SIZE") == "small"
HIDDEN, EPOCHS, EXAMPLES = (8, 1, 640) if SMALL else (32, 10, None)


class ResidualMLP(eqx.Module):
    """x -> W_out (h + scale * act(W_mid h)), h = act(W_in x): a user's own model."""

    w_in: jax.Array
    w_mid: jax.Array
    w_out: jax.Array
    bias: jax.Array
    activation: Callable = eqx.field(static=True)
    scale: float = eqx.field(static=True)

    def __init__(self, d_in, hidden, d_out, *, key, activation=jax.nn.silu, scale=0.5):
        k1, k2, k3 = jax.random.split(key, 3)
        self.w_in = jax.random.normal(k1, (hidden, d_in)) / jnp.sqrt(d_in)
        self.w_mid = jax.random.normal(k2, (hidden, hidden)) / jnp.sqrt(hidden)
        self.w_out = jax.random.normal(k3, (d_out, hidden)) / jnp.sqrt(hidden)
        self.bias = jnp.zeros(d_out)
        self.activation, self.scale = activation, scale

    def __call__(self, x):
        h = self.activation(self.w_in @ x)
        h = h + self.scale * self.activation(self.w_mid @ h)
        return self.w_out @ h + self.bias


def loss_fn(model, batch):
    logits = jax.vmap(model)(batch["x"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


data = load_digits()
batches = make_batches(
    data.x_train[:EXAMPLES], data.y_train[:EXAMPLES], 64, EPOCHS
)  # {"x", "y"}, step axis first
model = ResidualMLP(64, HIDDEN, 10, key=jax.random.key(0))
optimizer = optax.chain(
    optax.clip_by_global_norm(1.0), optax.sgd(0.05, momentum=0.9, nesterov=True)
)
run = jacscope.TrainingRun(model, loss_fn, optimizer, batches)
theta0, unravel = ravel_pytree(run.params0)
P = theta0.size
print(f"P = {P:,} trained parameters, T = {run.num_steps} steps")

# %%
# ## The exact training Jacobian

start = time.perf_counter()
J = jacscope.training_jacobian(run)
print(f"J: {J.shape}, {time.perf_counter() - start:.1f} s")
final = run.parameters(run.final_params())
x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
accuracy = float(jnp.mean(jnp.argmax(jax.vmap(final)(x_test), -1) == y_test))
print(f"test accuracy after training: {accuracy:.3f}")

# %%
# ## Columns of J against `jax.jacfwd`
#
# Column i of J is how theta_T moves when theta_0 moves along the i-th parameter:
# forward-mode differentiation of the whole run in the coordinates of a few columns.

columns = np.random.default_rng(0).choice(P, size=3, replace=False)
basis = jnp.eye(P, dtype=theta0.dtype)[:, columns]


@jax.jit
def final_along(c):
    return ravel_pytree(run.final_params(unravel(theta0 + basis @ c)))[0]


reference = np.asarray(jax.jacfwd(final_along)(jnp.zeros(3, theta0.dtype)))
error = np.abs(J[:, columns] - reference).max() / np.abs(reference).max()
print(f"columns {columns.tolist()}: max |J - jacfwd| / max |jacfwd| = {error:.1e}")

# %%
# ## Its spectrum

S = np.linalg.svd(J, compute_uv=False)
counts = region_counts(S)
for j, tau in enumerate(counts.taus):
    print(
        f"tau = {tau:g}: chaotic {counts.chaotic[j]}, bulk {counts.bulk[j]}, "
        f"stable {counts.stable[j]}"
    )
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
ax1.semilogy(S)
ax1.axhline(1, color="k", lw=0.5)
ax1.set(xlabel="index i", ylabel="$s_i$", title=f"Spectrum of J ({P} x {P})")
limit = np.abs(J - np.eye(P)).max()
ax2.imshow(J - np.eye(P), cmap="RdBu", vmin=-limit, vmax=limit)
ax2.set(title="J - I")
fig.tight_layout()
plt.show()

# %%
# ## Checks

assert isinstance(final, ResidualMLP) and final.activation is jax.nn.silu and final.scale == 0.5
assert error < 1e-4, error
assert np.abs(J - np.eye(P)).max() > 1e-3  # training moved the parameters' tangents
assert sum(c[0] for c in (counts.chaotic, counts.bulk, counts.stable)) == P
assert counts.largest > 1  # a chaotic direction: training amplifies some perturbations
if not SMALL:
    assert accuracy > 0.9, accuracy
