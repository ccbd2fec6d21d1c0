"""`jacscope train-jacobian` and `jacscope report` end to end on a tiny run."""

import json

import numpy as np
import pytest

import jacscope
from jacscope.cli import main
from jacscope.jobs import DEFAULT_ANALYSES

TINY = ["--hidden", "8", "--epochs", "1", "--train-size", "256", "--batch-size", "32"]


def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in sorted((folder / "stages").glob("analysis-*"))}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train-jacobian", *TINY, "--restricted-ks", "30,120", "--out", str(out)]) == 0
    return out


def test_writes_every_file(finished):
    for name in ("jacobian.npy", "stages/singular-values.npz", "report.json", "report.html"):
        assert (finished / name).is_file(), name
    report = json.loads((finished / "report.json").read_text())
    assert report["num_params"] == 64 * 8 + 8 + 8 * 10 + 10
    assert report["num_steps"] == 256 // 32
    assert list(report["analyses"]) == list(DEFAULT_ANALYSES)
    assert report["analyses"]["restricted"]["numbers"]["ks"] == [30, 120]
    assert report["config"]["hidden"] == 8 and report["config"]["train_size"] == 256
    regions = report["regions"]
    for chaotic, bulk, stable in zip(
        regions["chaotic"], regions["bulk"], regions["stable"], strict=True
    ):
        assert chaotic + bulk + stable == report["num_params"]
    assert report["svd"]["dtype"] == "float32" and report["svd"]["seconds"] > 0
    assert report["peak_memory_mib"] > 0 and report["timings"]["total"] > 0
    assert 0 <= report["training"]["test_accuracy"] <= 1
    # The saved spectrum is that of the saved Jacobian.
    J = np.load(finished / "jacobian.npy")
    assert J.shape == (report["num_params"],) * 2
    with np.load(finished / "stages" / "singular-values.npz") as spectrum:
        assert set(spectrum.files) == {"S"}
        S = spectrum["S"]
    record = json.loads((finished / "stages" / "singular-values.json").read_text())
    assert record["depends"]["jacobian"] == jacscope.training.jacobian_digest(finished)
    exact = np.linalg.svd(J.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(S, exact, rtol=1e-4, atol=1e-5)
    assert regions["bulk"][0] == np.count_nonzero(np.abs(S - 1) <= 1e-3)
    # One embedded figure for the spectrum and for each further analysis.
    html = (finished / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(DEFAULT_ANALYSES)
    assert "<table>" in html


def test_second_run_resumes_and_redoes_only_what_is_missing(finished):
    # As after a run killed during the first analysis: its result and report.json missing.
    (finished / "report.json").unlink()
    (finished / "stages" / "analysis-spectrum.json").unlink()
    before = _mtimes(finished)
    jacobian_mtime = (finished / "jacobian.npy").stat().st_mtime_ns
    args = ["train-jacobian", *TINY, "--restricted-ks", "30,120", "--out", str(finished)]
    assert main(args) == 0
    report = json.loads((finished / "report.json").read_text())
    assert set(report["resumed"]) == {"jacobian", "singular-values", *DEFAULT_ANALYSES} - {
        "spectrum"
    }
    after = _mtimes(finished)
    assert "analysis-spectrum.json" in after
    del after["analysis-spectrum.json"]
    assert after == before
    assert (finished / "jacobian.npy").stat().st_mtime_ns == jacobian_mtime
    assert report["regions"] == report["analyses"]["spectrum"]["numbers"]


def test_report_rerenders_from_saved_results(finished):
    (finished / "report.html").unlink()
    report_json = (finished / "report.json").read_text()
    assert main(["report", str(finished)]) == 0
    html = (finished / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(DEFAULT_ANALYSES)
    assert (finished / "report.json").read_text() == report_json


def test_a_rerun_with_fewer_analyses_keeps_the_finished_ones(finished):
    args = ["train-jacobian", *TINY, "--restricted-ks", "30,120", "--analyses", "spectrum"]
    assert main([*args, "--out", str(finished)]) == 0
    report = json.loads((finished / "report.json").read_text())
    assert list(report["analyses"]) == list(DEFAULT_ANALYSES)
    html = (finished / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(DEFAULT_ANALYSES)


def test_report_refuses_an_unfinished_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "report.json" in capsys.readouterr().err


def test_other_config_refused_without_force(finished, capsys):
    report_json = (finished / "report.json").read_text()
    other = ["--hidden", "6", *TINY[2:]]
    assert main(["train-jacobian", *other, "--out", str(finished)]) == 2
    message = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "differing: config.hidden); pass --force" in message
    assert (finished / "report.json").read_text() == report_json


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [("--analyses", "spectrum,nope", "nope"), ("--restricted-ks", "0,30", "restricted_ks")],
)
def test_bad_options_are_refused_before_writing(tmp_path, capsys, option, value, named):
    out = tmp_path / "run"
    assert main(["train-jacobian", *TINY, option, value, "--out", str(out)]) == 2
    assert named in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_a_spectrum_of_another_jacobian_is_not_reused(finished):
    # As after J was recomputed: the spectrum and one analysis derived from another J.
    args = ["train-jacobian", *TINY, "--restricted-ks", "30,120", "--out", str(finished)]
    stages = finished / "stages"
    with np.load(stages / "singular-values.npz") as saved:
        S = saved["S"]
    np.savez(stages / "singular-values.npz", S=np.zeros_like(S))
    digest = jacscope.training.jacobian_digest(finished)
    for name in ("singular-values", "analysis-alignment"):
        record = json.loads((stages / f"{name}.json").read_text())
        key = ("depends", "jacobian") if name == "singular-values" else None
        if key:
            assert record["depends"]["jacobian"] == digest
            record["depends"]["jacobian"] = "another J"
        else:
            assert record["depends"]["jacobians"] == {"main": digest}
            record["depends"]["jacobians"]["main"] = "another J"
        (stages / f"{name}.json").write_text(json.dumps(record))
    assert main(args) == 0
    report = json.loads((finished / "report.json").read_text())
    assert "singular-values" not in report["resumed"] and "alignment" not in report["resumed"]
    assert "outputs" in report["resumed"]
    with np.load(stages / "singular-values.npz") as saved:
        np.testing.assert_array_equal(saved["S"], S)


@pytest.mark.parametrize("name", ["stages/singular-values.npz", "stages/analysis-outputs.json"])
def test_a_truncated_result_is_named_without_a_traceback(finished, capsys, name):
    path = finished / name
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 3])
    try:
        args = ["train-jacobian", *TINY, "--restricted-ks", "30,120", "--out", str(finished)]
        assert main(args) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"{path} is unreadable or damaged" in err and "Traceback" not in err
    finally:
        path.write_bytes(content)


def test_the_lyapunov_analysis_reads_the_training_map_beside_the_spectrum(finished):
    # Runs after the others that count the folder's analyses: it adds one.
    args = ["train-jacobian", *TINY, "--restricted-ks", "30,120", "--analyses", "lyapunov"]
    assert main([*args, "--out", str(finished)]) == 0
    report = json.loads((finished / "report.json").read_text())
    assert "jacobian" in report["resumed"]
    numbers = report["analyses"]["lyapunov"]["numbers"]
    assert numbers["state_size"] == 2 * report["num_params"]  # parameters and momentum
    S = np.load(finished / "stages" / "singular-values.npz")["S"]
    arrays = np.load(finished / "stages" / "analysis-lyapunov.npz")
    np.testing.assert_allclose(arrays["singular_rates"], np.log(S[:20]) / 8, rtol=1e-6)
    assert arrays["exponents"].shape == (20,) and np.all(np.isfinite(arrays["phase_rates"]))
    html = (finished / "report.html").read_text()
    assert "Lyapunov spectrum of the training map" in html


@pytest.mark.slow
def test_force_starts_over_for_another_config(finished):
    # Runs last: it replaces the folder's results.
    args = ["train-jacobian", "--hidden", "6", *TINY[2:], "--analyses", "spectrum", "--force"]
    assert main([*args, "--out", str(finished)]) == 0
    report = json.loads((finished / "report.json").read_text())
    assert report["config"]["hidden"] == 6 and report["resumed"] == []
    assert report["num_params"] == 64 * 6 + 6 + 6 * 10 + 10
    assert list(report["analyses"]) == ["spectrum"]
    assert sorted(p.name for p in (finished / "stages").glob("analysis-*")) == [
        "analysis-spectrum.json"
    ]
    assert np.load(finished / "jacobian.npy").shape == (report["num_params"],) * 2
