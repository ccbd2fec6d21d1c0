"""# Gradients through chaos: Lyapunov spectra and the explosion of unrolled gradients

Differentiating a loss through T steps of a recurrent system multiplies T Jacobians:
when the system is chaotic (largest Lyapunov exponent lambda_1 > 0) the gradient grows
like exp(lambda_1 T) and its variance over the unroll's randomness grows faster still,
so that past the Lyapunov time 1 / lambda_1 a sampled gradient mostly measures the
chaos (Metz, Freeman, Schoenholz & Kachman, "Gradients are Not All You Need",
arXiv 2111.05803). Here a random rate network x <- x + 0.2 (-x + g W tanh x)
(Sompolinsky, Crisanti & Sommers) is chaotic at gain g = 4 and contracting at g = 0.5:
`lyapunov_spectrum` gives its full spectrum and Kaplan-Yorke dimension, and
`gradient_explosion_report` the gradient's norm and variance against the unroll
length, with the verdict.
"""

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jacscope.dynamics import gradient_explosion_report, lyapunov_spectrum

jax.config.update("jax_enable_x64", True)
SMALL = os.environ.get("JACSCOPE_EXAMPLE_SIZE") == "small"
N, STEPS, SAMPLES = (50, 1000, 8) if SMALL else (100, 5000, 32)
LENGTHS = [1, 10, 25, 50, 100, 150] if SMALL else [1, 10, 25, 50, 100, 150, 200, 300]
W = jax.random.normal(jax.random.key(1), (N, N)) / N**0.5


def step(x, params):
    return x + 0.2 * (-x + params["gain"] * params["W"] @ jnp.tanh(x))


def unrolled_loss(params, length, key):
    """The mean square state after `length` steps from a random initial state."""
    x0 = jax.random.normal(key, (N,))
    return jnp.mean(jax.lax.fori_loop(0, length, lambda i, x: step(x, params), x0) ** 2)


# %% [markdown]
# ## The spectrum of the chaotic network
# The full spectrum (k = N JVPs per step, never the Jacobian), with standard errors
# from batch means; the Kaplan-Yorke dimension of the attractor follows from it.

# %%
chaotic = {"W": W, "gain": 4.0}
spectrum = lyapunov_spectrum(
    lambda x: step(x, chaotic), jnp.ones(N), num_steps=STEPS, transient=STEPS // 10,
    key=jax.random.key(0),
)  # fmt: skip
positive = int(jnp.sum(spectrum.exponents > 2 * spectrum.stderr))
print(f"lambda_1 = {spectrum.exponents[0]:.4f} +- {spectrum.stderr[0]:.4f} per step")
print(f"{positive} exponents above zero; Kaplan-Yorke dimension {spectrum.kaplan_yorke:.2f}")

# %% [markdown]
# ## Gradients against the unroll length

# %%
reports = {
    f"g = {gain:g}": gradient_explosion_report(
        unrolled_loss,
        {"W": W, "gain": gain},
        LENGTHS,
        step=step,
        x0=jnp.ones(N),
        num_samples=SAMPLES,
        key=jax.random.key(2),
    )
    for gain in (4.0, 0.5)
}
for name, report in reports.items():
    print(f"{name}: {report.verdict}. {report.summary}")

fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.8))
index = np.arange(1, N + 1)
left.errorbar(index, spectrum.exponents, yerr=2 * spectrum.stderr, fmt=".", ms=3)
left.axhline(0, color="grey", lw=0.8)
left.set(xlabel="i", ylabel="lambda_i per step", title="Lyapunov spectrum, g = 4")
for name, report in reports.items():
    middle.semilogy(report.lengths, report.gradient_norm, "o-", label=name)
    right.semilogy(report.lengths, report.gradient_variance, "o-", label=name)
chaos = reports["g = 4"]
middle.semilogy(
    chaos.lengths,
    chaos.gradient_norm[0] * np.exp(chaos.exponent * chaos.lengths),
    "k--",
    lw=0.8,
    label="exp(lambda_1 L)",
)
middle.set(xlabel="unroll length L", ylabel="E ||grad||", title="gradient norm")
right.axvline(chaos.chaos_length, color="grey", ls=":", label="Lyapunov time")
right.set(xlabel="unroll length L", ylabel="tr Cov(grad)", title="gradient variance")
middle.legend()
right.legend()
fig.tight_layout()

# %%
assert chaos.verdict == "chaotic" and reports["g = 0.5"].verdict == "contracting"
assert chaos.gradient_norm[-1] > 100 * chaos.gradient_norm[0]
assert reports["g = 0.5"].gradient_norm[-1] < reports["g = 0.5"].gradient_norm[0]
assert positive >= 1 and bool(spectrum.kaplan_yorke_resolved)
