"""`jacscope spectrum` end to end, in process, on a tiny configuration, against dense algebra."""

import argparse
import dataclasses
import json
import runpy
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jacscope
from jacscope.cli import main
from jacscope.cli._main import COMMANDS, build_parser
from jacscope.jobs import SpectrumConfig, SpectrumResult, prepare_jacobian, run_spectrum
from jacscope.jobs.spectrum import STAGES
from jacscope.models import mlp_apply

TINY = ["--hidden", "8", "--num-examples", "4", "--epochs", "1", "--k", "4", "--dtype", "float64"]
TINY += ["--num-matvecs", "20"]


def _run(tmp_path, *extra):
    out = tmp_path / "spectrum"
    rc = main(["spectrum", "--dataset", "digits", *TINY, "--out", str(out), *extra])
    return rc, out


@pytest.fixture(scope="module")
def params_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("params")
    rc, out = _run(tmp, "--wrt", "params")
    assert rc == 0
    return out


def _check_against_dense(result, dense, converged):
    """Singular values, tr(J J^T) and ||J||_F^2 of the stored result against numpy."""
    exact = np.linalg.svd(dense, compute_uv=False)
    s = np.asarray(result["singular_values"])
    residuals = np.asarray(result["residuals"])
    k = len(s)
    # Within the residual bound of svd_topk (plus rounding of the dense SVD).
    assert np.all(np.abs(s - exact[:k]) <= residuals / np.sqrt(2) + 1e-10 * exact[0])
    assert np.all(residuals < (1e-8 if converged else 1e-2) * exact[0])
    frob_sq = float(np.sum(dense**2))
    for name in ("gram_trace", "frobenius_sq"):
        estimate = result[name]
        assert estimate["stderr"] > 0
        assert abs(estimate["value"] - frob_sq) <= 5 * estimate["stderr"], name
    frob = result["frobenius"]
    np.testing.assert_allclose(frob["value"] ** 2, result["frobenius_sq"]["value"], rtol=1e-12)
    np.testing.assert_allclose(
        frob["stderr"], result["frobenius_sq"]["stderr"] / (2 * frob["value"]), rtol=1e-12
    )
    np.testing.assert_allclose(
        result["top_k_energy"], np.sum(s**2) / result["frobenius_sq"]["value"], rtol=1e-12
    )


