"""# The training Jacobian of the paper, end to end on digits

This example reproduces the setting of Belrose & Scherlis, "Understanding Gradient
Descent through the Training Jacobian", arXiv 2412.07003: a 64 -> 64 -> 10 GELU MLP
(P = 4810 parameters) trained on scikit-learn's digits with batches of 64 for 25
epochs (625 steps) of SGD with momentum 0.9 and a cosine learning-rate schedule from
0.1 (`jacscope.training.TrainingConfig()`, the defaults). It computes the exact
training Jacobian J = d theta_T / d theta_0 (4810 x 4810), its SVD J = U diag(s) V^T,
and every analysis of the paper that `jacscope.jobs.ANALYSES` provides:

- the three regions of the spectrum, chaotic (s > 1 + tau), bulk (|s - 1| <= tau)
  and stable (s < 1 - tau), at several tolerances tau;
- the alignment cos(u_i, v_i) of the left and right singular vectors;
- the linearity of theta_T's response to theta_0 + eps v_i;
- training restricted to the top, bulk, stable subspaces and the bulk's complement;
- the effect of moving theta_T along v_i on the network's outputs, in and out of
  distribution, and the share of v_i in the nullspace of the output Jacobian;
- the spectra on shuffled labels and noise inputs, and the bulks of two seeds.

The job `jacscope.jobs.run_train_jacobian` does the work in a folder that resumes
(run the example again and only the figures are redrawn); `jacscope.load` reads the
folder back. The figures are of the kinds in the paper, drawn from those results.

What the paper reports, as stated in its abstract, is quoted beside each figure
("paper:"); our numbers are printed by the cells. With `JACSCOPE_EXAMPLE_SIZE=small`
the run is reduced (a hidden layer of 8, one epoch, fewer analyses) so that it
finishes in seconds; the paper's observations need not hold at that size.
"""

# %%
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax.flatten_util import ravel_pytree

import jacscope
from jacscope.jobs import ANALYSES, ExactSettings, run_train_jacobian
from jacscope.training import TrainingConfig, build_run, region_intervals

SMALL = os.environ.get("JACSCOPE_EXAMPLE_SIZE") == "small"
OUT = Path("paper_digits_small" if SMALL else "paper_digits")

if SMALL:
    config = TrainingConfig(hidden=8, epochs=1)
    analyses = ("alignment", "linearity", "outputs")
else:
    config = TrainingConfig()  # the paper's setting
    analyses = tuple(ANALYSES)  # all of them, `data` and `seeds` included

start = time.perf_counter()
report = run_train_jacobian(config, OUT, ExactSettings(analyses=analyses, save_vectors=True))
results = jacscope.load(OUT)
P, T = report.num_params, report.num_steps
print(f"P = {P:,} parameters, T = {T} steps, {time.perf_counter() - start:.1f} s")
print({name: round(seconds, 1) for name, seconds in report.timings.items() if seconds})
training = report.training
print(f"test accuracy {training['initial_test_accuracy']:.3f} -> {training['test_accuracy']:.3f}")

# %%
# ## The spectrum and its three regions
#
# Paper: the singular values of J form a "chaotic" region of values orders of
# magnitude greater than one, a large "bulk" of values extremely close to one, and a
# "stable" region of values below one.

J = results.jacobian()
S = results.stage("singular-values")["S"]
vectors = results.stage("singular-vectors")
U, Vt = vectors["U"], vectors["Vt"]
regions = report.regions
taus = regions["taus"]
for j, tau in enumerate(taus):
    print(
        f"tau = {tau:g}: chaotic {regions['chaotic'][j]:,}, bulk {regions['bulk'][j]:,} "
        f"({100 * regions['bulk_fraction'][j]:.1f}%), stable {regions['stable'][j]:,}"
    )

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
ax1.semilogy(np.arange(1, P + 1), S, lw=1.5)
colors = plt.cm.viridis(np.linspace(0.2, 0.8, len(taus)))
for tau, color in zip(taus, colors, strict=True):
    ax1.axhspan(1 - tau, 1 + tau, color=color, alpha=0.3, label=f"1 ± {tau:g}")
ax1.set(xlabel="index i", ylabel="singular value $s_i$", title="Spectrum of J")
ax1.legend()
ax2.hist(np.log10(np.abs(S - 1) + 1e-12), bins=80)
ax2.set(xlabel=r"$\log_{10} |s_i - 1|$", ylabel="count", title="Distance from one")
fig.tight_layout()
plt.show()

# %%
# ## Alignment of the singular vectors
#
# Paper: along each bulk direction the left and right singular vectors are nearly
# identical, so a perturbation of the initialisation along the bulk is carried
# through training almost unchanged.

cosines = results.stage("analysis-alignment")["cosines"]
for row in report.alignment:
    if row["mean"] is not None:
        print(f"tau = {row['tau']:g} {row['region']:>8}: mean cos(u_i, v_i) = {row['mean']:.5f}")
