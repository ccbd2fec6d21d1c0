"""Benchmark: the exact training Jacobian against `jax.jacfwd` of the whole run.

The baseline is the method of the paper's code (Belrose & Scherlis, arXiv
2412.07003): `jax.jacfwd` of the function theta_0 -> theta_T, all P tangents at once.
Both compute the same P x P matrix in float32 on the embedded default (digits,
64-64-10 GELU MLP, P = 4810, 625 steps of batch 64, SGD momentum 0.9, cosine decay
from 0.1), then on a wider MLP (64-266-10, P = 19,960).

Both run from the Python API as a user writes them, with nothing configured:
`import jacscope` makes each CPU core a JAX device, so that `training_jacobian`'s
chunks run side by side; `jax.jacfwd` is one program and runs on the first device.
Each method runs in its own subprocess, so that its peak resident memory
(`ru_maxrss`) is its own; the runs alternate (jacscope, jax.jacfwd, jacscope, ...)
and the best time of each is kept, since the machine may be shared. Times are wall
clock from the call to the finished host array, compilation included. GFLOP/s count
the same tangent work for both methods (XLA's cost analysis of one step, times P
columns and T steps) against the best matrix product measured in the same run.
`jax.jacfwd` runs under a time limit and an address-space limit (it may need far more
memory than the machine has on the wide model); hitting either is reported.

    python benchmarks/training_jacobian.py              # both models, 2 repeats
    python benchmarks/training_jacobian.py --models wide --wide-steps 100 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------- workers


def _rss_now() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _build(hidden: int, steps: int):
    from jacscope.training import TrainingConfig, build_run

    epochs, rest = divmod(steps, 25)  # digits: 1600 // 64 = 25 steps per epoch
    if rest:
        raise SystemExit(f"--steps must be a multiple of 25, received {steps}")
    return build_run(TrainingConfig(hidden=hidden, epochs=epochs)).run


def worker_matmul() -> dict:
    """Best GFLOP/s of single float32 matrix products: a large square one, and the
    shapes of the default model's tangent products with K tangents folded in."""
    import jax
    import jax.numpy as jnp

    best = {}
    for m, k, n in [(2048, 2048, 2048), (64, 64, 64 * 512), (64 * 512, 64, 64)]:
        a = jnp.ones((m, k), jnp.float32)
        b = jnp.ones((k, n), jnp.float32)
        f = jax.jit(jnp.matmul)
        f(a, b).block_until_ready()
        times = []
        for _ in range(7):
            start = time.perf_counter()
            f(a, b).block_until_ready()
            times.append(time.perf_counter() - start)
        best[f"{m}x{k}x{n}"] = 2 * m * k * n / min(times) / 1e9
    return {"gflops": best, "peak": max(best.values())}


def worker_jacscope(hidden: int, steps: int, out_npy: str) -> dict:
    import jax

    from jacscope.training import training_jacobian

    run = _build(hidden, steps)
    baseline = _rss_now()
    log = []
    start, cpu = time.perf_counter(), time.process_time()
    jac = training_jacobian(run, progress=log.append)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    np.save(out_npy, jac)
    last = log[-1]
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "devices": len(jax.devices()),
        "flops": last.flops,
        "columns_computed": last.done - log[0].done,
        "num_params": last.total,
        "baseline_rss": baseline,
        "peak_rss": _peak_rss(),
    }


