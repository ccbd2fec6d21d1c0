"""The HTML report: findings in words, table of contents, figure files, folded tables, units."""

import dataclasses
import html.parser
import re

import numpy as np
import pytest

from jacscope._memory import format_bytes
from jacscope._stages import split_arrays
from jacscope.jobs import ANALYSES
from jacscope.report._findings import findings
from jacscope.report._html import FOLD_ROWS, Section, Table, html_page
from jacscope.report._matrix_free import write_matrix_free_report
from jacscope.report._regions import region_rows, region_title
from jacscope.report._training import (
    SECTIONS,
    Drawn,
    key_value_table,
    label,
    spectrum_figure,
)
from jacscope.training import (
    TrainingConfig,
    data_dependence,
    region_counts,
    region_summary,
    seed_overlap,
)

TAUS = [1e-3, 1e-2, 1e-1]


def _spectrum(n=1000, seed=0):
    """Descending singular values: a chaotic tail, a bulk at several distances from one
    (some exactly one) and a stable tail."""
    rng = np.random.default_rng(seed)
    num_chaotic, num_bulk = n // 10, 7 * n // 10
    chaotic = 1.5 + rng.uniform(0, 20, num_chaotic)
    distance = rng.choice([0.0, 5e-4, 5e-3, 5e-2], num_bulk)
    bulk = 1 + rng.choice([1, -1], num_bulk) * distance
    stable = rng.uniform(1e-3, 0.8, n - num_chaotic - num_bulk)
    return np.sort(np.concatenate([chaotic, bulk, stable]))[::-1]


def _training():
    return {
        "initial_train_loss": 2.31,
        "initial_train_accuracy": 0.11,
        "initial_test_loss": 2.32,
        "initial_test_accuracy": 0.12,
        "train_loss": 0.05,
        "train_accuracy": 0.999,
        "test_loss": 0.17,
        "test_accuracy": 0.953,
        "first_step_loss": 2.3,
        "last_step_loss": 0.04,
    }


def _exact_report(S, cosines, config=None):
    config = dataclasses.asdict(config or TrainingConfig())
    return {
        "config": config,
        "learning_rate": TrainingConfig(**config).learning_rate,
        "num_params": S.size,
        "num_steps": 625,
        "training": _training(),
        "regions": region_counts(S, TAUS)._asdict(),
        "alignment": region_summary(cosines, S, TAUS),
        "analyses": {},
    }


def _share(S, tau):
    """The bulk's share of the spectrum, computed here, as the report words it."""
    share = 100 * np.count_nonzero(np.abs(S - 1) <= tau) / S.size
    return f"{share:.0f}%" if share >= 10 else f"{share:.2g}%"


def test_exact_findings_state_the_bulk_share_and_the_alignment():
    S = _spectrum()
    bulk = np.abs(S - 1) <= 1e-2
    cosines = np.where(bulk, 0.95, 0.25)
    cosines[np.flatnonzero(bulk)[0]] = 0.85  # the bulk's mean is then not a round 0.95
    sentences = findings(_exact_report(S, cosines))
    shares = next(s for s in sentences if "the bulk |s_i - 1| <= tau holds" in s)
    for tau in TAUS:
        count = np.count_nonzero(np.abs(S - 1) <= tau)
        assert f"{_share(S, tau)} ({count:,}) at tau = {tau:g}" in shares
    along = next(s for s in sentences if s.startswith("Along the bulk"))
    assert f"averages {cosines[bulk].mean():.4f}" in along
    assert "tau = 0.01" in along
    chaotic = np.count_nonzero(S > 1.01)
    assert any(f"{chaotic:,} directions are chaotic (s > 1.01" in s for s in sentences)
    assert "test accuracy from 0.120 to 0.953" in sentences[0]
    assert "This is the paper's setting" in sentences[1]


def test_another_setting_is_named_with_its_differences():
    S = _spectrum()
    report = _exact_report(S, np.ones_like(S), TrainingConfig(hidden=8, optimizer="adam"))
    setting = findings(report)[1]
    assert "not the paper's setting" in setting
    assert "hidden 8 (paper: 64)" in setting and "optimizer adam (paper: sgd)" in setting
    assert "learning rate 0.003 (paper: 0.1)" in setting


def _regions(resolved: bool):
    n = 1_126_410
    fraction, low, high = (0.372, 0.36, 0.385) if resolved else (0.41, 0.0, 0.991)
    per_tau = [None] * len(TAUS)
    return {
        "taus": TAUS,
        "exact": False,
        "largest": 15.4,
        "smallest": None,
        **{
            f"{name}{suffix}": [value] * len(TAUS)
            for name in ("chaotic", "bulk", "stable")
            for suffix, value in (
                ("", fraction * n),
                ("_stderr", 0.004 * n),
                ("_range", [low * n, high * n]),
                ("_resolved", resolved),
            )
        },
        "bulk_fraction": [fraction] * len(TAUS),
        "bulk_fraction_stderr": [0.004] * len(TAUS),
        "bulk_fraction_range": [[low, high]] * len(TAUS),
        "resolution": 0.02,
        "confidence": 0.95,
        "chebyshev_products": [67_130_008, 6_834_672, 818_480],
        "verdicts": per_tau,
        "num_directions": n,
        "num_probes": 2,
    }