fig, ax = plt.subplots(figsize=(6, 4))
ax.scatter(S, cosines, s=3)
ax.set(xscale="log", xlabel="$s_i$", ylabel=r"$\cos(u_i, v_i)$", title="Alignment")
plt.show()

# %%
# ## Linearity of the response to a perturbation
#
# theta_0 + eps v_i is trained again; the Jacobian predicts that theta_T moves by
# s_i eps along u_i and not at all elsewhere. The printed linear range is the largest
# eps up to which the change along u_i stays within 10% of s_i eps.

lin = results.stage("analysis-linearity")
fig, ax = plt.subplots(figsize=(6, 4))
for i, label in enumerate(lin["labels"]):
    s = lin["singular_values"][i]
    ax.loglog(
        lin["eps"], np.abs(lin["projection"][i]) / (s * lin["eps"]), label=f"{label}: along u"
    )
    ax.loglog(lin["eps"], lin["remainder"][i] / (s * lin["eps"]), "--", label=f"{label}: rest")
    print(f"{label} direction (s = {s:.4g}): linear up to eps = {lin['linear_range'][i]}")
ax.axhline(1, color="k", lw=0.5)
ax.set(xlabel="eps", ylabel="change / ($s_i$ eps)", title="Perturbation response")
ax.legend()
plt.show()

# %%
# ## Outputs and function space
#
# Paper: bulk perturbations have virtually no effect on the network's output in
# distribution, yet do have an effect far out of distribution.

outputs = results.stage("analysis-outputs")
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
for name, kl in zip(outputs["sets"], outputs["max_kl"], strict=True):
    ax1.scatter(S, kl, s=2, label=name)
ax1.set(xscale="log", yscale="log", xlabel="$s_i$", ylabel="max KL", title="Moving along $v_i$")
ax1.legend(markerscale=4)
if "function_space" in results.result.analyses:  # full size only
    space = results.stage("analysis-function_space")
    ax2.scatter(S, space["null_fraction"], s=2)
    ax2.axhline(space["expected"], color="k", lw=0.8, label="random direction")
    ax2.set(xscale="log", xlabel="$s_i$", ylabel="share in null(F)", title="Function space")
    ax2.legend()
fig.tight_layout()
plt.show()

# %%
# ## Restricted training, data dependence and seeds (full size only)
#
# Training restricted to k singular directions shows where in parameter space
# training does its work. Paper: the low-dimensional structure of training depends on
# the input data but largely not on the labels, and the bulk subspaces of different
# random seeds overlap substantially.

if "restricted" in results.result.analyses:
    restricted = results.stage("analysis-restricted")
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4))
    for name, losses in zip(restricted["subspaces"], restricted["test_loss"], strict=True):
        ax1.plot(restricted["ks"], losses, "o-", label=name)
    ax1.axhline(restricted["full_test_loss"], color="k", lw=0.8, label="unrestricted")
    ax1.set(xscale="log", xlabel="k", ylabel="test loss", title="Restricted training")
    ax1.legend()
    data = results.stage("analysis-data")
    for name, distance in zip(data["names"], data["distance"], strict=True):
        ax2.semilogy(distance, label=name)
    ax2.set(xlabel="index i", ylabel="$|s_i - 1|$", title="Data dependence")
    ax2.legend()
    seeds = results.stage("analysis-seeds")
    ax3.plot(seeds["ks"], seeds["mean_sq_cos"], label="two seeds")
    ax3.plot(seeds["ks"], seeds["expected"], "--", label="random subspaces")
    ax3.set(xlabel="k most bulk-like directions", ylabel="mean cos^2", title="Seeds")
    ax3.legend()
    fig.tight_layout()
    plt.show()

# %%
# ## Checks
#
# J is checked against a Jacobian-vector product through the whole run, the stored
# SVD against J, and the region counts and alignment against the singular values and
# vectors themselves.

run = build_run(config).run
theta0, unravel = ravel_pytree(run.params0)
v = jnp.asarray(np.random.default_rng(0).normal(size=P), theta0.dtype)
_, jv = jax.jvp(lambda t: ravel_pytree(run.final_params(unravel(t)))[0], (theta0,), (v,))
assert np.allclose(J @ np.asarray(v), jv, rtol=1e-3, atol=1e-4 * np.abs(jv).max())
assert np.allclose((U * S) @ Vt, J, atol=1e-4 * S[0])
np.testing.assert_allclose(cosines, np.sum(U * Vt.T, axis=0), atol=1e-5)
for j, tau in enumerate(taus):
    masks = [(S >= lo) & (S <= hi) for lo, hi in region_intervals(tau).values()]
    counts = [int(m.sum()) for m in masks]
    assert counts == [regions[r][j] for r in region_intervals(tau)], (tau, counts)
    assert sum(counts) == P
bulk = [row for row in report.alignment if row["region"] == "bulk" and row["count"]]
assert bulk and bulk[0]["mean"] > 0.99  # bulk directions: u_i = v_i
if not SMALL:
    assert regions["bulk_fraction"][taus.index(0.1)] > 0.5  # the bulk: most directions
    assert training["test_accuracy"] > 0.9