def worker_jacfwd(hidden: int, steps: int, out_npy: str, limit_bytes: int) -> dict:
    """`jax.jacfwd` of theta_0 -> theta_T. It is not run when XLA's memory analysis of
    the compiled function says it needs more than `limit_bytes`."""
    import jax
    from jax.flatten_util import ravel_pytree

    run = _build(hidden, steps)
    flat0, unravel = ravel_pytree(run.params0)
    baseline = _rss_now()

    def train(flat):
        return ravel_pytree(run.train(unravel(flat))[0])[0]

    start, cpu = time.perf_counter(), time.process_time()
    compiled = jax.jit(jax.jacfwd(train)).lower(flat0).compile()
    stats = compiled.memory_analysis()
    needed = stats.temp_size_in_bytes + stats.output_size_in_bytes + stats.argument_size_in_bytes
    if needed > limit_bytes:
        return {"error": f"needs {_gib(needed)} (XLA memory analysis), over the limit"}
    jac = np.asarray(compiled(flat0))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    np.save(out_npy, jac)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "xla_bytes": needed,
        "baseline_rss": baseline,
        "peak_rss": _peak_rss(),
    }


def worker_flops(hidden: int, steps: int) -> dict:
    """Tangent FLOPs of the whole Jacobian: one step's cost analysis for K columns,
    per column, times P columns and T steps."""
    from jacscope.training._propagate import TangentPropagation

    run = _build(hidden, steps)
    prop = TangentPropagation(run)
    k = 256
    per_column_step = prop.step_flops(k) / k
    return {
        "total": per_column_step * prop.num_params * prop.num_steps,
        "per_column_step": per_column_step,
        "num_params": prop.num_params,
    }


# ------------------------------------------------------------------ parent


