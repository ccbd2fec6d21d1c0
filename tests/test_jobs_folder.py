"""The folder protocol (`JobFolder`), configuration files, `jacscope.load` and the
registry of analyses: one owner for output folders, and the layers agree."""

import json

import numpy as np
import pytest

import jacscope
from jacscope import FolderError
from jacscope.cli._main import build_parser
from jacscope.jobs import (
    ANALYSES,
    DEFAULT_ANALYSES,
    ExactSettings,
    JobFolder,
    MatrixFreeSettings,
    SpectrumConfig,
    parse_analyses,
)
from jacscope.jobs._config_file import build, read_toml, to_toml
from jacscope.linalg import SLQ, Lanczos
from jacscope.training import TrainingConfig


def _mtimes(folder):
    return {p: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_claim_is_kept_refused_or_forced(tmp_path):
    folder = JobFolder(tmp_path, "test", {"config": {"lr": 0.1, "hidden": 8}})
    with folder.claimed():
        folder.stage("a", lambda: {"x": np.arange(3.0), "n": 3})
    claim = json.loads((tmp_path / "job.json").read_text())
    assert claim["kind"] == "test" and claim["identity"]["config"]["lr"] == 0.1

    before = _mtimes(tmp_path)
    other = JobFolder(tmp_path, "test", {"config": {"lr": 0.2, "hidden": 8}})
    with pytest.raises(FolderError, match=r"differing: config\.lr\); pass --force"):
        with other.claimed():
            pass
    with pytest.raises(FolderError, match="holds a `jacscope test` job"):
        with JobFolder(tmp_path, "other", {}).claimed():
            pass
    assert _mtimes(tmp_path) == before  # a refused claim changes nothing

    same = JobFolder(tmp_path, "test", {"config": {"lr": 0.1, "hidden": 8}})
    with same.claimed():
        again = same.stage("a", lambda: pytest.fail("recomputed"))
    assert same.resumed == ["a"] and again["n"] == 3
    np.testing.assert_array_equal(again["x"], np.arange(3.0))

    with other.claimed(force=True):
        assert not (tmp_path / "stages").exists()
        assert other.load("a") is None


def test_a_stage_is_reused_only_from_the_same_inputs(tmp_path):
    folder = JobFolder(tmp_path, "test", {})
    calls = []
    compute = lambda: calls.append(1) or {"v": float(len(calls))}
    with folder.claimed():
        assert folder.stage("s", compute, depends={"J": "digest 1"})["v"] == 1.0
        assert folder.stage("s", compute, depends={"J": "digest 1"})["v"] == 1.0
        assert folder.stage("s", compute, depends={"J": "digest 2"})["v"] == 2.0
    assert len(calls) == 2 and folder.resumed == ["s"]


def test_a_folder_is_written_by_one_process_at_a_time(tmp_path):
    import subprocess
    import sys
    import time

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from jacscope._io import folder_lock\n"
            f"with folder_lock({str(tmp_path)!r}):\n"
            "    print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.perf_counter()
        with pytest.raises(FolderError, match=r"is being written by pid \d+"):
            with JobFolder(tmp_path, "test", {}).claimed(force=True):
                pass
        assert time.perf_counter() - start < 5
        assert not (tmp_path / "job.json").exists()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(
    "instance",
    [
        TrainingConfig(optimizer="adam", hidden=16, lr=0.01, train_size=100),
        ExactSettings(analyses="all", svd_dtype="float64", restricted_ks=(3, 9)),
        MatrixFreeSettings(k=8, lanczos=Lanczos(depth=40, tol=1e-3), slq=SLQ(num_probes=4)),
        SpectrumConfig(hidden=(16, 8), wrt="inputs", dtype="float64"),
    ],
)
def test_a_configuration_round_trips_through_toml(tmp_path, instance):
    path = tmp_path / "config.toml"
    path.write_text(to_toml({"section": instance}))
    assert build(type(instance), read_toml(path)["section"]) == instance


def test_a_configuration_file_names_an_unknown_setting(tmp_path):
    with pytest.raises(ValueError, match=r"unknown setting 'hiden' in training; did you mean"):
        build(TrainingConfig, {"hiden": 8}, "training")
    (tmp_path / "bad.toml").write_text("[training\nhidden = 8")
    with pytest.raises(ValueError, match="bad.toml is not valid TOML"):
        read_toml(tmp_path / "bad.toml")


def test_load_reads_a_partial_folder(tmp_path):
    settings = MatrixFreeSettings(k=2, slq=SLQ(num_probes=4, probes_per_batch=2))
    identity = {"config": {**vars(TrainingConfig())}, "settings": settings}
    import dataclasses

    identity["settings"] = dataclasses.asdict(settings)
    folder = JobFolder(tmp_path, "train-jacobian --matrix-free", identity)
    with folder.claimed():
        folder.save("top_j", {"values": [2.0, 1.0], "S": np.array([2.0, 1.0])})
    results = jacscope.load(tmp_path)
    assert results.kind == "train-jacobian --matrix-free" and not results.finished
    assert results.config == TrainingConfig() and results.settings == settings
    assert results.done == ["top_j"]
    assert results.missing == ["top_j_minus_i", "density-batch-00000", "density-batch-00001"]
    np.testing.assert_array_equal(results.stage("top_j")["S"], [2.0, 1.0])
    with pytest.raises(KeyError, match="top_j_minus_i"):
        results.stage("top_j_minus_i")
    with pytest.raises(FolderError, match="not a jacscope output folder"):
        jacscope.load(tmp_path / "stages")


def test_the_job_the_report_and_the_cli_agree_on_the_analyses():
    from jacscope.report import SECTIONS

    assert parse_analyses("all") == tuple(ANALYSES)
    assert set(DEFAULT_ANALYSES) <= set(ANALYSES) and "spectrum" in DEFAULT_ANALYSES
    assert set(SECTIONS) == set(ANALYSES)  # one report section per analysis
    parser = build_parser()
    command = parser._subparsers._group_actions[0].choices["train-jacobian"]
    help_text = " ".join(command.format_help().split())
    assert all(name in help_text for name in ANALYSES)
    for name, analysis in ANALYSES.items():
        assert analysis.name == name and analysis.summary
