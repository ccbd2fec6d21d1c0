"""# Jacobian descent, one objective per example (IWRM)

Instance-wise risk minimisation treats every training example as an objective: each
step computes the B x P Jacobian of a minibatch's B per-example losses and aggregates
its rows with UPGrad, which projects each example's gradient onto the dual cone of all
of them, so that the update conflicts with no example's loss (Quinton & Rey, "Jacobian
Descent for Multi-Objective Optimization", arXiv 2406.16232). Here an MLP 64 -> 64 ->
10 is trained on digits with UPGrad and with the gradient of the mean loss, each under
SGD and under Adam, with the same minibatches, steps and learning rates, over several
initialisations; the figure shows the training loss and the test accuracy over epochs.
`jacscope.descent.jacobian_descent` is the optax transformation:
`optax.chain(jacobian_descent(upgrad), optax.sgd(lr))`.
"""

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jacscope.data import load_digits, make_batches
from jacscope.descent import jacobian_descent, mean, upgrad
from jacscope.models import accuracy, cross_entropy, init_mlp, mlp_apply

SMALL = os.environ.get("JACSCOPE_EXAMPLE_SIZE") == "small"
EPOCHS, SEEDS, BATCH = (2, 2, 16) if SMALL else (15, 3, 32)

data = load_digits()
batches = make_batches(data.x_train, data.y_train, BATCH, EPOCHS)
steps_per_epoch = len(data.x_train) // BATCH
x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test)


def example_losses(params, batch):
    """The B per-example cross-entropies of a minibatch: the objectives."""
    logits = mlp_apply(params, batch["x"])
    return jax.vmap(cross_entropy)(logits, batch["y"])


OPTIMIZERS = {"SGD": optax.sgd(0.1), "Adam": optax.adam(1e-3)}
METHODS = {
    f"{name} + {base}": optax.chain(jacobian_descent(aggregator), OPTIMIZERS[base])
    for base in OPTIMIZERS
    for name, aggregator in (("mean", mean), ("UPGrad", upgrad))
}


def train(tx, params):
    """Train over `batches`; the training loss and test accuracy after every epoch."""

    def step(carry, batch):
        params, state = carry
        jacobian = jax.jacrev(example_losses)(params, batch)  # leaves (B, ...)
        updates, state = tx.update(jacobian, state, params)
        return (optax.apply_updates(params, updates), state), None

    def epoch(carry, epoch_batches):
        carry, _ = jax.lax.scan(step, carry, epoch_batches)
        params = carry[0]
        train_loss = cross_entropy(mlp_apply(params, x_train), y_train)
        return carry, (train_loss, accuracy(mlp_apply(params, x_test), y_test))

    per_epoch = jax.tree.map(lambda a: a.reshape(EPOCHS, steps_per_epoch, *a.shape[1:]), batches)
    _, (losses, accuracies) = jax.lax.scan(epoch, (params, tx.init(params)), per_epoch)
    return losses, accuracies


# %%
# ## Train every method from the same initialisations

inits = [init_mlp(jax.random.key(seed), (64, 64, 10)) for seed in range(SEEDS)]
curves = {}
for name, tx in METHODS.items():
    run = jax.jit(lambda params, tx=tx: train(tx, params))
    runs = [run(params) for params in inits]
    curves[name] = tuple(np.stack([np.asarray(r[i]) for r in runs]) for i in (0, 1))

print(f"digits, MLP 64-64-10, batch {BATCH}, {EPOCHS} epochs, {SEEDS} seeds (mean +- std)")
print(f"{'method':<14} {'train loss':>18} {'test accuracy':>18}")
for name, (losses, accuracies) in curves.items():
    print(
        f"{name:<14} {losses[:, -1].mean():>10.4f} +- {losses[:, -1].std():.4f}"
        f" {accuracies[:, -1].mean():>10.4f} +- {accuracies[:, -1].std():.4f}"
    )

# %%
# ## Training loss and test accuracy over epochs

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
epochs = np.arange(1, EPOCHS + 1)
for name, (losses, accuracies) in curves.items():
    style = "-" if name.startswith("UPGrad") else "--"
    for ax, values in ((ax1, losses), (ax2, accuracies)):
        line = ax.plot(epochs, values.mean(0), style, label=name)[0]
        ax.fill_between(
            epochs, values.min(0), values.max(0), color=line.get_color(), alpha=0.2, lw=0
        )
ax1.set(xlabel="epoch", ylabel="training loss", yscale="log", title="Training loss")
ax2.set(xlabel="epoch", ylabel="test accuracy", title="Test accuracy")
ax1.legend()
fig.tight_layout()
plt.show()

# %%
# ## Checks
#
# Every run learns; UPGrad's update conflicts with no example of the batch
# (J A(J) >= 0 up to the regularisation of its Gramian), while the mean gradient
# generally conflicts with some.

for name, (losses, accuracies) in curves.items():
    assert np.all(np.isfinite(losses)) and accuracies[:, -1].min() > 0.5, name
batch = jax.tree.map(lambda a: a[0], batches)
J = jax.vmap(lambda row: ravel_pytree(row)[0])(jax.jacrev(example_losses)(inits[0], batch))
scale = float(jnp.sum(J**2))
assert float(jnp.min(J @ upgrad(J))) >= -1e-3 * scale
print(
    f"first batch: min_i (J A(J))_i = {float(jnp.min(J @ upgrad(J))):.3g} with UPGrad, "
    f"{float(jnp.min(J @ mean(J))):.3g} with the mean"
)
