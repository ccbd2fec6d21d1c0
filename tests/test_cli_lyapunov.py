"""`jacscope lyapunov` end to end, in process, on short runs of every built-in system:
known sums of exponents, the folder's resumption and refusals, report.html, and the
Kaplan-Yorke dimension stated as unresolved when k exponents cannot fix it."""

import json
import math
import typing

import numpy as np
import pytest

import jacscope
from jacscope.cli import main
from jacscope.dynamics import SYSTEMS
from jacscope.jobs import LyapunovConfig, LyapunovResult, run_lyapunov
from jacscope.report import kaplan_yorke_text

SHORT = ["--num-steps", "400", "--transient", "50", "--num-batches", "4"]


def _run(out, *args):
    return main(["lyapunov", *args, "--out", str(out)])


def _report(out) -> dict:
    return json.loads((out / "report.json").read_text())


def _finite(report) -> bool:
    numbers = [*report["exponents"], *report["stderr"], *np.ravel(report["running"])]
    return all(v is not None and math.isfinite(v) for v in [*numbers, report["kaplan_yorke"]])


@pytest.fixture(scope="module")
def henon(tmp_path_factory):
    out = tmp_path_factory.mktemp("henon") / "run"
    assert _run(out, "--system", "henon", *SHORT) == 0
    return out


def test_henon_exponents_sum_to_log_b(henon):
    names = ["config.toml", "figures", "job.json", "report.html", "report.json", "stages"]
    assert sorted(p.name for p in henon.iterdir()) == names
    report = _report(henon)
    assert set(report) == set(LyapunovResult._fields) and report["mode"] == "lyapunov"
    # the Jacobian's determinant is -b everywhere: the sum is ln b in every batch
    assert abs(sum(report["exponents"]) - math.log(0.3)) < 1e-8
    np.testing.assert_allclose(np.sum(report["running"], axis=1), math.log(0.3), atol=1e-8)
    assert _finite(report) and all(s > 0 for s in report["stderr"])
    assert report["exponents"][0] > 0.3 and report["kaplan_yorke_resolved"]
    assert 1 < report["kaplan_yorke"] < 2 and np.shape(report["running"]) == (4, 2)
    assert report["num_steps"] == 400 and report["system"]["unit"] == "step"
    html = (henon / "report.html").read_text()
    assert f"Kaplan-Yorke</td><td>{report['kaplan_yorke']:.4g}<" in html
    assert "unresolved" not in html and "data:image/png;base64," in html
    assert (henon / "figures" / "lyapunov.svg").exists()
    results = jacscope.load(henon)
    assert results.config == LyapunovConfig(num_steps=400, transient=50, num_batches=4)
    assert results.done == ["spectrum"] and results.missing == []
    assert results.result.exponents == report["exponents"]


def test_a_rerun_recomputes_nothing(henon, capsys, monkeypatch):
    stored = _report(henon)
    stage = henon / "stages" / "spectrum.json"
    before = stage.stat().st_mtime_ns
    monkeypatch.setattr("jacscope.jobs.lyapunov._measure", lambda config: pytest.fail("recomputed"))
    assert _run(henon, "--system", "henon", *SHORT) == 0
    again = _report(henon)
    assert again["resumed"] == ["spectrum"] and stage.stat().st_mtime_ns == before
    for name in ("exponents", "stderr", "running", "kaplan_yorke", "num_steps"):
        assert again[name] == stored[name], name
    assert again["timings"]["spectrum"] == stored["timings"]["spectrum"]
    assert "reused from" in " ".join(capsys.readouterr().out.split())


def test_report_rerenders_without_computing(henon, monkeypatch):
    (henon / "report.html").unlink()
    report_json = (henon / "report.json").read_text()
    monkeypatch.setattr("jacscope.jobs.lyapunov._measure", lambda config: pytest.fail("recomputed"))
    assert main(["report", str(henon)]) == 0
    assert kaplan_yorke_text(_report(henon)) in (henon / "report.html").read_text()
    assert (henon / "report.json").read_text() == report_json


