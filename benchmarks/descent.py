"""UPGrad side by side with TorchJD's: time per aggregation and the outputs' agreement.

For m = 2, 8, 32, 128, 512, 1024 rows and n = 10,000 columns (a standard normal
Jacobian, float64, fixed seed), times `jacscope.descent.upgrad` (jitted; the
dual-cone solver `method=None`: `ActiveSet` for m <= 64, `ProjectedGradient` beyond)
and TorchJD's `UPGrad()` (quadprog, one QP per row, on the CPU), and prints per m: the
median time per aggregation, the largest non-conflict violation max(0, -min_i (J A(J))_i)
relative to ||J||_F^2, the largest absolute difference of the two outputs relative to
the largest entry of TorchJD's, and the ratio of the times. TorchJD is run only for
m <= `--torchjd-max-m` (default 512: its m = 1024 takes many minutes).

TorchJD comes from the benchmark extra (torch on the CPU and torchjd), never from the
core; without it the table has jacscope's columns alone.

    python benchmarks/descent.py [--small] [--torchjd-max-m 512] [--repeats 3]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from jacscope import descent  # noqa: E402


def _time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), out


def _violation(J, d):
    J, d = np.asarray(J), np.asarray(d)
    return max(0.0, -float(np.min(J @ d))) / float(np.sum(J * J))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="m = 2, 8, 32 and n = 1,000")
    parser.add_argument("--torchjd-max-m", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = [2, 8, 32] if args.small else [2, 8, 32, 128, 512, 1024]
    n = 1_000 if args.small else 10_000
    try:
        import torch
        from torchjd.aggregation import UPGrad

        torch.set_num_threads(max(1, torch.get_num_threads()))
    except ImportError:
        torch = None
        print("torchjd is not installed (pip install torch torchjd): jacscope alone")
    upgrad = jax.jit(descent.upgrad)
    print(f"device: {jax.devices()[0].device_kind}, n = {n:,}, float64")
    header = f"{'m':>5} {'jacscope s':>11} {'violation':>10} {'torchjd s':>10} {'violation':>10}"
    print(header + f" {'max |diff|':>11} {'ratio':>7}")
    for m in sizes:
        J = jnp.asarray(np.random.default_rng(m).standard_normal((m, n)))
        upgrad(J).block_until_ready()  # compile
        t_ours, ours = _time(lambda J=J: upgrad(J).block_until_ready(), args.repeats)
        row = f"{m:>5} {t_ours:>11.4f} {_violation(J, ours):>10.1e}"
        if torch is not None and m <= args.torchjd_max_m:
            Jt = torch.tensor(np.asarray(J))
            aggregator = UPGrad()
            reps = args.repeats if m <= 128 else 1
            t_theirs, theirs = _time(lambda Jt=Jt, agg=aggregator: agg(Jt), reps)
            theirs = theirs.numpy()
            diff = float(np.max(np.abs(np.asarray(ours) - theirs)) / np.max(np.abs(theirs)))
            row += f" {t_theirs:>10.4f} {_violation(J, theirs):>10.1e} {diff:>11.1e}"
            row += f" {t_theirs / t_ours:>7.1f}"
        else:
            row += f" {'-':>10} {'-':>10} {'-':>11} {'-':>7}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
