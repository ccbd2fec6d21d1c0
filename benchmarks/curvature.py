"""The loss Hessian's top eigenvalues and trace, matrix-free, against the dense `jax.hessian`.

For the cross-entropy loss of a GELU MLP on all 1,797 scikit-learn digits (train and
test splits together), at its initialisation (`jacscope.models.init_mlp`, seed 0):

1. the 64-64-10 MLP (P = 4,810): `jacscope.curvature.hessian_operator` with
   `jacscope.linalg.eigh_topk` (top-k by Lanczos, `3 k + 20` steps) and
   `jacscope.linalg.trace` (Hutch++, `--probes` products), against the dense Hessian
   from `jax.hessian` of the flattened loss (jit-compiled; summed over chunks of
   `--dense-chunk` examples, the Hessian of a mean being the weighted sum of the chunks'
   Hessians, so that its working memory stays near 1 GiB instead of 8 GiB) followed
   by `numpy.linalg.eigh` and `numpy.trace`;
2. the 64-1024-1024-10 MLP (P = 1,126,410, the model of
   `benchmarks/training_jacobian_scale.py`): the same matrix-free computations; the
   dense Hessian does not fit (its bytes are printed).

Times are wall-clock seconds of a second call (the first compiles; for the large MLP,
of the first call, compilation included, as a second would double the run), products are
Hessian-vector products (`info.num_matvecs`, `Estimate.num_matvecs`; the dense
`jax.hessian` is P of them, batched). Float32 (JAX's default) throughout.
Every computation is PyHessian's (top eigenvalues, Hutchinson-type trace), on any JAX
model.

Citation: Yao, Gholami, Keutzer & Mahoney, "PyHessian: Neural Networks Through the
Lens of the Hessian", arXiv 1912.07145.

Run: `python benchmarks/curvature.py` (full), `python benchmarks/curvature.py --small`
(seconds: 256 examples, a 64-32-10 and a 64-128-128-10 MLP, k = 4).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from rich.console import Console
from rich.table import Table

from jacscope import curvature, linalg
from jacscope._memory import format_bytes
from jacscope.data import load_digits
from jacscope.models import classification_loss, init_mlp, mlp_apply

console = Console(width=120)


def timed(fn, warm: bool = True):
    """`(result, seconds)` of a second call of `fn` (the first compiles), or with
    `warm=False` of the first call, compilation included."""
    if warm:
        jax.block_until_ready(fn())
    start = time.perf_counter()
    result = jax.block_until_ready(fn())
    return result, time.perf_counter() - start


def dense_hessian(loss_fn, params, batch, chunk: int) -> jax.Array:
    """The dense Hessian of the mean loss: `jax.hessian` per chunk of examples, weighted."""
    flat, unravel = ravel_pytree(params)
    n = batch["y"].shape[0]

    @jax.jit
    def chunk_hessian(f, x, y):
        return jax.hessian(lambda q: loss_fn(unravel(q), {"x": x, "y": y}))(f)

    total = jnp.zeros((flat.size, flat.size), flat.dtype)
    for start in range(0, n, chunk):
        x, y = batch["x"][start : start + chunk], batch["y"][start : start + chunk]
        total = total + (y.shape[0] / n) * chunk_hessian(flat, x, y)
    return total


def matrix_free(op, k: int, probes: int, key, warm: bool):
    """Top-k eigenvalues and the Hutch++ trace of `op`, with times and products."""
    key_eig, key_trace = jax.random.split(key)
    (values, _, info), eig_s = timed(lambda: linalg.eigh_topk(op, k, key=key_eig), warm)
    estimate, trace_s = timed(
        lambda: linalg.trace(op, key=key_trace, method="hutchpp", num_matvecs=probes), warm
    )
    return {
        "values": np.asarray(values),
        "eig_s": eig_s,
        "eig_products": int(info.num_matvecs),
        "residual": float(np.max(np.asarray(info.residuals))),
        "trace": float(estimate.value),
        "trace_stderr": float(estimate.stderr),
        "trace_s": trace_s,
        "trace_products": int(estimate.num_matvecs),
    }


def run_model(sizes, batch, args, key, dense: bool) -> list[list[str]]:
    params = init_mlp(jax.random.key(0), sizes)
    loss_fn = classification_loss(mlp_apply)
    op = curvature.hessian_operator(loss_fn, params, batch)
    p = op.shape[0]
    name = "-".join(str(s) for s in sizes) + f" (P = {p:,})"
    ours = matrix_free(op, args.k, args.probes, key, warm=dense)
    rows = [
        [
            name,
            "jacscope: eigh_topk",
            f"{ours['eig_s']:.2f}",
            f"{ours['eig_products']:,}",
            " ".join(f"{v:.4g}" for v in ours["values"][:3]) + " ...",
            f"max residual {ours['residual']:.1e}",
        ],
        [
            name,
            f"jacscope: trace (Hutch++, {args.probes} products)",
            f"{ours['trace_s']:.2f}",
            f"{ours['trace_products']:,}",
            f"{ours['trace']:.5g} ± {ours['trace_stderr']:.2g}",
            "",
        ],
    ]
    needed = p * p * jnp.dtype(op.dtype).itemsize
    if not dense:
        rows.append([name, "dense: does not fit", "-", "-", f"needs {format_bytes(needed)}", "-"])
        return rows
    matrix, hessian_s = timed(lambda: dense_hessian(loss_fn, params, batch, args.dense_chunk))
    matrix = np.asarray(matrix)
    start = time.perf_counter()
    exact = np.linalg.eigvalsh(matrix)[::-1]
    eigh_s = time.perf_counter() - start
    exact_trace = float(np.trace(matrix))
    dense_s = hessian_s + eigh_s
    eig_error = np.max(np.abs(ours["values"] - exact[: args.k])) / abs(exact[0])
    trace_error = abs(ours["trace"] - exact_trace) / abs(exact_trace)
    rows[0][5] += f"; error {eig_error:.1e} (rel. to l_1); {dense_s / ours['eig_s']:.1f}x faster"
    in_stderr = abs(ours["trace"] - exact_trace) / ours["trace_stderr"]
    rows[1][5] = (
        f"error {trace_error:.1e} (rel.), {in_stderr:.1f} stderr; "
        f"{dense_s / ours['trace_s']:.1f}x faster"
    )
    rows.append(
        [
            name,
            f"dense: jax.hessian ({hessian_s:.1f} s) + numpy eigh ({eigh_s:.1f} s)",
            f"{dense_s:.2f}",
            f"{p:,}",
            " ".join(f"{v:.4g}" for v in exact[:3]) + f" ...; trace {exact_trace:.5g}",
            f"matrix {format_bytes(needed)}",
        ]
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--k", type=int, default=10, help="top eigenvalues (default 10)")
    parser.add_argument("--probes", type=int, default=100, help="trace products (default 100)")
    parser.add_argument("--large-probes", type=int, default=30, help="trace products, large MLP")
    parser.add_argument("--examples", type=int, default=None, help="use the first N digits")
    parser.add_argument("--dense-chunk", type=int, default=256, help="examples per jax.hessian")
    parser.add_argument("--hidden", type=int, default=1024, help="width of the large MLP")
    parser.add_argument("--skip-large", action="store_true", help="only the 64-64-10 MLP")
    args = parser.parse_args()
    small_sizes, large_sizes = (64, 64, 10), (64, args.hidden, args.hidden, 10)
    if args.small:
        args.k, args.probes, args.large_probes = 4, 24, 12
        args.examples = args.examples or 256
        small_sizes, large_sizes = (64, 32, 10), (64, 128, 128, 10)

    data = load_digits()
    x = np.concatenate([data.x_train, data.x_test])
    y = np.concatenate([data.y_train, data.y_test])
    if args.examples is not None:
        x, y = x[: args.examples], y[: args.examples]
    batch = {"x": jnp.asarray(x), "y": jnp.asarray(y)}

    table = Table(title=f"Loss Hessian of a GELU MLP on {len(y):,} digits (float32, k={args.k})")
    for column in ("model", "method", "time (s)", "HVPs", "values", "vs dense"):
        table.add_column(column, justify="right" if column in ("time (s)", "HVPs") else "left")
    key = jax.random.key(0)
    for row in run_model(small_sizes, batch, args, key, dense=True):
        table.add_row(*row)
    if not args.skip_large:
        large = argparse.Namespace(**{**vars(args), "probes": args.large_probes})
        for row in run_model(large_sizes, batch, large, key, dense=False):
            table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
