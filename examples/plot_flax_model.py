"""# The training Jacobian of a flax model trained with AdamW

A flax linen model is trained on its variables as `model.init` returns them (here a
small MLP with a layer norm), with `optax.adamw` and a warm-up cosine schedule: the
Adam moments, the step count and the decoupled weight decay are all part of the run
that `jacscope.TrainingRun` differentiates. The exact training Jacobian
J = d theta_T / d theta_0 (Belrose & Scherlis, "Understanding Gradient Descent
through the Training Jacobian", arXiv 2412.07003) comes from
`jacscope.training_jacobian`; the same J without forming it from
`jacscope.training_jacobian_operator`, whose products are a JVP and a VJP through
the whole run. Adam's sqrt(v) has an infinite derivative at v = 0, so the optimizer
is given `eps_root > 0` (without it jacscope reports that the tangents overflowed).
(flax nnx State works the same way: pass `nnx.split(model)[1]`.)

The example checks a column of J against `jax.jacfwd` of the run and the operator's
products against the dense J, and compares the spectrum of this adaptive run with the
bands of the paper's three regions.
"""

# %%
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import linen
from jax.flatten_util import ravel_pytree

import jacscope
from jacscope.data import load_digits, make_batches
from jacscope.training import region_counts

SMALL = os.environ.get("JACSCOPE_EXAMPLE_SIZE") == "small"
HIDDEN, EPOCHS, EXAMPLES = (8, 1, 640) if SMALL else (32, 10, None)


class MLP(linen.Module):
    hidden: int

    @linen.compact
    def __call__(self, x):
        x = linen.gelu(linen.LayerNorm()(linen.Dense(self.hidden)(x)))
        return linen.Dense(10)(x)


data = load_digits()
batches = make_batches(data.x_train[:EXAMPLES], data.y_train[:EXAMPLES], 64, EPOCHS)
num_steps = batches["x"].shape[0]
model = MLP(HIDDEN)
variables = model.init(jax.random.key(0), batches["x"][0])


def loss_fn(variables, batch):
    logits = model.apply(variables, batch["x"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-2, max(1, num_steps // 10), num_steps)
# eps_root > 0 keeps sqrt(v + eps_root) differentiable where a gradient entry is zero
optimizer = optax.adamw(schedule, weight_decay=1e-3, eps_root=1e-8)
run = jacscope.TrainingRun(variables, loss_fn, optimizer, batches)
theta0, unravel = ravel_pytree(run.params0)
P = theta0.size
print(f"P = {P:,}, T = {run.num_steps} steps of AdamW")

# %%
# ## Exact J and the matrix-free operator

start = time.perf_counter()
J = jacscope.training_jacobian(run)
print(f"exact J {J.shape}: {time.perf_counter() - start:.1f} s")
op = jacscope.training_jacobian_operator(run)
key_v, key_w = jax.random.split(jax.random.key(1))
v = jax.random.normal(key_v, (P,), theta0.dtype)
w = jax.random.normal(key_w, (P,), theta0.dtype)
Jv, JTw = np.asarray(op.mv(v)), np.asarray(op.rmv(w))
print(f"|Jv - J v| / |J v| = {np.linalg.norm(Jv - J @ v) / np.linalg.norm(J @ v):.1e}")
print(f"|J^T w - J^T w| / |J^T w| = {np.linalg.norm(JTw - J.T @ w) / np.linalg.norm(J.T @ w):.1e}")

final = run.parameters(run.final_params())
x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
accuracy = float(jnp.mean(jnp.argmax(model.apply(final, x_test), -1) == y_test))
print(f"test accuracy: {accuracy:.3f}")

# %%
# ## A column of J against `jax.jacfwd`

column = int(np.argmax(np.abs(J - np.eye(P)).sum(axis=0)))  # the column training moves most


@jax.jit
def final_along(c):
    return ravel_pytree(run.final_params(unravel(theta0.at[column].add(c))))[0]


reference = np.asarray(jax.jacfwd(final_along)(jnp.zeros((), theta0.dtype)))
error = np.abs(J[:, column] - reference).max() / np.abs(reference).max()
print(f"column {column}: max |J - jacfwd| / max |jacfwd| = {error:.1e}")

# %%
# ## Spectrum

S = np.linalg.svd(J, compute_uv=False)
counts = region_counts(S)
fig, ax = plt.subplots(figsize=(6, 4))
ax.semilogy(S)
for tau in counts.taus:
    ax.axhspan(1 - tau, 1 + tau, alpha=0.2, label=f"bulk at tau = {tau:g}")
ax.set(xlabel="index i", ylabel="$s_i$", title=f"AdamW run of a flax MLP, P = {P}")
ax.legend()
plt.show()
for j, tau in enumerate(counts.taus):
    print(
        f"tau = {tau:g}: chaotic {counts.chaotic[j]}, bulk {counts.bulk[j]}, "
        f"stable {counts.stable[j]}"
    )

# %%
# ## Checks

assert error < 1e-4, error
assert np.linalg.norm(Jv - J @ v) <= 1e-4 * np.linalg.norm(J @ v)
assert np.linalg.norm(JTw - J.T @ w) <= 1e-4 * np.linalg.norm(J.T @ w)
assert np.abs(J - np.eye(P)).max() > 1e-3
assert jax.tree.structure(final) == jax.tree.structure(variables)
if not SMALL:
    assert accuracy > 0.9, accuracy