def test_spectrum_params_matches_dense_jacobian(params_run, capsys):
    files = ["config.toml", "job.json", "report.json", "spectrum.png", "stages"]
    assert sorted(p.name for p in params_run.iterdir()) == files
    assert (params_run / "spectrum.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((params_run / "report.json").read_text())
    assert set(result) == set(SpectrumResult._fields)
    config = SpectrumConfig(**result["config"])
    assert jacscope.load(params_run).config == config
    assert (config.wrt, config.k, config.hidden, config.num_examples) == ("params", 4, (8,), 4)
    num_params = 64 * 8 + 8 + 8 * 10 + 10
    assert result["shape"] == [4 * 10, num_params] and result["dtype"] == "float64"
    training = result["training"]
    assert training["num_steps"] == 1600 // 64 and training["num_params"] == num_params
    assert training["loss_last"] < training["loss_first"]
    assert 0 <= training["test_accuracy"] <= 1
    assert set(result["timings"]) == {*STAGES, "total"}
    assert all(t >= 0 for t in result["timings"].values())

    # Rebuild the same Jacobian and compare with jax.jacfwd at the trained parameters.
    prepared = prepare_jacobian(config)
    assert prepared.training == training
    dense = np.asarray(prepared.op.materialize())
    flat, unravel = ravel_pytree(prepared.params)
    reference = jax.jacfwd(lambda p: mlp_apply(unravel(p), prepared.x).ravel())(flat)
    np.testing.assert_allclose(dense, reference, rtol=1e-12, atol=1e-12)
    _check_against_dense(result, dense, converged=True)  # Lanczos to full depth


@pytest.mark.slow
def test_spectrum_inputs_pools_per_example_spectra(tmp_path, capsys):
    options = ["--method", "randomized", "--trace-method", "hutchpp"]
    rc, out = _run(tmp_path, "--wrt", "inputs", *options)
    assert rc == 0
    result = json.loads((out / "report.json").read_text())
    assert result["shape"] == [4 * 10, 4 * 64]
    prepared = prepare_jacobian(SpectrumConfig(**result["config"]))
    dense = np.asarray(prepared.op.materialize())
    # J is block diagonal: one 10 x 64 input Jacobian per example.
    blocks = jax.vmap(jax.jacfwd(lambda x: mlp_apply(prepared.params, x)))(prepared.x)
    np.testing.assert_allclose(dense, jax.scipy.linalg.block_diag(*blocks), rtol=1e-12, atol=1e-12)
    pooled = np.sort(np.concatenate([np.linalg.svd(b, compute_uv=False) for b in blocks]))[::-1]
    exact = np.linalg.svd(dense, compute_uv=False)
    np.testing.assert_allclose(exact[:40], pooled, rtol=1e-12, atol=1e-12 * exact[0])
    _check_against_dense(result, dense, converged=False)
    printed = capsys.readouterr().out
    assert "Top 4 singular values" in printed and "tr(J J^T)" in printed


@pytest.mark.slow
def test_rerun_reuses_refuses_or_forces(params_run, capsys):
    json_path = params_run / "report.json"
    stored = json.loads(json_path.read_text())
    out = str(params_run)
    rc = main(["spectrum", "--dataset", "digits", *TINY, "--wrt", "params", "--out", out])
    assert rc == 0
    again = json.loads(json_path.read_text())
    assert again["resumed"] == ["svd", "trace", "frobenius"]
    for name in ("singular_values", "residuals", "gram_trace", "frobenius_sq"):
        assert again[name] == stored[name], name
    assert "reused from" in " ".join(capsys.readouterr().out.split())  # rich wraps lines
    before = json_path.read_bytes()
    changed = ["spectrum", "--dataset", "digits", *TINY[:-1], "30", "--wrt", "params"]
    rc = main([*changed, "--out", out])  # another --num-matvecs
    assert rc == 2 and json_path.read_bytes() == before
    err = " ".join(capsys.readouterr().err.split())
    assert "config.num_matvecs" in err and "--force" in err
    assert main([*changed, "--out", out, "--force"]) == 0
    forced = json.loads(json_path.read_text())
    assert forced["config"]["num_matvecs"] == 30 and forced["resumed"] == []


def test_k_too_large_names_k_and_shape(params_run, tmp_path, capsys):
    rc = main(["spectrum", *TINY, "--k", "41", "--out", str(tmp_path / "x")])
    assert rc == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "k=41" in err and "(40, 610)" in err
    assert not (tmp_path / "x").exists()
    # Checked before the output folder: even --force keeps a finished result.
    before = (params_run / "report.json").read_bytes()
    rc = main(["spectrum", *TINY, "--k", "41", "--out", str(params_run), "--force"])
    assert rc == 2 and "k=41" in capsys.readouterr().err
    assert (params_run / "report.json").read_bytes() == before


def test_bad_options_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["spectrum", "--dataset", "cifar", "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "cifar" in capsys.readouterr().err
    with pytest.raises(ValueError, match="cifar"):
        run_spectrum(SpectrumConfig(dataset="cifar"))
    with pytest.raises(ValueError, match="num_examples=500"):
        run_spectrum(SpectrumConfig(num_examples=500, k=1))
    with pytest.raises(ValueError, match="hidden"):
        run_spectrum(SpectrumConfig(hidden=()))
    with pytest.raises(ValueError, match="trace_method"):
        run_spectrum(SpectrumConfig(trace_method="exact"))


def test_help_lists_every_command(capsys, monkeypatch):
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(subparsers.choices) == len(COMMANDS) and "spectrum" in subparsers.choices
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(name in text for name in subparsers.choices)
    # `python -m jacscope` is the same command line.
    monkeypatch.setattr(sys, "argv", ["jacscope", "spectrum", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("jacscope", run_name="__main__")
    assert exit_info.value.code == 0
    assert "--wrt" in capsys.readouterr().out


def test_result_is_plain_json():
    result = SpectrumResult(**json.loads(json.dumps(_fake_result()._asdict())))
    assert result == _fake_result()


def _fake_result():
    config = json.loads(json.dumps(dataclasses.asdict(SpectrumConfig(k=2))))
    estimate = {"value": 2.0, "stderr": 0.1, "num_matvecs": 10}
    return SpectrumResult(
        config=config,
        shape=[3, 4],
        singular_values=[1.0, 0.5],
        residuals=[0.0, 1e-3],
        svd_matvecs=6,
        gram_trace=estimate,
        frobenius_sq=estimate,
        frobenius={"value": 2.0**0.5, "stderr": 0.035, "num_matvecs": 10},
        top_k_energy=0.625,
        training={"num_steps": 1},
        timings=dict.fromkeys((*STAGES, "total"), 0.0),
        dtype=jnp.dtype(float).name,
        resumed=[],
    )
