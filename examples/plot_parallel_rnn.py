"""# Parallel evaluation of an RNN, and Jacobi decoding

A recurrence s_t = step(s_{t-1}, x_t) looks inherently sequential, but its T
equations are one lower-triangular nonlinear system, which fixed-point iterations
solve at every position at once. `jacscope.parallel.solve_sequence` offers Jacobi
iteration (Song, Meng, Liao & Ermon, "Accelerating Feedforward Computation via
Parallel Nonlinear Equation Solving", ICML 2021), block Gauss-Seidel and DEER, Newton's
method with each linearised recurrence solved by an associative scan (Lim et al.,
"Parallelizing non-linear sequential models over the sequence length", ICLR 2024).
Every method is exact after at most T iterations; on a contracting recurrence DEER
needs a handful.

The same idea decodes a causal model: `jacscope.parallel.jacobi_decode` solves a
block of greedy tokens by Jacobi iteration and returns exactly the greedy output
(Santilli et al., "Accelerating Transformer Inference for Translation via Parallel
Decoding", ACL 2023).
"""

# %%
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jacscope.parallel import CausalTransformer, jacobi_decode, solve_sequence

SMALL = os.environ.get("JACSCOPE_EXAMPLE_SIZE") == "small"
LENGTH, HIDDEN = (256, 16) if SMALL else (2048, 32)
TOKENS, BLOCK = (16, 8) if SMALL else (64, 16)

cell = eqx.nn.GRUCell(4, HIDDEN, key=jax.random.key(0))
xs = jax.random.normal(jax.random.key(1), (LENGTH, 4))
h0 = jnp.zeros(HIDDEN)


def step(h, x):
    return cell(x, h)


# %%
# ## A GRU over T steps: sequential, Jacobi, block Gauss-Seidel and DEER

reference = solve_sequence(step, h0, xs, method="sequential").states
solutions = {}
for method, options in (
    ("jacobi", {}),
    ("block_gauss_seidel", {"block_size": 32}),
    ("deer", {}),
    ("quasi_deer", {}),
):
    sol = solve_sequence(step, h0, xs, method=method, tol=1e-6, return_iterates=True, **options)
    errors = jnp.abs(sol.iterates - reference[None]).max(axis=(1, 2))
    solutions[method] = (sol, np.asarray(errors[: int(sol.iterations) + 1]))
    print(
        f"{method:>18}: {int(sol.iterations):4d} iterations for {LENGTH} steps, "
        f"max |error| = {float(jnp.abs(sol.states - reference).max()):.1e}, "
        f"converged: {bool(sol.converged)}"
    )

fig, ax = plt.subplots(figsize=(6, 4))
for method, (_, errors) in solutions.items():
    ax.semilogy(np.maximum(errors, 1e-12), "o-", ms=3, label=method)
ax.set(
    xscale="symlog",
    xlabel="iteration",
    ylabel="max |s - s_sequential|",
    title=f"GRU, T = {LENGTH}: convergence of parallel solvers",
)
ax.legend()
plt.show()

# %%
# ## Jacobi decoding of a small causal transformer
#
# With random weights the model's greedy continuation is arbitrary, but well defined;
# Jacobi decoding must reproduce it token for token.

model = CausalTransformer(13, 8 + TOKENS, width=32, depth=2, heads=4, key=jax.random.key(2))
prompt = jnp.array([1, 5, 2, 7, 3, 3, 9, 4], jnp.int32)
jacobi = jacobi_decode(model, prompt, TOKENS, block_size=BLOCK)

forward = eqx.filter_jit(model)
tokens = prompt
for _ in range(TOKENS):  # greedy decoding, written out
    padded = jnp.pad(tokens, (0, len(prompt) + TOKENS - len(tokens)))
    tokens = jnp.append(tokens, jnp.argmax(forward(padded)[len(tokens) - 1]).astype(jnp.int32))
greedy = tokens[len(prompt) :]
print("greedy:", np.asarray(greedy).tolist())
print("jacobi:", np.asarray(jacobi.tokens).tolist())
print(
    f"iterations per block {np.asarray(jacobi.iterations).tolist()}, "
    f"{TOKENS / int(jacobi.forward_passes):.2f} tokens per forward pass"
)

# %%
# ## Checks

for method, (sol, _) in solutions.items():
    assert bool(sol.converged), method
    assert float(jnp.abs(sol.states - reference).max()) < 1e-5, method
    assert int(sol.iterations) <= LENGTH
assert int(solutions["deer"][0].iterations) < 20  # Newton: a few iterations, not T
assert np.array_equal(np.asarray(jacobi.tokens), np.asarray(greedy))
assert bool(np.all(np.asarray(jacobi.converged)))
assert int(jacobi.forward_passes) <= TOKENS
