"""The findings of a train-jacobian report, in words: one sentence per finding.

`findings(report)` reads the numbers a finished job put in report.json, exact or
matrix-free, and states them: how training went, whether the run is the setting of
Belrose & Scherlis (arXiv 2412.07003), the share of the bulk |s_i - 1| <= tau, the
chaotic and stable directions, and what each further analysis measured along the
bulk. Nothing is recomputed; a matrix-free count whose interval is too wide is stated
as unresolved, with its interval and the products that would resolve it, never as a
number.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from jacscope.jobs.matrix_free import MODE as MATRIX_FREE
from jacscope.report._html import human_seconds
from jacscope.report._regions import count_text
from jacscope.training import TrainingConfig

_PAPER_FIELDS = (
    "dataset",
    "model",
    "labels",
    "inputs",
    "hidden",
    "hidden_layers",
    "epochs",
    "batch_size",
    "optimizer",
    "momentum",
    "train_size",
)
"""The fields of a `TrainingConfig` that make up the paper's setting (seeds and the
floating-point type do not)."""


def number(value: float | None, digits: int = 3) -> str:
    """`value` to `digits` significant digits (`"n/a"` for `None`); a value within 1%
    of one but not one shows enough digits for its distance from one to have two."""
    if value is None or not math.isfinite(value):
        return "n/a"
    gap = abs(1 - abs(value))
    if 0 < gap < 1e-2:
        return f"{value:.{math.ceil(-math.log10(gap)) + 1}f}"
    return f"{value:.{digits}g}"


def percent(fraction: float) -> str:
    """A fraction as a percentage: whole percents from 10%, two significant digits
    below (`"37%"`, `"4.2%"`, `"0.031%"`, `"0%"`)."""
    value = 100 * fraction
    if value == 0 or abs(value) >= 10:
        return f"{value:.0f}%"
    return f"{value:.2g}%"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _series(parts: Sequence[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def _tau(tau: float) -> str:
    return f"tau = {tau:g}"


def _middle(taus: Sequence[float]) -> int:
    """The index of the tolerance the report draws its figures at."""
    return len(taus) // 2


def _rows_at(rows: Sequence[Mapping], tau: float) -> dict[str, Mapping]:
    """The per-region rows of a `region_summary` at tolerance `tau`, by region."""
    return {row["region"]: row for row in rows if math.isclose(row["tau"], tau)}


def _shown(value: Any) -> str:
    return "all" if value is None else str(value)


def paper_differences(config: Mapping[str, Any], learning_rate: float | None) -> list[str]:
    """The settings in which the run `config` differs from the paper's, as `"name
    value (paper: value)"`; empty for the paper's setting."""
    paper = dataclasses.asdict(TrainingConfig())
    differences = [
        f"{name.replace('_', ' ')} {_shown(config.get(name))} (paper: {_shown(paper[name])})"
        for name in _PAPER_FIELDS
        if config.get(name) != paper[name]
    ]
    paper_rate = TrainingConfig().learning_rate
    if learning_rate is not None and not math.isclose(learning_rate, paper_rate):
        differences.append(f"learning rate {learning_rate:g} (paper: {paper_rate:g})")
    return differences


