"""trace, diagonal and frobenius_sq: unbiased, with honest standard errors; Hutch++ and
XTrace beat Hutchinson on decaying spectra."""

import functools

import jax
import numpy as np
import pytest

from jacscope import linalg
from spectra import dense_operator, with_eigenvalues, with_singular_values

N = 60
NUM_KEYS = 200
NUM_MATVECS = 24
KEYS = jax.random.split(jax.random.key(7), NUM_KEYS)


@functools.partial(jax.jit, static_argnames=("estimator", "options"))
def _over_keys(op, estimator, options=()):
    """`estimator(op, key=k, **options)` for every key in KEYS, in batches of 20.

    One compilation per (estimator, options, operator shape). Large `vmap` batches of
    small LAPACK calls have been seen to wedge XLA's CPU thread pool; batches of 20
    do not.
    """
    fn = getattr(linalg, estimator)
    return jax.lax.map(lambda k: fn(op, key=k, **dict(options)), KEYS, batch_size=20)


def _trace_over_keys(op, method):
    return _over_keys(op, "trace", (("method", method), ("num_matvecs", NUM_MATVECS)))


def _assert_unbiased(values, truth):
    """Mean over keys within 4 standard errors of the truth (elementwise)."""
    values = np.asarray(values)
    mean = values.mean(axis=0)
    sem = values.std(axis=0, ddof=1) / np.sqrt(values.shape[0])
    assert np.all(np.abs(mean - truth) <= 4 * sem + 1e-12 * np.abs(truth)), (mean, truth, sem)


def _decaying_psd():
    """Symmetric PSD with eigenvalues i^-2: most of the trace in a few directions."""
    matrix = with_eigenvalues(np.arange(1.0, N + 1) ** -2.0, seed=3)
    return matrix, np.trace(matrix)


def _generic():
    """Symmetric indefinite, flat spectrum, large off-diagonal entries."""
    matrix = with_eigenvalues(np.linspace(-1.0, 2.0, N), seed=4) + 0.3
    return matrix, np.trace(matrix)


@pytest.mark.parametrize("method", ["hutchinson", "hutchpp", "xtrace"])
def test_trace_is_unbiased_with_honest_stderr(method):
    matrix, truth = _generic()
    op = dense_operator(matrix)
    est = _trace_over_keys(op, method)
    _assert_unbiased(est.value, truth)
    # The reported stderr matches the spread of the estimates over keys: the
    # root-mean-square stderr is within 30% of the observed standard deviation
    # (for 200 keys the sample std itself is accurate to ~5%).
    observed = np.std(np.asarray(est.value), ddof=1)
    reported = np.sqrt(np.mean(np.asarray(est.stderr) ** 2))
    assert 0.7 < reported / observed < 1.3, (reported, observed)
    assert int(est.num_matvecs[0]) == NUM_MATVECS


def test_hutchpp_and_xtrace_beat_hutchinson_on_decaying_spectra():
    matrix, truth = _decaying_psd()
    op = dense_operator(matrix)
    mse = {}
    for method in ("hutchinson", "hutchpp", "xtrace"):
        est = _trace_over_keys(op, method)
        mse[method] = float(np.mean((np.asarray(est.value) - truth) ** 2))
    assert mse["hutchpp"] < mse["hutchinson"] / 5, mse
    assert mse["xtrace"] < mse["hutchinson"] / 5, mse


@pytest.mark.parametrize("method", ["hutchinson", "hutchpp", "xtrace"])
@pytest.mark.parametrize("budget", [N, 2 * N])
def test_a_budget_that_covers_the_dimension_gives_the_exact_trace(key, method, budget):
    matrix, truth = _generic()
    est = linalg.trace(dense_operator(matrix), key=key, method=method, num_matvecs=budget)
    np.testing.assert_allclose(float(est.value), truth, rtol=1e-12)
    assert float(est.stderr) == 0 and est.num_matvecs == N


def test_diagonal_and_frobenius_are_unbiased():
    matrix, _ = _generic()
    op = dense_operator(matrix)
    diag = _over_keys(op, "diagonal", (("num_matvecs", 10),))
    # 60 entries: a Bonferroni-sized 4.5 stderr bound on each.
    values = np.asarray(diag.value)
    sem = values.std(axis=0, ddof=1) / np.sqrt(NUM_KEYS)
    assert np.all(np.abs(values.mean(axis=0) - np.diag(matrix)) <= 4.5 * sem)
    assert diag.value.shape == (NUM_KEYS, N)
    rectangular = with_singular_values(np.linspace(3.0, 0.1, 40), (50, 40), seed=5)
    frob = _over_keys(dense_operator(rectangular), "frobenius_sq", (("num_matvecs", 10),))
    _assert_unbiased(frob.value, np.sum(rectangular**2))


def test_estimators_are_reproducible_and_refuse_bad_input(key):
    matrix, _ = _generic()
    op = dense_operator(matrix)
    first = linalg.trace(op, key=key, method="hutchpp", num_matvecs=12)
    second = jax.jit(lambda k: linalg.trace(op, key=k, method="hutchpp", num_matvecs=12))(key)
    np.testing.assert_allclose(float(first.value), float(second.value), rtol=1e-13)
    rectangular = dense_operator(np.ones((5, 4)))
    with pytest.raises(ValueError, match=r"expects a square operator .* received shape \(5, 4\)"):
        linalg.trace(rectangular, key=key)
    with pytest.raises(ValueError, match=r"received shape \(5, 4\)"):
        linalg.diagonal(rectangular, key=key)
    with pytest.raises(ValueError, match="num_matvecs must be an integer >= 4"):
        linalg.trace(op, key=key, method="xtrace", num_matvecs=3)
    with pytest.raises(ValueError, match="method must be one of"):
        linalg.trace(op, key=key, method="exact")
