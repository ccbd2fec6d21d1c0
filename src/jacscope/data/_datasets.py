"""The small classification datasets of the training-Jacobian experiments.

Belrose & Scherlis train an MLP on the scikit-learn digits; MNIST-1D (Greydanus 2020) is
a second, equally small benchmark. Both are available without network access: digits
ships with scikit-learn and MNIST-1D is generated from the templates defined in the
`mnist1d` package's code.

Citation: Belrose & Scherlis, "Understanding Gradient Descent through the Training
Jacobian", arXiv 2412.07003.

Citation: Greydanus, "Scaling Down Deep Learning", arXiv 2011.14439.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import random
from typing import Literal, NamedTuple

import numpy as np

from jacscope._extras import require

_NAMES = ("digits", "mnist1d")


class Dataset(NamedTuple):
    """A classification dataset split into train and test parts.

    **Fields:**

    - `x_train`: `(N, d)` float32 features.
    - `y_train`: `(N,)` int32 labels in `[0, num_classes)`.
    - `x_test`, `y_test`: the held-out split, same layout.
    - `name`: what the data is, e.g. `"digits"` or `"digits+shuffled_labels"`.
    - `num_classes`: the number of classes.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    num_classes: int


def _dataset(x_train, y_train, x_test, y_test, name: str, num_classes: int) -> Dataset:
    return Dataset(
        x_train=np.asarray(x_train, np.float32),
        y_train=np.asarray(y_train, np.int32),
        x_test=np.asarray(x_test, np.float32),
        y_test=np.asarray(y_test, np.int32),
        name=name,
        num_classes=int(num_classes),
    )


def load_digits() -> Dataset:
    """The scikit-learn 8x8 digits in the setting of Belrose & Scherlis.

    The 1797 images are flattened to 64 features scaled by 1/16 into [0, 1] and split
    as `sklearn.model_selection.train_test_split(test_size=197, random_state=0)` splits
    them (the first 197 of `numpy.random.RandomState(0).permutation(1797)` are the
    test examples, the other 1600 in that order the training ones; 10 classes).

    The images are read from the copy scikit-learn ships
    (`sklearn/datasets/data/digits.csv.gz`) without importing scikit-learn, whose
    import alone takes about 55 MiB of the process's memory; the result equals
    `sklearn.datasets.load_digits` split by `train_test_split` exactly.

    **Raises:** `jacscope._extras.MissingExtra` (an `ImportError`) naming the `cli`
    extra if scikit-learn is not installed.

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.
    """
    x, target = _digits_arrays()
    order = np.random.RandomState(0).permutation(len(x))  # noqa: NPY002 (sklearn's split)
    test, train = order[:197], order[197:]
    return _dataset(x[train], target[train], x[test], target[test], "digits", 10)


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    require("sklearn", "the digits data set, which ships with scikit-learn,")
    spec = importlib.util.find_spec("sklearn")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    table = np.loadtxt(path, delimiter=",")
    x, target = table[:, :-1] / 16.0, table[:, -1].astype(np.int64)
    for array in (x, target):
        array.setflags(write=False)
    return x, target


@functools.lru_cache(maxsize=4)
def _mnist1d_arrays(seed: int) -> tuple[np.ndarray, ...]:
    mnist1d = require("mnist1d", "the MNIST-1D data set")
    args = mnist1d.get_dataset_args()
    args.seed = seed
    # `make_dataset` seeds and draws from the global `random` / `np.random` states;
    # restore them so that loading data has no side effect on the caller's streams.
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        raw = mnist1d.data.make_dataset(args)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    arrays = (raw["x"], raw["y"], raw["x_test"], raw["y_test"])
    for array in arrays:
        array.setflags(write=False)
    return arrays


def load_mnist1d(seed: int = 0) -> Dataset:
    """MNIST-1D (Greydanus 2020), generated offline with the `mnist1d` package.

    The package's own generator (`mnist1d.data.make_dataset`, default arguments, with
    `seed` as its seed) builds 5000 length-40 signals from ten digit templates defined
    in its code, shifted, scaled, sheared and noised; the dataset is standardised to
    mean 0 and standard deviation 1 and split 4000 / 1000. Nothing is downloaded.
    (The pickle the package downloads by default was generated with seed 42.)

    **Arguments:**

    - `seed`: the generator's seed.

    Citation: Greydanus, "Scaling Down Deep Learning", arXiv 2011.14439.
    """
    x_train, y_train, x_test, y_test = _mnist1d_arrays(int(seed))
    return _dataset(x_train, y_train, x_test, y_test, "mnist1d", 10)


def load_dataset(
    name: Literal["digits", "mnist1d"],
    *,
    labels: Literal["real", "shuffled"] = "real",
    inputs: Literal["real", "noise"] = "real",
    seed: int = 0,
) -> Dataset:
    """A dataset by name, optionally with random labels or random inputs.

    The controls of the training-Jacobian experiments (Belrose & Scherlis): with
    `labels="shuffled"` the training and test labels are each permuted at random
    (class frequencies kept, any relation to the inputs destroyed); with
    `inputs="noise"` every feature is replaced by uniform noise on [0, 1) of the same
    shape. Both draw from `numpy.random.default_rng` streams derived from `seed`
    (one stream per control, so each is the same whether or not the other is on).

    **Arguments:**

    - `name`: `"digits"` or `"mnist1d"`.
    - `labels`: `"real"` or `"shuffled"`.
    - `inputs`: `"real"` or `"noise"`.
    - `seed`: seed of the random controls (and of MNIST-1D's generator).

    **Raises:** `ValueError` naming the unknown name or option.

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.

    Citation: Greydanus, "Scaling Down Deep Learning", arXiv 2011.14439.
    """
    if name not in _NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(_NAMES)}")
    if labels not in ("real", "shuffled"):
        raise ValueError(f"labels must be 'real' or 'shuffled', received {labels!r}")
    if inputs not in ("real", "noise"):
        raise ValueError(f"inputs must be 'real' or 'noise', received {inputs!r}")
    data = load_digits() if name == "digits" else load_mnist1d(seed)
    if labels == "shuffled":
        rng = np.random.default_rng([seed, 0])
        data = data._replace(
            y_train=rng.permutation(data.y_train),
            y_test=rng.permutation(data.y_test),
            name=data.name + "+shuffled_labels",
        )
    if inputs == "noise":
        rng = np.random.default_rng([seed, 1])
        data = data._replace(
            x_train=rng.random(data.x_train.shape, dtype=np.float32),
            x_test=rng.random(data.x_test.shape, dtype=np.float32),
            name=data.name + "+noise_inputs",
        )
    return data
