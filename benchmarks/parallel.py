"""Parallel evaluation of sequential computation: iterations and wall-clock time.

Every method of `jacscope.parallel` against sequential evaluation, on models trained
from scratch here (see `parallel_apps.py`):

1. a character GRU over 16 to 4096 steps, trained (contracting) and with its recurrent
   weights scaled up (chaotic): Jacobi, block Gauss-Seidel, sliding window, DEER and
   quasi-DEER against `lax.scan`;
2. MADE sampling of binarised digits (16, 64 and 256 pixels) with shared noise, and
   sampling a Gaussian MADE flow of digit intensities (16 and 64 pixels; continuous
   outputs, so Newton's method applies: DEER for the autoregressive form);
3. greedy Jacobi decoding of a character transformer trained on the standard
   library's docstrings, per block size;
4. sampling that transformer: Jacobi with pre-drawn Gumbel noise (the sequential
   sample exactly) and speculative Jacobi sampling (the sequential distribution);
5. consistency (CLLM) fine-tuning: iterations per block before and after, the tuned
   model decoding alone and as the draft of Jacobi decoding verified by the original
   (`jacobi_decode(..., draft=)`, whose output is the original's greedy output).

Iterations are the portable figure; wall-clock times are those of this CPU (a 2-core
machine evaluates the "parallel" positions one after another, so fewer iterations need
not mean less time). Results go to `--out` (one JSON file per section, the trained
models beside them); a rerun resumes from there, `--force` recomputes.

    .venv/bin/python benchmarks/parallel.py [--out results/parallel] [--force]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from jacscope.dynamics import lyapunov_spectrum
from jacscope.parallel import (
    MADE,
    jacobi_decode,
    solve_autoregressive,
    solve_sequence,
    speculative_jacobi_sample,
)

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import parallel_apps as apps  # noqa: E402

SONG_MADE_MNIST = {"iterations": 31, "length": 784}  # Song et al. (ICML 2021), MADE on MNIST
GRU_LENGTHS = (16, 64, 256, 1024, 4096)
SEQUENCE_METHODS = (
    "sequential",
    "jacobi",
    "block_gauss_seidel",
    "jacobi_window",
    "deer",
    "quasi_deer",
)
AR_METHODS = ("sequential", "jacobi", "block_gauss_seidel", "jacobi_window")
FLOW_METHODS = (*AR_METHODS, "deer")
CHAOTIC_GAIN = 8.0  # scale of the redrawn recurrent weights of the chaotic GRU
CHAOTIC_NEWTON_CAP = 512  # Newton iterations allowed in the chaotic regime (each is costly)


def timed(fn: Callable, *args, repeats: int = 3):
    """`(fn(*args), seconds)` for a jitted `fn`, compiled ahead of the clock: the median
    of `repeats` calls (one when a call takes over two seconds)."""
    compiled = fn.lower(*args).compile()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
        if times[-1] > 2.0:
            break
    return out, float(np.median(times))


def cached(out: pathlib.Path, name: str, like, train: Callable):
    """The model stored at `out/name.eqx`, or `train()` stored there."""
    path = out / f"{name}.eqx"
    if path.exists():
        return eqx.tree_deserialise_leaves(path, like)
    model = train()
    eqx.tree_serialise_leaves(path, model)
    return model


def lyapunov(step, h0, xs) -> float:
    """The largest Lyapunov exponent along the driven trajectory, per step
    (`jacscope.dynamics.lyapunov_spectrum`, one tangent vector, a tenth as transient)."""
    result = lyapunov_spectrum(step, h0, xs, k=1, transient=len(xs) // 10, key=jax.random.key(0))
    return float(result.exponents[0])


# ---------------------------------------------------------------- sections (numbers only)


def gru_section(out, text, progress, task):
    like = apps.GRULanguageModel(len(text.alphabet), 16, 32, key=jax.random.key(0))
    train = lambda: apps.train_gru(text, progress=_training(progress, task, "GRU"))[0]
    model = cached(out, "gru", like, train)
    h0 = jnp.zeros(32)
    tokens = jnp.asarray(text.test[: max(GRU_LENGTHS)])
    xs_all = model.inputs(tokens)
    # The trained GRU contracts (its gates saturate further when W_hh is scaled up); for
    # the chaotic regime its recurrent matrix is redrawn from the initialisation and
    # scaled by CHAOTIC_GAIN.
    fresh = apps.GRULanguageModel(len(text.alphabet), 16, 32, key=jax.random.key(5))
    regimes = {
        "contracting (trained)": model,
        f"chaotic (trained, W_hh redrawn x {CHAOTIC_GAIN:g})": eqx.tree_at(
            lambda m: m.cell.weight_hh, model, CHAOTIC_GAIN * fresh.cell.weight_hh
        ),
    }
    rows = []
    for regime, scaled in regimes.items():
        chaotic = scaled is not model
        exponent = lyapunov(scaled.step, h0, xs_all[:2000])
        for length in GRU_LENGTHS:
            xs = xs_all[:length]
            reference = None
            for method in SEQUENCE_METHODS:
                progress.update(task, description=f"GRU {regime} T={length} {method}")
                cap = None
                if chaotic and method in ("deer", "quasi_deer"):
                    cap = min(length, CHAOTIC_NEWTON_CAP)
                solve = jax.jit(
                    lambda xs, m=method, c=cap, step=scaled.step: solve_sequence(
                        step, h0, xs, method=m, max_iter=c
                    )
                )
                sol, seconds = timed(solve, xs)
                if reference is None:
                    reference, base = sol.states, seconds
                rows.append(
                    {
                        "regime": regime,
                        "lyapunov": exponent,
                        "length": length,
                        "method": method,
                        "iterations": int(sol.iterations),
                        "converged": bool(sol.converged),
                        "max_iter": cap or length,
                        "error": float(jnp.max(jnp.abs(sol.states - reference))),
                        "seconds": seconds,
                        "vs_sequential": seconds / base,
                    }
                )
                progress.advance(task)
            # How reproducible is the sequential result itself? lax.scan again, with the
            # first input moved by one unit in the last place.
            nudged = xs.at[0, 0].set(jnp.nextafter(xs[0, 0], jnp.inf))
            scan = jax.jit(lambda xs, s=scaled.step: solve_sequence(s, h0, xs, method="sequential"))
            rows.append(
                {
                    "regime": regime,
                    "lyapunov": exponent,
                    "length": length,
                    "method": "sequential, x_0 + 1 ulp",
                    "iterations": length,
                    "converged": True,
                    "max_iter": length,
                    "error": float(jnp.max(jnp.abs(scan(nudged).states - reference))),
                    "seconds": None,
                    "vs_sequential": None,
                }
            )
    return rows


def made_section(out, progress, task, samples=256):
    rows = []
    for side in (4, 8, 16):
        train, test = apps.binarised_digits(side)
        size = side * side
        progress.update(task, description=f"MADE {size} pixels: training")
        like = MADE(size, 500, key=jax.random.key(1))
        report = _training(progress, task, f"MADE {size} pixels")
        model = cached(
            out, f"made{size}", like, lambda t=train, r=report: apps.train_made(t, progress=r)[0]
        )
        nll = float(apps.made_nll(model, jnp.asarray(test)))
        noise = jax.random.uniform(jax.random.key(10 + side), (samples, size))
        for row in _sampling_rows(
            model.sampling_map, jnp.zeros(size, jnp.int32), noise, AR_METHODS, progress, task
        ):
            rows.append({"pixels": size, "test_nll_nats": nll, **row})
    return rows


def flow_section(out, progress, task, samples=256):
    rows = []
    for side in (4, 8):
        train, test = apps.dequantised_digits(side)
        size = side * side
        like = apps.GaussianMADE(size, 256, key=jax.random.key(5))
        report = _training(progress, task, f"flow {size} pixels")
        model = cached(
            out, f"flow{size}", like, lambda t=train, r=report: apps.train_flow(t, progress=r)[0]
        )
        nll = float(-jnp.mean(jax.vmap(model.log_prob)(jnp.asarray(test))))
        noise = jax.random.normal(jax.random.key(20 + side), (samples, size))
        for row in _sampling_rows(
            model.sampling_map, jnp.zeros(size), noise, FLOW_METHODS, progress, task
        ):
            rows.append({"pixels": size, "test_nll_nats": nll, **row})
    return rows


def _sampling_rows(sampling_map, guess, noise, methods, progress, task):
    """One row per method: `solve_autoregressive` of every noise row, against the first."""
    rows, reference = [], None
    for method in methods:
        progress.update(task, description=f"{guess.size} positions: {method}")
        solve = jax.jit(
            jax.vmap(lambda u, m=method: solve_autoregressive(sampling_map, guess, u, method=m))
        )
        sol, seconds = timed(solve, noise)
        if reference is None:
            reference, base = sol.states, seconds
        its = np.asarray(sol.iterations)
        rows.append(
            {
                "method": method,
                "mean_iterations": float(its.mean()),
                "max_iterations": int(its.max()),
                "mean_depth": float(np.asarray(sol.depth).mean()),
                "identical": float(np.mean(np.all(sol.states == reference, axis=1))),
                "max_abs_error": float(jnp.max(jnp.abs(sol.states - reference))),
                "all_converged": bool(np.all(sol.converged)),
                "seconds": seconds,
                "vs_sequential": seconds / base,
            }
        )
        progress.advance(task)
    return rows


def _training(progress, task, what):
    def report(step, loss):
        progress.update(task, description=f"{what}: training step {step}, loss {loss:.3f}")

    return report


def _transformer(out, text, progress, task):
    train = lambda: apps.train_transformer(text, progress=_training(progress, task, "transformer"))[
        0
    ]
    return cached(out, "transformer", apps.transformer(text), train)


def _prompts(tokens, count, length, seed):
    starts = np.random.default_rng(seed).integers(0, len(tokens) - length, count)
    return np.stack([tokens[s : s + length] for s in starts])


def decoding_section(out, text, progress, task, num_tokens=64, count=32):
    model = _transformer(out, text, progress, task)
    prompts = jnp.asarray(_prompts(text.test, count, 32, 5))
    rows, reference = [], None
    for block in (num_tokens, 8, 16, 32, 64):  # the first is greedy decoding itself
        method = "sequential" if reference is None else "jacobi"
        progress.update(task, description=f"greedy decoding: {method}, block {block}")
        decode = jax.jit(
            jax.vmap(
                lambda p, b=block, m=method: jacobi_decode(
                    model, p, num_tokens, block_size=b, method=m
                )
            )
        )
        res, seconds = timed(decode, prompts, repeats=1)
        if reference is None:
            reference, base = res.tokens, seconds
        passes = np.asarray(res.forward_passes)
        rows.append(
            {
                "method": "greedy (sequential)" if method == "sequential" else "jacobi",
                "block": block,
                "mean_iterations_per_block": float(np.asarray(res.iterations).mean()),
                "tokens_per_pass": float(num_tokens / passes.mean()),
                "identical_to_greedy": float(np.mean(np.all(res.tokens == reference, axis=1))),
                "seconds": seconds,
                "vs_sequential": seconds / base,
            }
        )
        progress.advance(task)
    rows.append(
        {"sample_continuation": text.decode(reference[0]), "prompt": text.decode(prompts[0])}
    )
    return rows


def sampling_section(out, text, progress, task, count=64):
    model = _transformer(out, text, progress, task)
    prompt = jnp.asarray(_prompts(text.test, 1, 32, 6)[0])
    vocab = len(text.alphabet)
    rows = []
    for length in (16, 32, 64):
        size = prompt.shape[0] + length

        def logits_fn(tokens, size=size):
            full = jnp.concatenate([prompt, tokens])
            return model(full)[prompt.shape[0] - 1 : size - 1]

        def causal(y, gumbel, logits_fn=logits_fn):
            return jnp.argmax(logits_fn(y) + gumbel, axis=-1).astype(jnp.int32)

        gumbel = jax.random.gumbel(jax.random.key(length), (count, length, vocab))
        guess = jnp.zeros(length, jnp.int32)
        reference = None
        for method in ("sequential", "jacobi"):
            progress.update(task, description=f"sampling T={length}: Gumbel {method}")
            sample = jax.jit(
                jax.vmap(
                    lambda g, m=method, f=causal, x0=guess: solve_autoregressive(f, x0, g, method=m)
                )
            )
            sol, seconds = timed(sample, gumbel, repeats=1)
            if reference is None:
                reference, base = sol.states, seconds
            rows.append(
                {
                    "length": length,
                    "method": f"{method} (Gumbel noise)",
                    "mean_passes": float(np.asarray(sol.iterations).mean()),
                    "identical_to_sequential": float(
                        np.mean(np.all(sol.states == reference, axis=1))
                    ),
                    "seconds": seconds,
                    "vs_sequential": seconds / base,
                }
            )
            progress.advance(task)
        progress.update(task, description=f"sampling T={length}: speculative Jacobi")
        keys = jax.random.split(jax.random.key(100 + length), count)
        spec = jax.jit(
            jax.vmap(lambda k, f=logits_fn, n=length: speculative_jacobi_sample(f, k, n, vocab))
        )
        res, seconds = timed(spec, keys, repeats=1)
        rows.append(
            {
                "length": length,
                "method": "speculative Jacobi",
                "mean_passes": float(np.asarray(res.iterations).mean()),
                "accepted_drafts": float(np.asarray(res.accepted).mean()),
                "seconds": seconds,
                "vs_sequential": seconds / base,
            }
        )
        progress.advance(task)
    return rows


def cllm_section(out, text, progress, task, block=16, num_tokens=32):
    model = _transformer(out, text, progress, task)
    train_prompts = _prompts(text.train, 512, 32, 7)
    test_prompts = jnp.asarray(_prompts(text.test, 64, 32, 8))
    progress.update(task, description="CLLM: collecting Jacobi trajectories")
    trajectories = apps.jacobi_trajectories(model, train_prompts, num_tokens, block)

    report = _training(progress, task, "CLLM fine-tuning")
    train = lambda: apps.consistency_finetune(model, trajectories, progress=report)[0]
    tuned = cached(out, "transformer_cllm", model, train)
    progress.advance(task)

    jacobi = lambda m, **kw: jax.jit(
        jax.vmap(lambda p: jacobi_decode(m, p, num_tokens, block_size=block, **kw))
    )
    rows = []
    for split, prompts in (
        ("train prompts", jnp.asarray(train_prompts[:64])),
        ("test prompts", test_prompts),
    ):
        progress.update(task, description=f"CLLM: greedy decoding of {split}")
        original = timed(jacobi(model, method="sequential"), prompts, repeats=1)
        tuned_greedy = timed(jacobi(tuned, method="sequential"), prompts, repeats=1)
        before = original[0].tokens
        # (row, (its greedy decoding, seconds), Jacobi decoding, model evaluations per pass)
        decoders = (
            ("before", original, jacobi(model), 1),
            ("after", tuned_greedy, jacobi(tuned), 1),
            ("after as draft, before verifies", original, jacobi(model, draft=tuned), 2),
        )
        for name, (g, g_seconds), decode, evaluations in decoders:
            progress.update(task, description=f"CLLM: decoding {split}, {name}")
            j, j_seconds = timed(decode, prompts, repeats=1)
            passes = np.asarray(j.forward_passes).mean()
            rows.append(
                {
                    "prompts": split,
                    "model": name,
                    "block": block,
                    "mean_iterations_per_block": float(np.asarray(j.iterations).mean()),
                    "tokens_per_pass": float(num_tokens / passes),
                    "tokens_per_evaluation": float(num_tokens / (evaluations * passes)),
                    "jacobi_equals_greedy": float(np.mean(np.all(j.tokens == g.tokens, axis=1))),
                    "output_unchanged": float(np.mean(np.all(j.tokens == before, axis=1))),
                    "token_agreement": float(np.mean(j.tokens == before)),
                    "jacobi_seconds": j_seconds,
                    "vs_greedy": j_seconds / g_seconds,
                }
            )
        progress.advance(task)
    return rows


# ---------------------------------------------------------------- report (printing only)


def _table(title, columns, rows, keys, formats):
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            *(
                "-" if row.get(k) is None else fmt(row[k])
                for k, fmt in zip(keys, formats, strict=True)
            )
        )
    return table


def _f(digits):
    return lambda v: f"{v:.{digits}f}"


def _e(v):
    return f"{v:.1e}"


def _ms(v):
    return f"{1e3 * v:.1f}"


def report(console, results):
    if "gru" in results:
        rows = results["gru"]
        for regime in dict.fromkeys(r["regime"] for r in rows):
            part = [r for r in rows if r["regime"] == regime]
            title = f"GRU (hidden 32), {regime}: Lyapunov exponent {part[0]['lyapunov']:+.3f}"
            console.print(
                _table(
                    title,
                    ["T", "method", "iterations", "converged", "max |err|", "ms", "x sequential"],
                    part,
                    [
                        "length",
                        "method",
                        "iterations",
                        "converged",
                        "error",
                        "seconds",
                        "vs_sequential",
                    ],
                    [str, str, str, str, _e, _ms, _f(2)],
                )
            )
        console.print(
            f"Newton methods in the chaotic regime stop after at most {CHAOTIC_NEWTON_CAP} "
            "iterations (converged = False when that cut them short)."
        )
    if "made" in results:
        rows = results["made"]
        console.print(
            _table(
                "MADE sampling of binarised digits, 256 samples with shared uniforms",
                [
                    "pixels",
                    "test NLL",
                    "method",
                    "mean it.",
                    "max it.",
                    "identical",
                    "ms",
                    "x sequential",
                ],
                rows,
                [
                    "pixels",
                    "test_nll_nats",
                    "method",
                    "mean_iterations",
                    "max_iterations",
                    "identical",
                    "seconds",
                    "vs_sequential",
                ],
                [str, _f(2), str, _f(2), str, _f(3), _ms, _f(2)],
            )
        )
        jac = {r["pixels"]: r for r in rows if r["method"] == "jacobi"}
        song = SONG_MADE_MNIST["iterations"] / SONG_MADE_MNIST["length"]
        for pixels, r in jac.items():
            console.print(
                f"MADE {pixels} pixels: {r['mean_iterations']:.2f} Jacobi iterations for {pixels} "
                f"sequential steps, ratio {r['mean_iterations'] / pixels:.3f} "
                f"(Song et al. 2021, MADE on MNIST: 31 / 784 = {song:.3f})"
            )
    if "flow" in results:
        console.print(
            _table(
                "Sampling a Gaussian MADE flow of digit intensities, 256 samples with shared noise",
                [
                    "pixels",
                    "test NLL",
                    "method",
                    "mean it.",
                    "max it.",
                    "max |err|",
                    "ms",
                    "x sequential",
                ],
                results["flow"],
                [
                    "pixels",
                    "test_nll_nats",
                    "method",
                    "mean_iterations",
                    "max_iterations",
                    "max_abs_error",
                    "seconds",
                    "vs_sequential",
                ],
                [str, _f(2), str, _f(2), str, _e, _ms, _f(2)],
            )
        )
    if "decoding" in results:
        rows = [r for r in results["decoding"] if "block" in r]
        console.print(
            _table(
                "Greedy decoding of 64 characters after 32-character prompts (32 prompts)",
                [
                    "method",
                    "block",
                    "iterations/block",
                    "tokens/pass",
                    "identical",
                    "ms",
                    "x greedy",
                ],
                rows,
                [
                    "method",
                    "block",
                    "mean_iterations_per_block",
                    "tokens_per_pass",
                    "identical_to_greedy",
                    "seconds",
                    "vs_sequential",
                ],
                [str, str, _f(2), _f(3), _f(3), _ms, _f(2)],
            )
        )
        sample = results["decoding"][-1]
        console.print(f"prompt {sample['prompt']!r} -> greedy {sample['sample_continuation']!r}")
    if "sampling" in results:
        rows = results["sampling"]
        console.print(
            _table(
                "Sampling the transformer at temperature 1 (64 samples per length)",
                ["T", "method", "passes", "identical", "ms", "x sequential"],
                rows,
                [
                    "length",
                    "method",
                    "mean_passes",
                    "identical_to_sequential",
                    "seconds",
                    "vs_sequential",
                ],
                [str, str, _f(2), _f(3), _ms, _f(2)],
            )
        )
    if "cllm" in results:
        console.print(
            _table(
                "Consistency (CLLM) fine-tuning, Jacobi blocks of 16 characters",
                [
                    "prompts",
                    "model",
                    "iterations/block",
                    "tokens/pass",
                    "tokens/model evaluation",
                    "Jacobi = its greedy",
                    "output = greedy before",
                    "tokens as before",
                    "x greedy",
                ],
                results["cllm"],
                [
                    "prompts",
                    "model",
                    "mean_iterations_per_block",
                    "tokens_per_pass",
                    "tokens_per_evaluation",
                    "jacobi_equals_greedy",
                    "output_unchanged",
                    "token_agreement",
                    "vs_greedy",
                ],
                [str, str, _f(2), _f(3), _f(3), _f(3), _f(3), _f(3), _f(2)],
            )
        )


# ---------------------------------------------------------------- command line


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("results/parallel"))
    parser.add_argument("--force", action="store_true", help="recompute finished sections")
    parser.add_argument(
        "--sections", nargs="*", default=["gru", "made", "flow", "decoding", "sampling", "cllm"]
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    console = Console(width=150)
    console.print(f"devices: {jax.devices()}, jax {jax.__version__}")
    text = apps.load_text()
    steps = {
        "gru": 2 * len(GRU_LENGTHS) * len(SEQUENCE_METHODS),
        "made": 12,
        "flow": 2 * len(FLOW_METHODS),
        "decoding": 5,
        "sampling": 9,
        "cllm": 3,
    }
    computes = {
        "gru": lambda p, t: gru_section(args.out, text, p, t),
        "made": lambda p, t: made_section(args.out, p, t),
        "flow": lambda p, t: flow_section(args.out, p, t),
        "decoding": lambda p, t: decoding_section(args.out, text, p, t),
        "sampling": lambda p, t: sampling_section(args.out, text, p, t),
        "cllm": lambda p, t: cllm_section(args.out, text, p, t),
    }
    results = {}
    with Progress(console=console) as progress:
        for name in args.sections:
            path = args.out / f"{name}.json"
            if path.exists() and not args.force:
                results[name] = json.loads(path.read_text())
                continue
            task = progress.add_task(name, total=steps[name])
            start = time.perf_counter()
            results[name] = computes[name](progress, task)
            path.write_text(json.dumps(results[name], indent=1))
            progress.update(task, description=f"{name}: {time.perf_counter() - start:.0f} s")
    report(console, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
