"""Dependence of the training Jacobian's spectrum on the data: real, shuffled, noise."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from jacscope.training._analysis_spectrum import DEFAULT_TAUS, region_counts


class DataDependence(NamedTuple):
    """Distance of the singular values from one under several training distributions.

    **Fields:**

    - `names`: the runs compared (e.g. `"real"`, `"shuffled labels"`, `"noise inputs"`).
    - `distance`: `(len(names), n)`, |s_i - 1| with s in descending order, per run.
    - `counts`: one `RegionCounts._asdict()` per run.
    """

    names: list[str]
    distance: np.ndarray
    counts: list[dict]


def data_dependence(spectra: Mapping[str, np.ndarray], taus=DEFAULT_TAUS) -> DataDependence:
    """Compare |s_i - 1| of training Jacobians of the same initialisation on different data.

    Belrose & Scherlis (arXiv 2412.07003) find the bulk depends on the
    inputs but hardly on the labels: with shuffled labels the curve of |s_i - 1|
    stays close to that of real data, with white-noise inputs it does not.

    **Arguments:**

    - `spectra`: name -> `(n,)` singular values of each run's training Jacobian (all
      of the same length).
    - `taus`: tolerances of the region counts.

    **Returns:** a `DataDependence`.

    Citation: Belrose & Scherlis, "Understanding Gradient Descent through the
    Training Jacobian", arXiv 2412.07003.
    """
    if not spectra:
        raise ValueError("spectra is empty")
    names = list(spectra)
    values = [np.sort(np.asarray(spectra[name], np.float64))[::-1] for name in names]
    sizes = {v.shape for v in values}
    if len(sizes) != 1 or values[0].ndim != 1:
        raise ValueError(
            "every spectrum must be a vector of the same length; received shapes "
            + ", ".join(f"{name}: {v.shape}" for name, v in zip(names, values, strict=True))
        )
    return DataDependence(
        names=names,
        distance=np.abs(np.stack(values) - 1),
        counts=[region_counts(v, taus)._asdict() for v in values],
    )
