"""The matrix-free analysis against the exact training Jacobian of a small run, in float64."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import jacscope
from jacscope import linalg
from jacscope.data import load_digits, make_batches
from jacscope.jobs import JobFolder
from jacscope.linalg import SLQ, Lanczos, Randomized
from jacscope.models import classification_loss, init_mlp, mlp_apply
from jacscope.training import (
    TrainingRun,
    matrix_free_analysis,
    region_counts,
    training_jacobian_operator,
)
from spectra import dense_operator

K = 6
OPTIONS = dict(k=K, num_bins=12)


@pytest.fixture(scope="module")
def run():
    """A 64 -> 2 -> 10 MLP (P = 160) on 256 digits, 16 steps of SGD with momentum.

    Pixels that are zero in every training image leave their weights untouched, so
    the spectrum has an exact bulk at s = 1 beside chaotic and stable values."""
    data = load_digits()
    batches = make_batches(data.x_train[:256].astype(np.float64), data.y_train[:256], 32, 2)
    params0 = init_mlp(jax.random.key(0), (64, 2, 10), dtype=jnp.float64)
    return TrainingRun(params0, classification_loss(mlp_apply), optax.sgd(0.3, 0.9), batches)


@pytest.fixture(scope="module")
def exact(run):
    x0, unravel = ravel_pytree(run.params0)
    J = np.asarray(jax.jit(jax.jacfwd(lambda x: ravel_pytree(run.train(unravel(x))[0])[0]))(x0))
    return (
        J,
        np.linalg.svd(J, compute_uv=False),
        np.linalg.svd(J - np.eye(len(J)), compute_uv=False),
    )


def _slq(run):
    return SLQ(num_probes=6, depth=ravel_pytree(run.params0)[0].size, probes_per_batch=3)


def _folder(out):
    return JobFolder(out, "test", {"name": "small"})


@pytest.fixture(scope="module")
def analysed(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("matrix_free")
    tasks = []
    result = matrix_free_analysis(
        run,
        key=jax.random.key(1),
        density=_slq(run),
        stages=_folder(out),
        progress=lambda update: tasks.append(update.task),
        **OPTIONS,
    )
    return result, out, tasks


def test_top_singular_values_match_exact(exact, analysed):
    J, S, S_shift = exact
    result, out, stages = analysed
    assert stages[0] == "top_j" and stages[-1] == "density"
    for name, reference in (("top_j", S), ("top_j_minus_i", S_shift)):
        top = result._asdict()[name]
        np.testing.assert_allclose(top["values"], reference[:K], rtol=1e-6)
        assert max(top["relative_residuals"]) < 1e-6
        assert top["sweeps"] == top["num_matvecs"] - K + 1  # the K residuals: one sweep
    with np.load(out / "stages" / "top_j_minus_i.npz") as saved:
        A = J - np.eye(len(J))
        np.testing.assert_allclose(A @ saved["Vt"].T, saved["U"] * saved["S"], atol=1e-8)
    json.dumps(result._asdict(), allow_nan=False)  # plain JSON values


def test_density_matches_exact_histogram(exact, analysed):
    _, S, _ = exact
    density = analysed[0].density
    counts, ranges = np.asarray(density["counts"]), np.asarray(density["counts_range"])
    reference = np.histogram(S, np.asarray(density["edges"]))[0]
    assert counts.sum() == pytest.approx(S.size, rel=1e-9)
    # each bin's interval holds the exact count (probe and quadrature error: a bin whose
    # edge falls within rounding of a singular value can differ by one with stderr 0)
    assert np.all((ranges[:, 0] <= reference) & (reference <= ranges[:, 1])), (ranges, reference)
    assert np.all((ranges[:, 0] <= counts) & (counts <= ranges[:, 1]))
    # the smoothed density integrates to P over its grid
    assert np.trapezoid(density["density"], density["grid"]) == pytest.approx(S.size, rel=0.02)


def test_region_counts_and_bulk_fraction_within_uncertainty(exact, analysed):
    _, S, _ = exact
    regions = analysed[0].regions
    reference = region_counts(S, regions["taus"])
    assert reference.bulk[0] > 10  # the run has an exact bulk
    # one result type: the estimate has the exact count's fields, marked as estimated
    assert regions.keys() == reference._asdict().keys()
    assert reference.exact and not regions["exact"] and regions["smallest"] is None
    for i in range(len(regions["taus"])):
        for name in ("chaotic", "bulk", "stable"):
            low, high = regions[f"{name}_range"][i]
            assert low <= getattr(reference, name)[i] <= high
        fraction = reference.bulk[i] / S.size
        low, high = regions["bulk_fraction_range"][i]
        assert low <= fraction <= high
        assert regions["bulk_resolved"][i] == (high - low <= 2 * regions["resolution"])
        assert regions["chebyshev_products"][i] > 0


def test_quadrature_bracket_holds_at_low_depth():
    """With far fewer Lanczos steps than distinct values the point estimate is biased,
    but the Chebyshev-Markov-Stieltjes bracket still holds the exact count."""
    rng = np.random.default_rng(0)
    values = np.concatenate([np.ones(60), rng.uniform(0, 3, 140)])
    q1, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    q2, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    op = dense_operator(q1 @ np.diag(values) @ q2.T)
    density = linalg.spectral_density(op, key=jax.random.key(2), num_probes=8, depth=12)
    for lo, hi in ((0.999, 1.001), (1.5, 10.0), (0.0, 0.7)):
        count = linalg.count_in(density, lo, hi)
        exact = np.sum((values >= lo) & (values <= hi))
        assert count.low <= exact <= count.high
        assert count.high - count.low < 200


def test_resumes_without_recomputing(run, analysed):
    result, out, _ = analysed
    num = ravel_pytree(run.params0)[0].size
    analyse = lambda **changes: matrix_free_analysis(
        run,
        **{"key": jax.random.key(1), "density": _slq(run), "stages": _folder(out), **changes},
        **OPTIONS,
    )
    again = analyse()
    assert again.sweeps["total"] == 0
    batches = ["density-batch-00000", "density-batch-00001"]
    assert again.resumed == ["top_j", "top_j_minus_i", *batches]
    assert again.regions == result.regions and again.top_j["values"] == result.top_j["values"]
    # a run killed during the second probe batch: that batch alone is recomputed
    (out / "stages" / "density-batch-00001.json").unlink()
    partial = analyse()
    assert partial.sweeps["total"] == 2 * num * 3
    assert partial.resumed == ["top_j", "top_j_minus_i", batches[0]]
    np.testing.assert_allclose(partial.regions["bulk"], result.regions["bulk"], rtol=1e-10)
    # another key is another computation: nothing is reused
    other = analyse(key=jax.random.key(2), density=SLQ(num_probes=2, depth=4))
    assert other.resumed == [] and other.sweeps["total"] > 0
    shutil.rmtree(out / "stages")


@pytest.mark.slow
def test_randomized_top_k_within_residuals(run, exact):
    _, _, S_shift = exact
    op = training_jacobian_operator(run)
    shifted = op - jacscope.identity(op.shape[0], op.dtype)
    _, S, _, info = linalg.svd_topk(shifted, K, key=jax.random.key(3), method="randomized")
    assert np.all(np.abs(np.asarray(S) - S_shift[:K]) <= np.asarray(info.residuals) + 1e-10)


@pytest.mark.slow
def test_tol_stops_lanczos_once_residuals_are_small(run, exact):
    _, S_exact, S_shift = exact
    result = matrix_free_analysis(
        run,
        k=K,
        key=jax.random.key(4),
        svd=Lanczos(depth=100, residuals="recurrence", tol=1e-6),
        density=SLQ(num_probes=2, depth=4),
    )
    for name, exact_values in (("top_j", S_exact), ("top_j_minus_i", S_shift)):
        top = getattr(result, name)
        assert top["num_matvecs"] < 2 * 100 and top["sweeps"] == top["num_matvecs"]
        assert max(top["relative_residuals"]) <= 1e-6
        np.testing.assert_allclose(top["values"], exact_values[:K], rtol=1e-6)


def test_bad_options(run):
    with pytest.raises(ValueError, match="num_probes"):
        SLQ(num_probes=1)
    with pytest.raises(ValueError, match="svd must be"):
        matrix_free_analysis(run, key=jax.random.key(0), svd="power")
    with pytest.raises(ValueError, match="density must be"):
        matrix_free_analysis(run, key=jax.random.key(0), density=Randomized())
    with pytest.raises(ValueError, match="residuals"):
        Lanczos(residuals="power")
    with pytest.raises(ValueError, match="tol must be a finite number > 0"):
        Lanczos(tol=float("nan"))
    with pytest.raises(ValueError, match="bandwidth"):
        matrix_free_analysis(run, key=jax.random.key(0), bandwidth=0.0)
