"""# Local Lipschitz intervals

The local Lipschitz constant of a network f around an input x0,
L(eps) = sup over ||x - x0||_inf <= eps of ||J(x)||_inf, bounds how far its logits
can move: ||f(x) - f(y)||_inf <= L ||x - y||_inf in the ball. `jacscope.lipschitz`
brackets it by an interval:

- `lipschitz_lower`: projected gradient ascent on ||J(x)|| over the ball, a value
  attained at a point of the ball;
- `lipschitz_upper`: a certified bound, "naive" (product of layer norms), "interval"
  (interval arithmetic on the Jacobian product) or "crown" (the same from CROWN's
  tighter pre-activation boxes; Shi et al., "Efficiently Computing Local Lipschitz
  Constants of Neural Networks via Bound Propagation", NeurIPS 2022). It takes an MLP
  as a layer list or any JAX function, through its jaxpr.

The network is a GELU MLP trained briefly on digits; the figure shows the interval
against the radius.
"""

# %%
import os
from functools import partial

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from jacscope.data import load_digits, make_batches
from jacscope.lipschitz import lipschitz_lower, lipschitz_upper
from jacscope.models import classification_loss, init_mlp, mlp_apply

SMALL = os.environ.get("JACSCOPE_EXAMPLE_SIZE") == "small"
HIDDEN, EPOCHS = (16, 2) if SMALL else (64, 10)
EPSILONS = [0.01, 0.03, 0.1] if SMALL else [0.003, 0.01, 0.02, 0.05, 0.1, 0.2]

data = load_digits()
batches = make_batches(data.x_train, data.y_train, 64, EPOCHS)
params = init_mlp(jax.random.key(0), (64, HIDDEN, 10))
optimizer = optax.adam(3e-3)
loss = classification_loss(mlp_apply)


@jax.jit
def train(params):
    def step(carry, batch):
        params, state = carry
        updates, state = optimizer.update(jax.grad(loss)(params, batch), state, params)
        return (optax.apply_updates(params, updates), state), None

    return jax.lax.scan(step, (params, optimizer.init(params)), batches)[0][0]


params = train(params)
x0 = jnp.asarray(data.x_test[0])
f = partial(mlp_apply, params)

# %%
# ## Lower and upper bounds against the radius

bounds = {name: [] for name in ("lower", "crown", "interval", "naive", "crown (jaxpr)")}
for eps in EPSILONS:
    bounds["lower"].append(float(lipschitz_lower(f, x0, eps, "inf", key=jax.random.key(1)).value))
    for method in ("crown", "interval", "naive"):
        bound = lipschitz_upper(params, x0, eps, "inf", method, activation="gelu")
        bounds[method].append(float(bound))
    bounds["crown (jaxpr)"].append(float(lipschitz_upper(f, x0, eps, "inf", "crown")))
    print(
        f"eps = {eps:g}: L in [{bounds['lower'][-1]:.2f}, {bounds['crown'][-1]:.2f}] "
        f"(interval {bounds['interval'][-1]:.2f}, naive {bounds['naive'][-1]:.2f})"
    )

fig, ax = plt.subplots(figsize=(6, 4))
for name, values in bounds.items():
    style = "--" if "jaxpr" in name else "o-"
    ax.plot(EPSILONS, values, style, label=name)
ax.set(
    xscale="log",
    yscale="log",
    xlabel=r"radius $\epsilon$ ($\ell_\infty$)",
    ylabel="local Lipschitz constant",
    title="Lipschitz interval around a test digit",
)
ax.legend()
plt.show()

# %%
# ## Checks
#
# lower <= crown <= interval <= naive at every radius; the lower bound is at least
# ||J(x0)||_inf; the two paths of the crown bound agree; and no pair of points drawn
# in the ball moves further apart than the certified bound allows.

norm_at_x0 = float(jnp.abs(jax.jacfwd(f)(x0)).sum(axis=1).max())
for j, eps in enumerate(EPSILONS):
    lower, crown = bounds["lower"][j], bounds["crown"][j]
    assert norm_at_x0 * (1 - 1e-5) <= lower <= crown * (1 + 1e-5), (eps, lower, crown)
    assert crown <= bounds["interval"][j] * (1 + 1e-5) <= bounds["naive"][j] * (1 + 2e-5)
    assert np.isclose(crown, bounds["crown (jaxpr)"][j], rtol=1e-3)
    key_x, key_y = jax.random.split(jax.random.key(10 + j))
    xs = x0 + eps * jax.random.uniform(key_x, (256, 64), minval=-1, maxval=1)
    ys = x0 + eps * jax.random.uniform(key_y, (256, 64), minval=-1, maxval=1)
    ratios = jnp.abs(f(xs) - f(ys)).max(axis=1) / jnp.abs(xs - ys).max(axis=1)
    assert float(ratios.max()) <= crown * (1 + 1e-4)
assert bounds["lower"][0] < bounds["crown"][0] < 2 * bounds["lower"][0]  # tight at small eps
