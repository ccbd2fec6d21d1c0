"""Datasets and batching: the paper's split, offline MNIST-1D, controls, fixed-order batches."""

import random

import jax
import numpy as np
import pytest
import sklearn.datasets

from jacscope.data import Dataset, load_dataset, load_digits, load_mnist1d, make_batches


def _rows(x):
    return sorted(map(tuple, np.round(np.asarray(x, np.float64), 6)))


def test_digits_paper_split():
    data = load_digits()
    assert isinstance(data, Dataset)
    assert data.x_train.shape == (1600, 64) and data.x_test.shape == (197, 64)
    assert data.y_train.shape == (1600,) and data.y_test.shape == (197,)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    assert data.name == "digits" and data.num_classes == 10
    for x in (data.x_train, data.x_test):
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert data.x_train.max() == 1.0  # scaled by the maximum pixel value 16
    # Train and test together are exactly the 1797 images / 16, each used once.
    bunch = sklearn.datasets.load_digits()
    assert _rows(np.concatenate([data.x_train, data.x_test])) == _rows(bunch.data / 16.0)
    np.testing.assert_array_equal(
        np.bincount(np.concatenate([data.y_train, data.y_test]), minlength=10),
        np.bincount(bunch.target, minlength=10),
    )
    assert set(np.unique(data.y_test)) <= set(range(10))


def test_digits_equal_sklearn_loader_and_split():
    """Read without importing scikit-learn, the digits and their split are exactly
    what `sklearn.datasets.load_digits` and `train_test_split` give."""
    from sklearn.model_selection import train_test_split

    data = load_digits()
    bunch = sklearn.datasets.load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        bunch.data / 16.0, bunch.target, test_size=197, random_state=0
    )
    np.testing.assert_array_equal(data.x_train, x_train.astype(np.float32))
    np.testing.assert_array_equal(data.x_test, x_test.astype(np.float32))
    np.testing.assert_array_equal(data.y_train, y_train)
    np.testing.assert_array_equal(data.y_test, y_test)


def test_digits_labels_match_images():
    data = load_digits()
    bunch = sklearn.datasets.load_digits()
    lookup = {
        tuple(np.round(row / 16.0, 6)): label
        for row, label in zip(bunch.data, bunch.target, strict=True)
    }
    for row, label in zip(data.x_train[:200], data.y_train[:200], strict=True):
        assert lookup[tuple(np.round(row.astype(np.float64), 6))] == label


def test_mnist1d_generated_offline(monkeypatch):
    import mnist1d
    import requests

    def refuse(*args, **kwargs):
        raise AssertionError("load_mnist1d tried to use the network")

    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(requests, "request", refuse)
    seeds = []
    generate = mnist1d.data.make_dataset

    def recording(args, *rest, **kwargs):
        seeds.append(args.seed)
        return generate(args, *rest, **kwargs)

    monkeypatch.setattr(mnist1d.data, "make_dataset", recording)
    np.random.seed(123)  # noqa: NPY002 - checking the global streams are left untouched
    random.seed(123)
    expected_np = np.random.random()  # noqa: NPY002
    expected_py = random.random()
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)

    data = load_mnist1d(seed=7)

    assert seeds == [7]
    assert np.random.random() == expected_np  # noqa: NPY002
    assert random.random() == expected_py
    assert data.x_train.shape == (4000, 40) and data.x_test.shape == (1000, 40)
    assert data.y_train.shape == (4000,) and data.y_test.shape == (1000,)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    assert data.name == "mnist1d" and data.num_classes == 10
    everything = np.concatenate([data.x_train, data.x_test]).astype(np.float64)
    assert abs(everything.mean()) < 1e-5 and abs(everything.std() - 1.0) < 1e-5
    counts = np.bincount(np.concatenate([data.y_train, data.y_test]), minlength=10)
    np.testing.assert_array_equal(counts, np.full(10, 500))  # 5000 / 10 classes
    # The arrays handed out are the caller's own: changing them changes no later load.
    data.x_train[0] = 99.0
    assert load_mnist1d(seed=7).x_train[0, 0] != 99.0 and seeds == [7]


