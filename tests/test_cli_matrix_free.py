"""`jacscope train-jacobian --matrix-free` and `jacscope report` end to end on a tiny run."""

import json

import numpy as np
import pytest

from jacscope.cli import main
from jacscope.jobs._folder import FORMAT
from jacscope.training import TrainingConfig, build_run, training_jacobian

# The matrix-free command end to end (about 70 s, most of it compiling the pipeline):
# `make test-slow`; tests/test_matrix_free.py checks the same analysis in the library.
pytestmark = pytest.mark.slow

TINY = ["--hidden", "8", "--epochs", "1", "--train-size", "256", "--batch-size", "32"]
FREE = ["--matrix-free", "--k", "4", "--slq-num-probes", "2", "--slq-depth", "8"]


def _mtimes(folder):
    """Modification times of the stored results."""
    files = (p for p in sorted(folder.rglob("*")) if p.is_file())
    return {p.name: p.stat().st_mtime_ns for p in files}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train-jacobian", *TINY, *FREE, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def exact_singular_values():
    config = TrainingConfig(hidden=8, epochs=1, train_size=256, batch_size=32)
    J = training_jacobian(build_run(config).run)
    return np.linalg.svd(J.astype(np.float64), compute_uv=False), np.linalg.svd(
        J.astype(np.float64) - np.eye(J.shape[0]), compute_uv=False
    )


def test_writes_the_report_and_never_the_jacobian(finished):
    report = json.loads((finished / "report.json").read_text())
    assert report["mode"] == "matrix-free"
    assert not (finished / "jacobian.npy").exists()
    assert report["num_params"] == 64 * 8 + 8 + 8 * 10 + 10
    assert set(report["estimated"]) == {"density", "regions"}
    analysis = report["analysis"]
    regions = analysis["regions"]
    for j in range(len(regions["taus"])):
        total = regions["chaotic"][j] + regions["bulk"][j] + regions["stable"][j]
        assert total == pytest.approx(report["num_params"], rel=1e-5)
    assert analysis["sweeps"]["total"] > 0 and report["peak_memory_mib"] > 0
    for name in ("top_j", "top_j_minus_i"):
        assert len(analysis[name]["values"]) == 4
        assert (finished / "stages" / f"{name}.npz").is_file()
    html = (finished / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    assert "estimate" in html


def test_top_singular_values_are_those_of_the_exact_jacobian(finished, exact_singular_values):
    analysis = json.loads((finished / "report.json").read_text())["analysis"]
    for name, exact in zip(("top_j", "top_j_minus_i"), exact_singular_values, strict=True):
        values = np.asarray(analysis[name]["values"])
        residuals = np.asarray(analysis[name]["residuals"])
        # float32 training: residual bound plus float32 rounding of J's products
        np.testing.assert_array_less(np.abs(values - exact[:4]), residuals + 1e-4 * values)


def test_second_run_resumes_every_stage(finished):
    (finished / "report.json").unlink()
    before = {k: v for k, v in _mtimes(finished).items() if k != "report.html"}
    assert main(["train-jacobian", *TINY, *FREE, "--out", str(finished)]) == 0
    report = json.loads((finished / "report.json").read_text())
    batches = {"density-batch-00000", "density-batch-00001"}
    assert set(report["resumed"]) == {"top_j", "top_j_minus_i", *batches}
    after = _mtimes(finished)
    assert {k: after[k] for k in before} == before


def test_report_rerenders(finished):
    (finished / "report.html").unlink()
    assert main(["report", str(finished)]) == 0
    assert (finished / "report.html").read_text().count("data:image/png;base64,") == 2


def test_exact_only_options_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train-jacobian", *TINY, *FREE, "--chunk-size", "8", "--out", str(out)]) == 2
    assert "--chunk-size" in capsys.readouterr().err
    assert not out.exists()


def test_folders_of_the_other_path_are_refused(finished, tmp_path, capsys):
    exact = tmp_path / "exact"
    claim = {"format": FORMAT, "kind": "train-jacobian", "identity": {}}
    exact.mkdir()
    (exact / "job.json").write_text(json.dumps(claim))
    assert main(["train-jacobian", *TINY, *FREE, "--out", str(exact)]) == 2
    assert "holds a `jacscope train-jacobian` job" in " ".join(capsys.readouterr().err.split())
    assert sorted(p.name for p in exact.iterdir()) == ["job.json"]
    assert main(["train-jacobian", *TINY, "--out", str(finished)]) == 2
    assert "--matrix-free` job" in " ".join(capsys.readouterr().err.split())


def test_flags_of_the_other_method_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train-jacobian", *TINY, *FREE, "--randomized-oversampling", "4", "--out", str(out)]
    assert main(args) == 2
    assert "--randomized-oversampling apply to --method randomized, not lanczos" in " ".join(
        capsys.readouterr().err.split()
    )
    assert not out.exists()


@pytest.mark.slow
def test_the_written_config_reproduces_the_run(finished, tmp_path):
    again = tmp_path / "again"
    assert (
        main(["train-jacobian", "--config", str(finished / "config.toml"), "--out", str(again)])
        == 0
    )
    first = json.loads((finished / "report.json").read_text())
    second = json.loads((again / "report.json").read_text())
    assert second["mode"] == "matrix-free" and second["config"] == first["config"]
    assert second["options"] == first["options"]
    assert second["analysis"]["regions"] == first["analysis"]["regions"]