def _accuracy(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _training(report: Mapping[str, Any]) -> str:
    training, config = report["training"], report["config"]
    return (
        f"Training ({report['num_steps']:,} steps of {config['optimizer']}) took the test "
        f"accuracy from {_accuracy(training.get('initial_test_accuracy'))} to "
        f"{_accuracy(training.get('test_accuracy'))} and the test loss from "
        f"{number(training.get('initial_test_loss'))} to {number(training.get('test_loss'))} "
        f"nats (training accuracy {_accuracy(training.get('train_accuracy'))})."
    )


def _setting(report: Mapping[str, Any]) -> str:
    differences = paper_differences(report["config"], report.get("learning_rate"))
    if not differences:
        return (
            "This is the paper's setting (digits, MLP of one hidden layer of 64, SGD with "
            "momentum 0.9, 25 epochs, real labels and inputs), where Belrose & Scherlis find "
            "a large bulk of singular values extremely close to one."
        )
    return (
        f"This run is not the paper's setting: {'; '.join(differences)}; the paper's "
        "observations need not carry over."
    )


def _bulk_shares(regions: Mapping[str, Any]) -> list[str]:
    """The bulk's share at every tau: one sentence when exact; when estimated one per
    tau, each with its spread and range, or its range and the products that would
    resolve it."""
    total = regions["num_directions"]
    if regions["exact"]:
        parts = [
            f"{percent(bulk / total)} ({bulk:,}) at {_tau(tau)}"
            for tau, bulk in zip(regions["taus"], regions["bulk"], strict=True)
        ]
        return [f"Of the {total:,} directions, the bulk |s_i - 1| <= tau holds {_series(parts)}."]
    return [_estimated_bulk(regions, j) for j in range(len(regions["taus"]))]


def _estimated_bulk(regions: Mapping[str, Any], j: int) -> str:
    tau = regions["taus"][j]
    low, high = regions["bulk_fraction_range"][j]
    if not regions["bulk_resolved"][j]:
        return (
            f"At {_tau(tau)} the bulk fraction is unresolved at this budget: in "
            f"[{low:.3f}, {high:.3f}]; about {regions['chebyshev_products'][j]:,} products "
            "with J would resolve it."
        )
    stderr = 100 * regions["bulk_fraction_stderr"][j]
    digits = 0 if stderr >= 1 else 1 if stderr == 0 else min(3, math.ceil(-math.log10(stderr)))

    def share(fraction: float) -> str:
        return f"{100 * fraction:.{digits}f}%"

    return (
        f"An estimated {share(regions['bulk_fraction'][j])} ± {stderr:.{digits}f}% of the "
        f"{regions['num_directions']:,} directions lie in the bulk at {_tau(tau)} "
        f"(95% range {share(low)} to {share(high)})."
    )


def _ends(regions: Mapping[str, Any]) -> str:
    """The chaotic and stable counts at the middle tau, exact or as `count_text`."""
    j = _middle(regions["taus"])
    tau = regions["taus"][j]
    if not regions["exact"]:
        return (
            f"At {_tau(tau)} the chaotic count (s > {1 + tau:g}, up to s_max = "
            f"{number(regions['largest'])}) is {count_text(regions, 'chaotic', j)}; the "
            f"stable count (s < {1 - tau:g}) is {count_text(regions, 'stable', j)}."
        )
    chaotic, stable = regions["chaotic"][j], regions["stable"][j]
    top = f", up to s_max = {number(regions['largest'])}" if chaotic else ""
    bottom = f", down to s_min = {number(regions['smallest'])}" if stable else ""
    return (
        f"At {_tau(tau)}, {_count(chaotic, 'direction')} {'is' if chaotic == 1 else 'are'} "
        f"chaotic (s > {1 + tau:g}{top}) and {stable:,} stable (s < {1 - tau:g}{bottom})."
    )


def _alignment(rows: Sequence[Mapping], tau: float) -> str:
    by_region = _rows_at(rows, tau)
    bulk = by_region.get("bulk")
    if bulk is None or bulk["mean"] is None:
        return f"The bulk is empty at {_tau(tau)}: no alignment of u_i and v_i along it."
    others = [
        f"{name} {number(by_region[name]['mean'])}"
        for name in ("chaotic", "stable")
        if name in by_region and by_region[name]["mean"] is not None
    ]
    rest = f"; over the other directions {' and '.join(others)}" if others else ""
    return (
        f"Along the bulk ({_tau(tau)}) cos(u_i, v_i) averages {number(bulk['mean'], 4)} "
        f"(median {number(bulk['median'], 4)}, min {number(bulk['min'], 4)}){rest}."
    )


def _linearity(numbers: Mapping[str, Any]) -> str:
    parts = []
    for label, s, limit in zip(
        numbers["labels"], numbers["singular_values"], numbers["linear_range"], strict=True
    ):
        reach = "at no eps tried" if limit is None else f"up to eps = {float(f'{limit:.2g}'):g}"
        parts.append(f"{reach} along the {label} direction (s = {number(s, 4)})")
    return (
        "Retraining from theta_0 + eps v_i moves theta_T by the Jacobian's prediction "
        f"s_i eps u_i to within 10% {' and '.join(parts)}."
    )


def _outputs(numbers: Mapping[str, Any], tau: float) -> str | None:
    sets = numbers["sets"]
    means: dict[str, list[str]] = {}
    for name in ("bulk", "chaotic"):
        values = []
        for set_name in sets:
            rows = [row for row in numbers["summary"] if row["set"] == set_name]
            row = _rows_at(rows, tau).get(name)
            values.append(number(None if row is None else row["mean"], 2))
        if any(v != "n/a" for v in values):
            means[name] = values
    if "bulk" not in means:
        return None
    listed = _series([f"{v} on {s}" for v, s in zip(means["bulk"], sets, strict=True)])
    chaotic = f"; a chaotic direction by {_series(means['chaotic'])}" if "chaotic" in means else ""
    return (
        f"Adding a bulk direction v_i ({_tau(tau)}, length {numbers['scale']:g}) to theta_T "
        f"changes the predictions by a mean max KL of {listed} inputs{chaotic}."
    )


def _function_space(numbers: Mapping[str, Any], tau: float) -> str | None:
    bulk = _rows_at(numbers["summary"], tau).get("bulk")
    if bulk is None or bulk["mean"] is None:
        return None
    rows, cols = numbers["shape"]
    return (
        f"Bulk directions ({_tau(tau)}) have on average {number(bulk['mean'])} of their "
        f"squared norm in the nullspace of the test-output Jacobian F ({rows:,} x {cols:,}, "
        f"rank {numbers['rank']:,}), against {number(numbers['expected'])} for a random "
        "direction."
    )


def _data(numbers: Mapping[str, Any]) -> str:
    counts = numbers["counts"]
    j = _middle(counts[0]["taus"])
    parts = [
        f"{percent(c['bulk'][j] / c['num_directions'])} on {name}"
        for name, c in zip(numbers["names"], counts, strict=True)
    ]
    return f"At {_tau(counts[0]['taus'][j])} the bulk holds {_series(parts)}."


def _seeds(numbers: Mapping[str, Any], tau: float) -> str | None:
    rows = [row for row in numbers["bulk"] if math.isclose(row["tau"], tau)]
    if not rows or rows[0]["mean_sq_cos"] is None:
        return None
    row = rows[0]
    dims = " and ".join(f"{d:,}" for d in row["dims"])
    return (
        f"The bulks of two initialisations ({_tau(tau)}, {dims} dimensions) overlap with "
        f"a mean squared principal cosine of {number(row['mean_sq_cos'])}, against "
        f"{number(row['expected'])} for random subspaces."
    )


def _exact(report: Mapping[str, Any]) -> list[str]:
    regions = report["regions"]
    tau = regions["taus"][_middle(regions["taus"])]
    sentences = [_training(report), _setting(report), *_bulk_shares(regions), _ends(regions)]
    if report.get("alignment"):
        sentences.append(_alignment(report["alignment"], tau))
    analyses = {name: record["numbers"] for name, record in report["analyses"].items()}
    per_analysis = {
        "linearity": _linearity,
        "outputs": lambda numbers: _outputs(numbers, tau),
        "function_space": lambda numbers: _function_space(numbers, tau),
        "data": _data,
        "seeds": lambda numbers: _seeds(numbers, tau),
    }
    for name, sentence in per_analysis.items():
        if name in analyses:
            text = sentence(analyses[name])
            if text is not None:
                sentences.append(text)
    return sentences


def _top(analysis: Mapping[str, Any]) -> str:
    top_j, top_j_minus_i = analysis["top_j"], analysis["top_j_minus_i"]
    values, others = top_j["values"], top_j_minus_i["values"]
    worst = max(top_j["relative_residuals"] + top_j_minus_i["relative_residuals"])
    return (
        f"The largest singular value of J is s_1 = {number(values[0], 4)} and the "
        f"{len(values)}th {number(values[-1], 4)}; those of J - I run from "
        f"{number(others[0], 4)} to {number(others[-1], 4)} (relative residuals at most "
        f"{worst:.1e})."
    )


def _matrix_free(report: Mapping[str, Any]) -> list[str]:
    analysis = report["analysis"]
    regions = analysis["regions"]
    sentences = [_training(report), _setting(report), _top(analysis)]
    sentences.extend([*_bulk_shares(regions), _ends(regions)])
    sweeps = analysis["sweeps"]
    sentences.append(
        f"The analysis took {sweeps['total']:,} passes through training "
        f"({sweeps['mv']:,} forward, {sweeps['rmv']:,} reverse) in "
        f"{human_seconds(report['timings'].get('analysis'))}."
    )
    return sentences


def findings(report: Mapping[str, Any]) -> list[str]:
    """The findings of a train-jacobian report, one sentence each.

    **Arguments:**

    - `report`: the dict of report.json: a `TrainJacobianReport` (exact) or a
      `MatrixFreeReport` (`mode == "matrix-free"`).

    **Returns:** sentences, in order: training (loss and accuracy before and after),
    whether the run is the paper's setting, then for an exact report the bulk's share
    at each tau, the chaotic and stable counts and one sentence for each of the
    alignment, linearity, outputs, function-space, data and seed analyses that ran;
    for a matrix-free report the top singular values, the estimated bulk fraction at
    each tau (or its interval and the products that would resolve it), the chaotic and
    stable counts and the passes through training spent.
    """
    if report.get("mode") == MATRIX_FREE:
        return _matrix_free(report)
    return _exact(report)