def test_shuffled_labels_are_a_fixed_permutation():
    real = load_dataset("digits")
    shuffled = load_dataset("digits", labels="shuffled", seed=0)
    np.testing.assert_array_equal(shuffled.x_train, real.x_train)
    for a, b in ((shuffled.y_train, real.y_train), (shuffled.y_test, real.y_test)):
        np.testing.assert_array_equal(np.sort(a), np.sort(b))
        assert a.dtype == np.int32
    # A random relabelling agrees with the truth about 1 time in 10.
    assert np.mean(shuffled.y_train == real.y_train) < 0.2
    again = load_dataset("digits", labels="shuffled", seed=0)
    np.testing.assert_array_equal(again.y_train, shuffled.y_train)
    other_seed = load_dataset("digits", labels="shuffled", seed=1)
    assert not np.array_equal(other_seed.y_train, shuffled.y_train)
    assert shuffled.name == "digits+shuffled_labels"


def test_noise_inputs_uniform():
    real = load_dataset("digits")
    noise = load_dataset("digits", inputs="noise", seed=0)
    np.testing.assert_array_equal(noise.y_train, real.y_train)
    assert noise.x_train.shape == real.x_train.shape and noise.x_test.shape == real.x_test.shape
    assert noise.x_train.dtype == np.float32
    x = noise.x_train.astype(np.float64).ravel()
    assert x.min() >= 0.0 and x.max() < 1.0
    # Uniform [0, 1): mean 1/2 and variance 1/12, each within 4 standard errors.
    n = x.size
    assert abs(x.mean() - 0.5) < 4 * np.sqrt(1 / 12 / n)
    assert abs(x.var() - 1 / 12) < 4 * np.sqrt((1 / 80 - 1 / 144) / n)
    both = load_dataset("digits", labels="shuffled", inputs="noise", seed=0)
    np.testing.assert_array_equal(both.x_train, noise.x_train)  # independent streams
    assert both.name == "digits+shuffled_labels+noise_inputs"


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [
        ({"name": "cifar"}, "cifar"),
        ({"name": "digits", "labels": "random"}, "random"),
        ({"name": "digits", "inputs": "zeros"}, "zeros"),
    ],
)
def test_load_dataset_rejects_unknown(kwargs, culprit):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=culprit):
        load_dataset(name, **kwargs)


def test_make_batches_fixed_order():
    x = np.arange(11 * 3, dtype=np.float32).reshape(11, 3)
    y = np.arange(11, dtype=np.int32)
    batches = make_batches(x, y, batch_size=4, epochs=3)
    per_epoch = 11 // 4
    assert batches["x"].shape == (3 * per_epoch, 4, 3)
    assert batches["y"].shape == (3 * per_epoch, 4)
    for t in range(3 * per_epoch):
        start = (t % per_epoch) * 4
        np.testing.assert_array_equal(batches["x"][t], x[start : start + 4])
        np.testing.assert_array_equal(batches["y"][t], y[start : start + 4])
    assert 8 not in np.asarray(batches["y"])  # the trailing partial batch is dropped
    assert batches["x"].dtype == np.float32 and batches["y"].dtype == np.int32


def test_make_batches_paper_shape():
    data = load_digits()
    batches = make_batches(data.x_train, data.y_train, batch_size=64, epochs=2)
    assert batches["x"].shape == (2 * 25, 64, 64) and batches["y"].shape == (50, 64)


@pytest.mark.parametrize(
    ("n_y", "batch_size", "epochs", "culprit"),
    [
        (5, 2, 1, "same number"),
        (6, 0, 1, "batch_size"),
        (6, 7, 1, "batch_size"),
        (6, 2, 0, "epochs"),
    ],
)
def test_make_batches_rejects_bad_input(n_y, batch_size, epochs, culprit):
    with pytest.raises(ValueError, match=culprit):
        make_batches(np.zeros((6, 2)), np.zeros(n_y), batch_size, epochs)


def test_the_2d_densities_have_their_shapes_and_supports():
    from jacscope.data import DENSITIES, sample_density

    key = jax.random.key(0)
    samples = {name: np.asarray(sample_density(name, key, 4000)) for name in DENSITIES}
    for name, x in samples.items():
        assert x.shape == (4000, 2) and x.dtype == np.float32 and np.all(np.isfinite(x)), name
    radius = np.linalg.norm(samples["eight_gaussians"], axis=1)
    assert abs(radius.mean() - 2.0) < 0.02
    board = samples["checkerboard"]
    assert np.all(np.abs(board) <= 2.0)
    cells = np.floor(board).astype(int) + 2
    assert np.all((cells.sum(axis=1) % 2) == 0)  # only the black cells
    assert len({tuple(c) for c in cells}) == 8
    rings = np.linalg.norm(samples["rings"], axis=1)
    for r in (0.5, 1.0, 1.5, 2.0):
        assert np.mean(np.abs(rings - r) < 0.2) > 0.2
    with pytest.raises(ValueError, match="name must be one of"):
        sample_density("spiral", key, 10)
