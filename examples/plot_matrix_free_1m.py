"""# A matrix-free spectrum of a training run with a million parameters

The exact training Jacobian of a 64 -> 1024 -> 1024 -> 10 MLP (P = 1,126,410) would
take 4.6 TiB and P forward sweeps through training. Without forming it,
`jacscope.training.matrix_free_analysis` reads off what the exact analysis of
Belrose & Scherlis ("Understanding Gradient Descent through the Training Jacobian",
arXiv 2412.07003) reads from the dense spectrum, using only products with
J = d theta_T / d theta_0 (a JVP through training) and with J^T (a VJP):

- the top singular values of J, the chaotic end, and of J - I, the directions that
  training changes most, by Golub-Kahan-Lanczos (`jacscope.linalg.Lanczos`), each
  with the residual ||J v - s u|| that bounds its error;
- the density of the singular values and the chaotic / bulk / stable counts per
  tau by stochastic Lanczos quadrature (`jacscope.linalg.SLQ`), each count with a
  standard error and a 95% interval that also holds the quadrature error. A count
  whose interval is wider than +-2% of P is "unresolved": it is shown as its
  interval, never as a number, with the products that would resolve it.

The run here is one epoch (25 steps) of the paper's SGD schedule on digits, with a
budget that finishes in a few minutes on two CPU cores; at
`JACSCOPE_EXAMPLE_SIZE=small` the MLP is 64 -> 16 -> 10 and the estimates are checked
against the exact J.
"""

# %%
import os
import time

import jax
import matplotlib.pyplot as plt
import numpy as np

import jacscope
from jacscope.linalg import SLQ, Lanczos
from jacscope.training import TrainingConfig, build_run, matrix_free_analysis, region_counts

SMALL = os.environ.get("JACSCOPE_EXAMPLE_SIZE") == "small"
if SMALL:
    config = TrainingConfig(hidden=16, epochs=1, train_size=320)
    k, svd, density = 4, Lanczos(depth=16), SLQ(num_probes=2, depth=12, probes_per_batch=2)
else:
    config = TrainingConfig(hidden=1024, hidden_layers=2, epochs=1)
    k = 8
    svd = Lanczos(depth=40, tol=1e-2, residuals="recurrence")
    density = SLQ(num_probes=4, depth=16, probes_per_batch=2)

run = build_run(config).run
start = time.perf_counter()
result = matrix_free_analysis(run, k=k, key=jax.random.key(0), svd=svd, density=density)
seconds = time.perf_counter() - start
print(f"P = {result.num_params:,}, T = {result.num_steps}: {seconds:.0f} s")
print(f"passes through training: {result.sweeps}")

# %%
# ## The top of the spectrum, with residuals

top, shifted = result.top_j, result.top_j_minus_i
for name, triplets in (("J", top), ("J - I", shifted)):
    print(
        f"top {k} of {name}: s_1 = {triplets['values'][0]:.4g}, s_{k} = "
        f"{triplets['values'][-1]:.4g}, max residual / s = "
        f"{max(triplets['relative_residuals']):.1e}, {triplets['sweeps']} sweeps"
    )

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
for name, triplets in (("J", top), ("J - I", shifted)):
    index = np.arange(1, k + 1)
    ax1.errorbar(
        index,
        triplets["values"],
        yerr=np.asarray(triplets["residuals"]) / np.sqrt(2),
        fmt="o",
        capsize=3,
        label=name,
    )
ax1.set(xlabel="i", ylabel="$s_i$", yscale="log", title="Top singular values (± residual/√2)")
ax1.legend()
dens = result.density
ax2.plot(dens["grid"], dens["density"])
ax2.axvline(1, color="k", lw=0.5)
ax2.set(xlabel="s", ylabel="density", yscale="log", title="Singular-value density (SLQ)")
fig.tight_layout()
plt.show()

# %%
# ## Region counts, with their uncertainty

regions = result.regions
P = regions["num_directions"]
for j, tau in enumerate(regions["taus"]):
    parts = []
    for region in ("chaotic", "bulk", "stable"):
        low, high = regions[f"{region}_range"][j]
        if regions[f"{region}_resolved"][j]:
            parts.append(
                f"{region} ≈ {regions[region][j]:,.0f} ± {regions[f'{region}_stderr'][j]:,.0f}"
            )
        else:
            parts.append(f"{region} unresolved, in [{low:,.0f}, {high:,.0f}]")
    print(f"tau = {tau:g}: " + "; ".join(parts))
    print(f"    products that would resolve the bulk: {regions['chebyshev_products'][j]:,}")

fig, ax = plt.subplots(figsize=(7, 4))
width = 0.25
for r, region in enumerate(("chaotic", "bulk", "stable")):
    x = np.arange(len(regions["taus"])) + (r - 1) * width
    ranges = np.asarray(regions[f"{region}_range"], dtype=float)
    ax.bar(
        x,
        ranges[:, 1] - ranges[:, 0],
        width,
        bottom=ranges[:, 0],
        alpha=0.4,
        label=f"{region}: 95% interval",
    )
    ax.plot(x, regions[region], "k_", ms=12)
ax.set_xticks(np.arange(len(regions["taus"])), [f"tau = {t:g}" for t in regions["taus"]])
ax.set(ylabel="number of singular values", title=f"Region counts of J (P = {P:,})")
ax.legend()
plt.show()

# %%
# ## Checks
#
# Every residual bounds the distance to a true singular value; every 95% interval
# holds its point estimate and lies in [0, P]. At the small size the exact J is
# formed and the estimates are compared with its SVD.

for triplets in (top, shifted):
    values = np.asarray(triplets["values"])
    assert np.all(np.diff(values) <= 1e-6 * values[0]) and np.all(values > 0)
    assert max(triplets["relative_residuals"]) < 0.1
assert top["values"][0] > 1  # chaotic directions exist
for region in ("chaotic", "bulk", "stable"):
    for value, (low, high) in zip(regions[region], regions[f"{region}_range"], strict=True):
        assert -0.5 <= low <= value + 1e-6 * P and value - 1e-6 * P <= high <= P + 0.5
if SMALL:
    J = jacscope.training_jacobian(run)
    S = np.linalg.svd(J, compute_uv=False)
    SI = np.linalg.svd(J - np.eye(J.shape[0]), compute_uv=False)
    for exact, triplets in ((S, top), (SI, shifted)):
        # each s_i lies within residual_i / sqrt 2 of some singular value, none above s_1
        values = np.asarray(triplets["values"])
        bound = np.asarray(triplets["residuals"]) / np.sqrt(2) + 1e-4 * exact[0]
        assert np.all(np.abs(values[:, None] - exact[None]).min(axis=1) <= bound)
        assert values[0] <= exact[0] + bound[0]
    exact_counts = region_counts(S, regions["taus"])
    for region in ("chaotic", "bulk", "stable"):
        for count, (low, high) in zip(
            getattr(exact_counts, region), regions[f"{region}_range"], strict=True
        ):
            assert low - 0.5 <= count <= high + 0.5, (region, count, low, high)
else:
    assert result.num_params > 1_000_000