def test_one_region_layout_marks_estimated_numbers_and_only_those():
    exact = region_counts(_spectrum(), TAUS)._asdict()
    assert exact["exact"] and exact["bulk_stderr"] == [0.0] * len(TAUS)
    ranges = zip(exact["bulk_range"], exact["bulk"], strict=True)
    assert all(low == high == c for (low, high), c in ranges)
    assert region_title(exact).startswith("region counts, exact")
    cells = [str(cell) for row in region_rows(exact) for cell in row]
    assert not any("≈" in cell or "unresolved" in cell or "±" in cell for cell in cells)
    resolved, unresolved = _regions(True), _regions(False)
    assert resolved.keys() == exact.keys() == unresolved.keys()
    assert "estimated" in region_title(resolved) and "2 probes" in region_title(resolved)
    assert all(cell.startswith("≈ ") for row in region_rows(resolved) for cell in row[1:])
    for row in region_rows(unresolved):
        assert all(cell.startswith("unresolved") for cell in row[1:])
        assert "products would resolve it" in row[-1]


def _matrix_free_report(resolved: bool, num_params=1_126_410):
    k = 4
    values = [15.4, 12.0, 11.1, 10.3]
    top = {
        "values": values,
        "residuals": [1e-3 * v for v in values],
        "relative_residuals": [1e-3] * k,
        "method": "lanczos",
        "num_matvecs": 40,
        "sweeps": 40,
        "seconds": 1.0,
    }
    edges = [0.0, *np.geomspace(1e-3, 16, 8).tolist()]
    counts = [num_params / 8] * 8
    return {
        "mode": "matrix-free",
        "config": dataclasses.asdict(TrainingConfig(hidden=1024, hidden_layers=2)),
        "learning_rate": 0.1,
        "num_params": num_params,
        "num_steps": 625,
        "dtype": "float32",
        "training": _training(),
        "options": {
            "k": k,
            "method": "lanczos",
            "lanczos": {"depth": None, "tol": 1e-2},
            "randomized": {"oversampling": 10},
            "slq": {"num_probes": 2, "depth": 16},
            "checkpoint_every": "stored",
            "probe_seed": 0,
        },
        "analysis": {
            "top_j": top,
            "top_j_minus_i": {**top, "values": [v - 0.2 for v in values]},
            "density": {
                "grid": np.linspace(0, 16, 50).tolist(),
                "density": np.full(50, num_params / 16).tolist(),
                "bandwidth": 0.1,
                "edges": edges,
                "counts": counts,
                "counts_stderr": [1.0] * 8,
                "counts_range": [[c / 2, 2 * c] for c in counts],
                "num_probes": 2,
                "depth": 16,
            },
            "regions": _regions(resolved),
            "cost": {"num_steps": 625, "checkpoint_every": None, "stored_bytes": 7 * 2**30},
            "sweeps": {"mv": 296, "rmv": 296, "total": 592},
            "timings": {"operator": 4.0, "top_j": 1000.0, "density": 290.0, "total": 1294.0},
        },
        "timings": {"train": 2.4, "analysis": 1294.0, "total": 1300.0},
        "peak_memory_mib": 9318.4,
        "resumed": [],
        "estimated": ["density", "regions"],
    }


def test_an_unresolved_bulk_is_stated_with_its_range_and_budget_never_as_a_number():
    sentences = findings(_matrix_free_report(resolved=False))
    bulk = [s for s in sentences if "bulk fraction" in s]
    assert len(bulk) == len(TAUS)
    for sentence, products in zip(bulk, (67_130_008, 6_834_672, 818_480), strict=True):
        assert "unresolved at this budget: in [0.000, 0.991]" in sentence
        assert f"about {products:,} products" in sentence
        assert "%" not in sentence
    assert not any("41%" in s or "0.41" in s for s in sentences)


def test_a_resolved_bulk_is_stated_as_an_estimate():
    sentences = findings(_matrix_free_report(resolved=True))
    bulk = [s for s in sentences if "lie in the bulk" in s]
    assert len(bulk) == len(TAUS)
    assert "An estimated 37.2% ± 0.4% of the 1,126,410 directions" in bulk[0]
    assert "95% range 36.0% to 38.5%" in bulk[0] and "unresolved" not in bulk[0]


class _Links(html.parser.HTMLParser):
    """The `#` links and the element ids of a page, in order."""

    def __init__(self):
        super().__init__()
        self.links, self.ids = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href", "").startswith("#"):
            self.links.append(attrs["href"][1:])
        if "id" in attrs:
            self.ids.append(attrs["id"])


