"""Analyses of the training Jacobian on a tiny run, against direct dense computation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg
from jax.flatten_util import ravel_pytree

from jacscope.models import classification_loss, cross_entropy, init_mlp, mlp_apply
from jacscope.training import (
    SUBSPACES,
    TrainingRun,
    alignment,
    bulk_order,
    data_dependence,
    function_space_overlap,
    output_sensitivity,
    perturbation_response,
    probe_inputs,
    region_counts,
    region_masks,
    region_summary,
    restricted_training,
    seed_overlap,
    subspace_indices,
    subspace_overlap,
    train_in_subspace,
)


class Tiny:
    """A 4-8-3 MLP trained for 6 steps of SGD with momentum, in float64, and its dense J."""

    def __init__(self):
        key_x, key_y, key_p, key_t = jax.random.split(jax.random.key(3), 4)
        self.x = jax.random.uniform(key_x, (24, 4), jnp.float64)
        self.y = jax.random.randint(key_y, (24,), 0, 3)
        self.x_test = jax.random.uniform(key_t, (5, 4), jnp.float64)
        self.y_test = jnp.arange(5) % 3
        batches = {
            "x": jnp.tile(self.x.reshape(3, 8, 4), (2, 1, 1)),
            "y": jnp.tile(self.y.reshape(3, 8), (2, 1)),
        }
        self.params0 = init_mlp(key_p, (4, 8, 3), dtype=jnp.float64)
        self.loss_fn = classification_loss(mlp_apply)
        self.optimizer = optax.sgd(optax.cosine_decay_schedule(0.8, 6), momentum=0.9)
        self.batches = batches
        self.run = TrainingRun(self.params0, self.loss_fn, self.optimizer, batches)
        theta0, self.unravel = ravel_pytree(self.params0)
        self.theta0 = theta0

        self.J = np.asarray(jax.jit(jax.jacfwd(self.final_flat))(theta0))
        self.train_flat = jax.jit(self.final_flat)
        self.theta_T = self.unravel(self.train_flat(theta0))
        self.U, self.S, self.Vt = np.linalg.svd(self.J)

    def final_flat(self, theta):
        """Flat theta_T from flat theta_0."""
        return ravel_pytree(self.run.train(self.unravel(theta))[0])[0]

    def test_loss(self, params):
        return cross_entropy(mlp_apply(params, self.x_test), self.y_test)


@pytest.fixture(scope="module")
def tiny():
    return Tiny()


def test_tiny_run_has_all_three_regions(tiny):
    counts = region_counts(tiny.S, (0.1,))
    assert counts.chaotic[0] > 0 and counts.bulk[0] > 0 and counts.stable[0] > 0


def test_region_counts_on_known_values():
    s = np.array([50.0, 1.5, 1.05, 1.004, 1.0005, 1.0, 0.9995, 0.996, 0.97, 0.5, 1e-3])
    counts = region_counts(s, (1e-3, 1e-2, 1e-1))
    # tau = 1e-3: bulk {1.0005, 1.0, 0.9995}; tau = 1e-2 adds 1.004, 0.996;
    # tau = 1e-1 adds 1.05 and 0.97.
    assert counts.bulk == [3, 5, 7]
    assert counts.chaotic == [4, 3, 2]
    assert counts.stable == [4, 3, 2]
    assert counts.num_directions == 11 and counts.largest == 50.0 and counts.smallest == 1e-3


def test_region_counts_match_numpy_on_random_spectrum():
    rng = np.random.default_rng(0)
    s = np.exp(rng.normal(0, 0.05, 500))
    taus = (1e-3, 1e-2, 1e-1)
    counts = region_counts(s, taus)
    for i, tau in enumerate(taus):
        assert counts.chaotic[i] == np.count_nonzero(s - 1 > tau)
        assert counts.stable[i] == np.count_nonzero(1 - s > tau)
        assert counts.bulk[i] == np.count_nonzero(np.abs(s - 1) <= tau)
        assert counts.chaotic[i] + counts.bulk[i] + counts.stable[i] == s.size
    masks = region_masks(s, 1e-2)
    assert not np.any(masks["bulk"] & masks["chaotic"])
    order = bulk_order(s)
    assert np.all(np.diff(np.abs(s[order] - 1)) >= 0)


def test_region_summary_against_direct_statistics():
    rng = np.random.default_rng(1)
    s = np.exp(rng.normal(0, 0.05, 200))
    values = rng.normal(size=200)
    rows = region_summary(values, s, (1e-2,))
    for row in rows:
        picked = values[region_masks(s, 1e-2)[row["region"]]]
        assert row["count"] == picked.size
        assert row["mean"] == pytest.approx(picked.mean())
        assert row["median"] == pytest.approx(np.median(picked))
    with pytest.raises(ValueError, match="shape"):
        region_summary(values[:3], s)


def test_alignment_cosines(tiny):
    result = alignment(tiny.U, tiny.S, tiny.Vt)
    direct = [float(np.dot(tiny.U[:, i], tiny.Vt[i])) for i in range(tiny.S.size)]
    np.testing.assert_allclose(result.cosines, direct, rtol=1e-12, atol=1e-12)
    # A symmetric positive definite matrix has u_i = v_i: every cosine is one.
    rng = np.random.default_rng(2)
    A = rng.normal(size=(30, 30))
    U, S, Vt = np.linalg.svd(A @ A.T + np.eye(30))
    np.testing.assert_allclose(alignment(U, S, Vt).cosines, 1.0, atol=1e-10)
    with pytest.raises(ValueError, match="Vt"):
        alignment(U, S, Vt[:3])


def test_perturbation_response_is_linear_for_small_eps(tiny):
    top = 0
    bulk = int(bulk_order(tiny.S)[0])
    eps = (1e-6, 1e-5, 1e3)
    result = perturbation_response(
        tiny.run, tiny.U, tiny.S, tiny.Vt, [bulk, top], eval_fn=tiny.test_loss, eps=eps
    )
    assert result.projection.shape == (2, 3)
    for row, i in enumerate([bulk, top]):
        predicted = tiny.S[i] * np.asarray(eps[:2])
        # First order: the projection is s_i eps up to O(eps^2), the rest O(eps^2).
        np.testing.assert_allclose(result.projection[row, :2], predicted, rtol=1e-3)
        assert np.all(result.remainder[row, :2] < 1e-3 * np.asarray(eps[:2]))
        assert result.linear_range[row] is not None and result.linear_range[row] >= 1e-5
    expected_loss = tiny.test_loss(tiny.theta_T)
    assert result.base_test_loss == pytest.approx(float(expected_loss), rel=1e-12)
    # The test loss of a perturbed run is the loss of that run's theta_T.
    direct = tiny.unravel(tiny.train_flat(tiny.theta0 + 1e-5 * tiny.Vt[top]))
    assert result.test_loss[1, 1] == pytest.approx(float(tiny.test_loss(direct)), rel=1e-10)
    # Far out (eps = 1e3) the response is no longer s_i eps.
    assert not np.isclose(result.projection[1, 2], tiny.S[top] * 1e3, rtol=0.1)


def test_train_in_subspace_stays_in_span(tiny):
    k = 10
    basis = tiny.Vt[subspace_indices(tiny.S, "bulk", k)]
    theta_T, losses = train_in_subspace(
        tiny.loss_fn, tiny.optimizer, tiny.params0, tiny.batches, jnp.asarray(basis)
    )
    delta = np.asarray(ravel_pytree(theta_T)[0] - tiny.theta0)
    outside = delta - basis.T @ (basis @ delta)
    assert np.linalg.norm(delta) > 1e-6
    assert np.linalg.norm(outside) < 1e-12 * np.linalg.norm(delta)
    assert losses.shape == (6,)


def test_subspace_indices_semantics(tiny):
    s = tiny.S
    k = 7
    assert set(subspace_indices(s, "top", k)) == set(np.argsort(s)[-k:])
    assert set(subspace_indices(s, "stable", k)) == set(np.argsort(s)[:k])
    distance = np.abs(s - 1)
    assert distance[subspace_indices(s, "bulk", k)].max() <= np.sort(distance)[k - 1]
    assert distance[subspace_indices(s, "complement", k)].min() >= np.sort(distance)[-k]
    with pytest.raises(ValueError, match="subspace"):
        subspace_indices(s, "middle", k)
    with pytest.raises(ValueError, match="k must"):
        subspace_indices(s, "top", s.size + 1)


def test_restricted_training_full_subspace_is_full_training(tiny):
    num = tiny.S.size
    result = restricted_training(
        tiny.loss_fn,
        tiny.optimizer,
        tiny.params0,
        tiny.batches,
        tiny.S,
        tiny.Vt,
        [5, num],
        eval_fn=tiny.test_loss,
    )
    assert result.test_loss.shape == (len(SUBSPACES), 2)
    full = float(tiny.test_loss(tiny.theta_T))
    assert result.full_test_loss == pytest.approx(full, rel=1e-12)
    # Any k = P subspace is the whole space: SGD with momentum is rotation invariant, so
    # training in the rotated coordinates reaches the same theta_T.
    np.testing.assert_allclose(result.test_loss[:, 1], full, rtol=1e-9)
    # k = 5: against a direct restricted run.
    column = SUBSPACES.index("stable")
    basis = tiny.Vt[subspace_indices(tiny.S, "stable", 5)]
    theta_T, _ = train_in_subspace(
        tiny.loss_fn, tiny.optimizer, tiny.params0, tiny.batches, jnp.asarray(basis)
    )
    assert result.test_loss[column, 0] == pytest.approx(float(tiny.test_loss(theta_T)), rel=1e-10)


def _random_rows(rng, k, n):
    return np.linalg.qr(rng.normal(size=(n, k)))[0].T


def test_subspace_overlap_identical_and_random():
    rng = np.random.default_rng(4)
    n, k = 60, 6
    A = _random_rows(rng, k, n)
    same = subspace_overlap(A, A)
    np.testing.assert_allclose(same.cosines, 1.0, atol=1e-12)
    assert same.mean_sq_cos == pytest.approx(1.0)
    draws = np.array([subspace_overlap(A, _random_rows(rng, k, n)).mean_sq_cos for _ in range(400)])
    stderr = draws.std(ddof=1) / np.sqrt(draws.size)
    assert subspace_overlap(A, _random_rows(rng, k, n)).expected == k / n
    assert abs(draws.mean() - k / n) < 4 * stderr
    # Different dimensions: E = max(k1, k2) / n.
    draws = [subspace_overlap(A, _random_rows(rng, 20, n)).mean_sq_cos for _ in range(400)]
    assert abs(np.mean(draws) - 20 / n) < 4 * np.std(draws, ddof=1) / np.sqrt(400)


def test_seed_overlap_identical_is_one_and_matches_direct(tiny):
    same = seed_overlap(tiny.S, tiny.Vt, tiny.S, tiny.Vt)
    np.testing.assert_allclose(same.mean_sq_cos, 1.0, atol=1e-10)
    np.testing.assert_allclose(same.expected, same.ks / tiny.S.size)
    rng = np.random.default_rng(5)
    n = tiny.S.size
    s_b = np.exp(rng.normal(0, 0.05, n))
    Vt_b = _random_rows(rng, n, n)
    other = seed_overlap(tiny.S, tiny.Vt, s_b, Vt_b, taus=(1e-2, 1e-1), principal_tau=1e-1)
    order_a, order_b = bulk_order(tiny.S), bulk_order(s_b)
    for k in (1, 9, 30, n):
        direct = subspace_overlap(tiny.Vt[order_a[:k]], Vt_b[order_b[:k]])
        assert other.mean_sq_cos[k - 1] == pytest.approx(direct.mean_sq_cos, rel=1e-10)
    row = other.bulk[1]
    bulk_a = tiny.Vt[region_masks(tiny.S, 1e-1)["bulk"]]
    bulk_b = Vt_b[region_masks(s_b, 1e-1)["bulk"]]
    direct = subspace_overlap(bulk_a, bulk_b)
    assert row["dims"] == [bulk_a.shape[0], bulk_b.shape[0]]
    assert row["mean_sq_cos"] == pytest.approx(direct.mean_sq_cos, rel=1e-10)
    assert row["expected"] == pytest.approx(direct.expected)
    np.testing.assert_allclose(other.principal_cosines, direct.cosines, atol=1e-12)


def test_seed_overlap_random_matches_expectation():
    rng = np.random.default_rng(6)
    n, k = 40, 8
    s = np.linspace(0.5, 1.5, n)
    Vt = _random_rows(rng, n, n)
    draws = np.array(
        [seed_overlap(s, Vt, s, _random_rows(rng, n, n)).mean_sq_cos[k - 1] for _ in range(300)]
    )
    assert abs(draws.mean() - k / n) < 4 * draws.std(ddof=1) / np.sqrt(draws.size)


def test_output_sensitivity_kl(tiny):
    theta_T = tiny.theta_T
    inputs = probe_inputs(tiny.x, tiny.x_test, jax.random.key(7))
    assert set(inputs) == {"train", "test", "inverted", "noise"}
    np.testing.assert_allclose(inputs["inverted"], 1 - tiny.x_test)
    directions = np.vstack([np.zeros(tiny.S.size), tiny.Vt[:3]])
    result = output_sensitivity(
        mlp_apply, theta_T, directions, inputs, scale=0.5, singular_values=tiny.S[:4], batch_size=2
    )
    assert result.max_kl.shape == (4, 4)
    assert np.all(np.abs(result.max_kl[:, 0]) < 1e-14)
    assert np.all(result.max_kl[:, 1:] > 0)
    theta, unravel = ravel_pytree(theta_T)
    for j, name in enumerate(result.sets):
        x = inputs[name]
        p = jax.nn.softmax(mlp_apply(theta_T, x))
        for d in range(1, 4):
            q = jax.nn.softmax(mlp_apply(unravel(theta + 0.5 * directions[d]), x))
            kl = np.sum(p * (np.log(p) - np.log(q)), axis=1)
            assert result.max_kl[j, d] == pytest.approx(float(kl.max()), rel=1e-8)
    assert {row["set"] for row in result.summary} == set(result.sets)


@pytest.mark.parametrize("num_inputs", [3, 24])  # F wide (9 x 67) and tall (72 x 67)
def test_function_space_overlap_against_dense_nullspace(tiny, num_inputs):
    x = jnp.concatenate([tiny.x_test, tiny.x])[:num_inputs]
    result = function_space_overlap(mlp_apply, tiny.params0, x, tiny.Vt, singular_values=tiny.S)

    def outputs(theta):
        return mlp_apply(tiny.unravel(theta), x).ravel()

    F = np.asarray(jax.jacfwd(outputs)(tiny.theta0))
    null = scipy.linalg.null_space(F)
    assert result.shape == [3 * num_inputs, tiny.S.size]
    assert result.rank == tiny.S.size - null.shape[1] == np.linalg.matrix_rank(F)
    direct = np.sum((tiny.Vt @ null) ** 2, axis=1)
    np.testing.assert_allclose(result.null_fraction, direct, atol=1e-10)
    assert result.expected == pytest.approx(null.shape[1] / tiny.S.size)
    assert len(result.summary) == 9


def test_data_dependence_sorts_and_counts():
    rng = np.random.default_rng(8)
    spectra = {"real": rng.uniform(0.5, 1.5, 50), "noise": rng.uniform(0.9, 1.1, 50)}
    result = data_dependence(spectra, (1e-2,))
    for row, name in enumerate(result.names):
        expected = np.abs(np.sort(spectra[name])[::-1] - 1)
        np.testing.assert_allclose(result.distance[row], expected)
        assert result.counts[row] == region_counts(spectra[name], (1e-2,))._asdict()
    with pytest.raises(ValueError, match="same length"):
        data_dependence({"a": np.ones(3), "b": np.ones(4)})
