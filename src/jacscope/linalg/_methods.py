"""Method objects: the settings of a top-k SVD or a quadrature, validated once.

In the spirit of lineax's solvers, a method is a small frozen dataclass whose fields
are its settings; it is checked when it is made, so a bad setting is refused where it
enters, and its fields are plain values (`dataclasses.asdict` is JSON-ready). The
command line builds its flags from these fields.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

from jacscope._validation import check_count


@dataclasses.dataclass(frozen=True)
class Lanczos:
    """Golub-Kahan-Lanczos for `svd_topk`, fully reorthogonalised.

    **Fields:**

    - `depth`: Lanczos steps (default `min(n, 3k + 20)`; raise it if the residuals are
      too large).
    - `tol`: stop once every relative residual is at most `tol` (`depth` is then the
      most steps spent).
    - `residuals`: `"explicit"` costs k more products (one batched sweep),
      `"recurrence"` reads them off the Lanczos relation for free.

    Citation: Golub & Kahan, "Calculating the singular values and pseudo-inverse of a
    matrix", SIAM Journal on Numerical Analysis, 1965.
    """

    depth: int | None = None
    tol: float | None = None
    residuals: Literal["explicit", "recurrence"] = "explicit"

    def __post_init__(self):
        if self.depth is not None:
            check_count(self.depth, "depth")
        if self.tol is not None and not (
            isinstance(self.tol, int | float) and math.isfinite(self.tol) and self.tol > 0
        ):
            raise ValueError(f"tol must be a finite number > 0, received {self.tol!r}")
        if self.residuals not in ("explicit", "recurrence"):
            raise ValueError(
                f"residuals must be 'explicit' or 'recurrence', received {self.residuals!r}"
            )

    def svd_topk_arguments(self) -> dict[str, Any]:
        """The keyword arguments of `jacscope.linalg.svd_topk` for this method."""
        return {"method": "lanczos", **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class Randomized:
    """The randomized range finder for `svd_topk` (Halko, Martinsson & Tropp 2011).

    **Fields:**

    - `oversampling`: extra columns of the sketch beyond k.
    - `power_iterations`: passes of (A A^T) that sharpen a slowly decaying spectrum.

    Citation: Halko, Martinsson & Tropp, "Finding structure with randomness: Probabilistic
    algorithms for constructing approximate matrix decompositions", arXiv 0909.4061.
    """

    oversampling: int = 10
    power_iterations: int = 2

    def __post_init__(self):
        check_count(self.oversampling, "oversampling", minimum=0)
        check_count(self.power_iterations, "power_iterations", minimum=0)

    def svd_topk_arguments(self) -> dict[str, Any]:
        """The keyword arguments of `jacscope.linalg.svd_topk` for this method."""
        return {"method": "randomized", **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class SLQ:
    """Stochastic Lanczos quadrature for `spectral_density`.

    **Fields:**

    - `num_probes`: Rademacher probes averaged (at least 2, for a spread).
    - `depth`: Lanczos steps per probe (one `mv` and one `rmv` each for singular values).
    - `probes_per_batch`: probes run at a time (each batch can be saved when done).

    Citation: Ubaru, Chen & Saad, "Fast estimation of tr(f(A)) via stochastic Lanczos
    quadrature", SIAM Journal on Matrix Analysis and Applications, 2017.
    """

    num_probes: int = 8
    depth: int = 40
    probes_per_batch: int = 1

    def __post_init__(self):
        check_count(self.num_probes, "num_probes", minimum=2)
        check_count(self.depth, "depth")
        check_count(self.probes_per_batch, "probes_per_batch")