def test_the_contents_link_every_section_in_order():
    sections = [Section("Findings", points=["One."]), Section("Cost"), Section("Cost")]
    page = html_page("Report", sections)
    parser = _Links()
    parser.feed(page)
    assert parser.links == parser.ids == ["findings", "cost", "cost-2"]
    assert page.index("<nav") < page.index('id="findings"')


def test_the_matrix_free_page_opens_with_the_findings_and_writes_its_figures(tmp_path):
    report = _matrix_free_report(resolved=False, num_params=4810)
    write_matrix_free_report(tmp_path, report)
    page = (tmp_path / "report.html").read_text()
    parser = _Links()
    parser.feed(page)
    assert parser.links == parser.ids and parser.ids[:2] == ["findings", "configuration"]
    first = page.index('id="findings"')
    assert first < page.index('id="configuration"')
    assert "unresolved at this budget" in page[first : page.index('id="configuration"')]
    for name in ("top-singular-values", "spectrum"):
        assert (tmp_path / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert b"<svg" in (tmp_path / "figures" / f"{name}.svg").read_bytes()[:1000]
        assert f'href="figures/{name}.svg"' in page
    assert page.count("data:image/png;base64,") == 2
    # 4810^2 float32 numbers, and the peak memory, in binary units
    assert "88.3 MiB" in page and "9.1 GiB" in page and "7 GiB" in page
    # the same figures again: the files are left as they are
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "figures").iterdir()}
    write_matrix_free_report(tmp_path, report)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "figures").iterdir()} == stamps


@pytest.mark.parametrize("rows", [FOLD_ROWS, FOLD_ROWS + 1])
def test_long_tables_fold(rows):
    table = Table("values", ["i", "s_i"], [[i, float(i)] for i in range(rows)])
    page = html_page("Report", [Section("Spectrum", tables=[table])])
    folded = re.search(r"<details><summary>values: (\d+) rows", page)
    if rows > FOLD_ROWS:
        assert folded and int(folded.group(1)) == rows
    else:
        assert folded is None and "<caption>values</caption>" in page


def test_sizes_and_labels_read_as_words():
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(4810**2 * 4) == "88.3 MiB"
    assert format_bytes(4.6 * 2**40) == "4.6 TiB"
    assert label("train_loss") == "train loss"
    assert label("analysis:function_space") == "analysis: function space"
    table = key_value_table("resources", {"peak_memory_mib": 613.0, "mv_bytes": 3 * 2**30})
    assert table.rows == [["peak memory", "613 MiB"], ["working memory of one mv", "3 GiB"]]


def test_the_spectrum_figure_marks_the_regions_the_floor_and_exact_ones():
    S = _spectrum()
    fig = spectrum_figure(S, TAUS, "float32")
    left, right = fig.axes
    texts = [t.get_text() for t in right.get_legend().get_texts()]
    assert f"exactly 1: {np.count_nonzero(S == 1):,}" in texts
    assert any("float32 noise floor" in t for t in texts)
    regions = [t.get_text() for t in left.get_legend().get_texts()]
    assert f"bulk: {np.count_nonzero(np.abs(S - 1) <= 1e-3):,}" in regions
    assert f"chaotic: {np.count_nonzero(S > 1 + 1e-3):,}" in regions


def _orthogonal(rng, n):
    return np.linalg.qr(rng.standard_normal((n, n)))[0]


def test_the_data_and_seed_sections_draw_and_state_their_results(tmp_path):
    assert set(SECTIONS) == set(ANALYSES)
    rng = np.random.default_rng(1)
    S, other = _spectrum(60, seed=1), _spectrum(60, seed=2)
    noise = np.sort(rng.uniform(0, 3, 60))[::-1]
    results = {
        "data": data_dependence({"real": S, "noise inputs": noise}, TAUS),
        "seeds": seed_overlap(S, _orthogonal(rng, 60), other, _orthogonal(rng, 60), taus=TAUS),
    }
    report = _exact_report(S, np.ones_like(S))
    report["analyses"] = {
        name: {"numbers": split_arrays(result)[0]} for name, result in results.items()
    }
    drawn = Drawn(report, S, 1e-2, tmp_path)
    for name, result in results.items():
        section = SECTIONS[name](result._asdict(), drawn)
        assert section.anchor == name and section.figures[0].files
        for path in section.figures[0].files:
            assert (tmp_path / path).stat().st_size > 0
    sentences = findings(report)
    data = next(s for s in sentences if "the bulk holds" in s)
    assert f"{_share(S, 1e-2)} on real" in data and f"{_share(noise, 1e-2)} on noise inputs" in data
    seeds = next(s for s in sentences if s.startswith("The bulks of two initialisations"))
    row = next(r for r in results["seeds"].bulk if r["tau"] == 1e-2)
    assert f"{row['dims'][0]:,} and {row['dims'][1]:,} dimensions" in seeds
    assert f"against {row['expected']:.3g} for random subspaces" in seeds