def _spawn(args: list[str], timeout: float, limit_bytes: int | None = None) -> dict:
    def limit():
        if limit_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    try:
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--worker", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=limit,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:.0f} s (time limit)"}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
        memory = "RESOURCE_EXHAUSTED" in proc.stderr or "MemoryError" in proc.stderr
        if memory or "bad_alloc" in proc.stderr or proc.returncode < 0:
            gib = f"{limit_bytes / 2**30:.0f} GiB" if limit_bytes else "the machine's memory"
            return {"error": f"out of memory (address space limited to {gib}): {tail[0][:80]}"}
        return {"error": f"failed: {tail[0][:120]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def benchmark(name, hidden, steps, repeats, jacfwd_timeout, jacfwd_limit, peak, tmp):
    flops = _spawn(["flops", str(hidden), str(steps)], timeout=1800)
    P, total = flops["num_params"], flops["total"]
    ours_npy, theirs_npy = os.path.join(tmp, "ours.npy"), os.path.join(tmp, "jacfwd.npy")
    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(_spawn(["jacscope", str(hidden), str(steps), ours_npy], timeout=7200))
        if "error" in ours[-1]:
            raise SystemExit(f"jacscope {ours[-1]['error']}")
        theirs.append(
            _spawn(
                ["jacfwd", str(hidden), str(steps), theirs_npy, str(jacfwd_limit)],
                timeout=jacfwd_timeout,
                limit_bytes=jacfwd_limit,
            )
        )
    best = min(ours, key=lambda r: r["seconds"])
    finished = [r for r in theirs if "error" not in r]
    base = min(finished, key=lambda r: r["seconds"]) if finished else theirs[-1]
    print(f"\n== {name}: P = {P:,}, T = {steps} steps, {total / 1e12:.2f} TFLOP of tangent work")
    print(f"   (per column and step {flops['per_column_step'] / 1e6:.2f} MFLOP; float32)")
    rows = [("", "jacscope", "jax.jacfwd")]
    rows.append(("time, best of runs", f"{best['seconds']:.1f} s", _or(base, "seconds", "s")))
    rows.append(("all runs, s", _runs(ours), _runs(theirs)))
    rows.append(("JAX CPU devices", str(best["devices"]), "1 (one program)"))
    rows.append(
        ("CPU time of those runs, s", _runs(ours, "cpu_seconds"), _runs(theirs, "cpu_seconds"))
    )
    rows.append(
        (
            "achieved GFLOP/s",
            f"{total / best['seconds'] / 1e9:.1f}",
            f"{total / base['seconds'] / 1e9:.1f}" if "seconds" in base else "-",
        )
    )
    rows.append(
        (
            "  of matmul peak",
            f"{100 * total / best['seconds'] / 1e9 / peak:.0f} %",
            f"{100 * total / base['seconds'] / 1e9 / peak:.0f} %" if "seconds" in base else "-",
        )
    )
    rows.append(("peak RSS (ru_maxrss)", _gib(best["peak_rss"]), _or(base, "peak_rss", "GiB")))
    rows.append(("XLA memory analysis (compiled)", "-", _or(base, "xla_bytes", "GiB")))
    rows.append(
        (
            "  above the process baseline",
            _gib(best["peak_rss"] - best["baseline_rss"]),
            _gib(base["peak_rss"] - base["baseline_rss"]) if "peak_rss" in base else "-",
        )
    )
    for row in rows:
        print(f"   {row[0]:<30}{row[1]:>22}{row[2]:>44}")
    if "seconds" in base:
        J, R = np.load(ours_npy), np.load(theirs_npy)
        err = float(np.abs(J.astype(np.float64) - R).max() / np.abs(R).max())
        speedup = base["seconds"] / best["seconds"]
        above = (best["peak_rss"] - best["baseline_rss"]) / (
            base["peak_rss"] - base["baseline_rss"]
        )
        print(f"   speed-up (jacfwd time / jacscope time): {speedup:.2f}x")
        print(
            "   peak memory ratio (jacscope / jacfwd): "
            f"{best['peak_rss'] / base['peak_rss']:.2f} (above the baselines: {above:.2f})"
        )
        print(f"   max|dJ| / max|J| = {err:.2e}")
    else:
        print(f"   jax.jacfwd: {base['error']}")


def _or(result: dict, key: str, unit: str) -> str:
    if key not in result:
        return "-"
    if unit == "GiB":
        return _gib(result[key])
    return f"{result[key]:.1f} {unit}"


def _runs(results: list[dict], key: str = "seconds") -> str:
    return ", ".join(f"{r[key]:.1f}" if key in r else "x" for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each method")
    parser.add_argument("--steps", type=int, default=625, help="steps of the default model")
    parser.add_argument("--wide-hidden", type=int, default=266, help="hidden width, wide model")
    parser.add_argument("--wide-steps", type=int, default=625, help="steps of the wide model")
    parser.add_argument(
        "--models", default="default,wide", help="comma-separated: default, wide (default both)"
    )
    parser.add_argument(
        "--jacfwd-timeout", type=float, default=1800, help="seconds before jax.jacfwd is stopped"
    )
    parser.add_argument(
        "--jacfwd-memory",
        type=float,
        default=12,
        help="memory limit of jax.jacfwd, GiB (XLA memory analysis, then address space)",
    )
    args = parser.parse_args()
    matmul = _spawn(["matmul"], timeout=600)
    peak = matmul["peak"]
    print(
        "matmul peak, float32, best of 7: "
        + ", ".join(f"{shape} {g:.0f} GFLOP/s" for shape, g in matmul["gflops"].items())
    )
    limit = int(args.jacfwd_memory * 2**30)
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models.split(",")
        if "default" in models:
            benchmark(
                "default 64-64-10",
                64,
                args.steps,
                args.repeats,
                args.jacfwd_timeout,
                limit,
                peak,
                tmp,
            )
        if "wide" in models:
            benchmark(
                f"wide 64-{args.wide_hidden}-10",
                args.wide_hidden,
                args.wide_steps,
                args.repeats,
                args.jacfwd_timeout,
                limit,
                peak,
                tmp,
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, rest = sys.argv[2], sys.argv[3:]
        workers = {
            "matmul": worker_matmul,
            "jacscope": lambda h, s, o: worker_jacscope(int(h), int(s), o),
            "jacfwd": lambda h, s, o, m: worker_jacfwd(int(h), int(s), o, int(m)),
            "flops": lambda h, s: worker_flops(int(h), int(s)),
        }
        print(json.dumps(workers[kind](*rest)))
    else:
        main()