def test_a_folder_of_another_configuration_is_refused(henon, capsys):
    before = (henon / "report.json").read_bytes()
    other = ["--system", "henon", "--henon-a", "1.3", *SHORT]
    assert _run(henon, *other) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "config.henon.a" in err and "--force" in err
    assert (henon / "report.json").read_bytes() == before


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--system", "lorentz"], "did you mean lorenz?"),
        (["--k", "3"], "k=3 exceeds n = 2"),
        (["--k", "0"], "k must be an integer >= 1"),
        (["--num-batches", "1"], "num_batches must be an integer >= 2"),
        (["--num-steps", "3"], "num_steps must be an integer >= 10"),
        (["--henon-b", "nan"], "argument --henon-b"),
        (["--lorenz-rho", "30"], "--lorenz-rho apply to --system lorenz, not henon"),
        (["--duration", "5"], "--duration apply to the ODEs (lorenz), not to henon"),
        (["--system", "lorenz", "--num-steps", "5"], "apply to the maps"),
        (["--system", "lorenz", "--duration", "1", "--interval", "0.5"], "cannot fill 10"),
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


def test_the_rate_network_and_an_unresolved_dimension(tmp_path):
    out = tmp_path / "run"
    network = ["--rate-network-size", "128", "--rate-network-gain", "4", "--k", "2"]
    args = ["--system", "rate-network", *network, "--num-steps", "400", "--transient", "200"]
    assert _run(out, *args, "--num-batches", "4") == 0
    report = _report(out)
    assert _finite(report) and len(report["exponents"]) == 2
    system = report["system"]
    assert system["state_size"] == 128 and system["unit"] == "unit time"
    assert system["time_per_step"] == 0.1 and report["measured"] == pytest.approx(40.0)
    # chaotic with lambda_1 + lambda_2 > 0: two exponents bound the dimension from below
    assert sum(report["exponents"]) > 0.1 and not report["kaplan_yorke_resolved"]
    assert report["kaplan_yorke"] == 2.0
    text = "unresolved: at least 2; more exponents (larger --k) would resolve it"
    assert kaplan_yorke_text(report) == text
    html = (out / "report.html").read_text()
    assert f"Kaplan-Yorke</td><td>{text}<" in html and "Kaplan-Yorke dimension: unres" in html


def test_lorenz_exponents_sum_to_the_divergence(tmp_path):
    out = tmp_path / "run"
    ode = ["--duration", "4", "--interval", "0.5", "--transient-time", "1", "--num-batches", "4"]
    assert _run(out, "--system", "lorenz", "--lorenz-rho", "30", *ode) == 0
    report = _report(out)
    assert _finite(report) and report["config"]["lorenz"]["rho"] == 30.0
    assert report["system"]["kind"] == "ode" and report["num_steps"] == 8
    # the divergence of the Lorenz field is -(sigma + 1 + beta) everywhere
    assert abs(sum(report["exponents"]) + (10 + 1 + 8 / 3)) < 1e-5
    assert report["exponents"][0] > 0 > report["exponents"][2]


def test_a_trained_gru(tmp_path):
    out = tmp_path / "run"
    gru = ["--system", "gru", "--gru-hidden", "4", "--gru-train-steps", "30"]
    assert _run(out, *gru, "--num-steps", "200", "--transient", "20", "--num-batches", "4") == 0
    report = _report(out)
    assert _finite(report) and len(report["exponents"]) == 4
    system = report["system"]
    assert system["state_size"] == 4 and system["loss_last"] < system["loss_first"]
    assert "Adam steps" in (out / "report.html").read_text()


def test_the_logistic_map_from_python():
    result = run_lyapunov(LyapunovConfig(system="logistic", num_steps=4000, num_batches=4))
    assert abs(result.exponents[0] - math.log(2)) < max(5 * result.stderr[0], 0.01)
    assert result.kaplan_yorke_resolved and result.kaplan_yorke == 1.0


def test_an_ode_without_diffrax_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("jacscope._extras._absent", lambda module: module == "diffrax")
    out = tmp_path / "run"
    assert _run(out, "--system", "lorenz") == 2
    assert "pip install 'jacscope[ode]'" in " ".join(capsys.readouterr().err.split())
    assert not out.exists()


def test_every_system_has_its_settings():
    (names,) = [typing.get_args(typing.get_type_hints(LyapunovConfig)["system"])]
    assert names == tuple(SYSTEMS)
    for name, cls in SYSTEMS.items():
        assert type(LyapunovConfig(system=name).settings) is cls and cls.kind in ("map", "ode")
