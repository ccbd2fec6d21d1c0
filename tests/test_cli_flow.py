"""`jacscope flow` end to end, in process, on a tiny flow: report.html and report.json
with finite numbers, the resumption of training from its last finished chunk (to the
same parameters as an uninterrupted run) and one-line refusals of bad flags."""

import json
import math
import shutil

import numpy as np
import pytest

from jacscope.cli import main
from jacscope.jobs import FlowConfig, FlowResult

TINY = ["--hidden", "8,8", "--batch-size", "32", "--iterations", "40", "--checkpoint-every", "20"]


def _run(out, *args):
    return main(["flow", *args, "--out", str(out)])


def _report(out) -> dict:
    return json.loads((out / "report.json").read_text())


def _state(out, name) -> dict:
    with np.load(out / "stages" / f"{name}.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("flow") / "run"
    assert _run(out, "--dataset", "eight_gaussians", *TINY) == 0
    return out


def test_a_tiny_flow_end_to_end(trained):
    names = ["config.toml", "figures", "job.json", "report.html", "report.json", "stages"]
    assert sorted(p.name for p in trained.iterdir()) == names
    report = _report(trained)
    assert set(report) == set(FlowResult._fields) and report["mode"] == "flow"
    assert report["config"]["hidden"] == [8, 8] and report["resumed"] == []
    assert report["loss_curve"]["iteration"] == [20, 40] and len(report["loss_curve"]["loss"]) == 2
    numbers = [
        report["test_nll"],
        report["steps"],
        *report["penalties"].values(),
        *report["loss_curve"]["loss"],
        *report["timings"].values(),
    ]
    assert all(v is not None and math.isfinite(v) for v in numbers), numbers
    assert report["steps"] >= 1 and report["num_params"] == (3 * 8 + 8) + (9 * 8 + 8) + (9 * 2 + 2)
    stages = sorted(p.name for p in (trained / "stages").glob("*.json"))
    assert stages == ["evaluate.json", "train-0.json", "train-1.json"]
    evaluated = _state(trained, "evaluate")
    assert evaluated["density"].shape == (80, 80) and evaluated["samples"].shape == (2000, 2)
    assert np.all(np.isfinite(evaluated["density"])) and np.all(np.isfinite(evaluated["samples"]))
    html = (trained / "report.html").read_text()
    assert "test NLL" in html and f"{report['test_nll']:.4g}" in html
    assert "data:image/png;base64," in html
    assert (trained / "figures" / "flow-densities.svg").exists()
    assert (trained / "figures" / "flow-loss.png").exists()


def test_a_rerun_resumes_from_the_last_finished_chunk(trained, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    for name in ("train-1.json", "train-1.npz", "report.json"):
        (out / ("stages" if name.startswith("train") else "") / name).unlink()
    assert _run(out, "--dataset", "eight_gaussians", *TINY) == 0
    report = _report(out)
    assert report["resumed"][0] == "train-0" and "train-1" not in report["resumed"]
    final, uninterrupted = _state(out, "train-1"), _state(trained, "train-1")
    assert sorted(final) == sorted(uninterrupted)
    for name in final:
        np.testing.assert_array_equal(final[name], uninterrupted[name], err_msg=name)
    assert report["test_nll"] == _report(trained)["test_nll"]
    assert report["loss_curve"] == _report(trained)["loss_curve"]
    assert "reused from" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dataset", "eight_gausians"], "did you mean eight_gaussians?"),
        (["--dataset", "digits"], "invalid choice: 'digits'"),
        (["--iterations", "0"], "iterations must be an integer >= 1"),
        (["--checkpoint-every", "0"], "checkpoint_every must be an integer >= 1"),
        (["--hidden", "8,0"], "every width of hidden must be an integer >= 1"),
        (["--learning-rate", "-1"], "learning_rate must be a finite number > 0"),
        (["--regulariser", "l2"], "argument --regulariser"),
    ],
)
def test_a_bad_flag_is_one_line_before_any_work(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    try:
        status = _run(out, *flags)
    except SystemExit as exit_info:  # refused as it was parsed
        status = exit_info.code
    assert status == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2  # rich may wrap
    assert not out.exists()


def test_the_configuration_checks_itself():
    assert FlowConfig(hidden=[4, 4]).hidden == (4, 4)
    assert FlowConfig(iterations=250, checkpoint_every=100).num_chunks == 3
    with pytest.raises(ValueError, match="dataset must be one of"):
        FlowConfig(dataset="digits")
