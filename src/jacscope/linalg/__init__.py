"""Randomized numerical linear algebra on any jacscope linear operator.

Top-k singular values and eigenpairs with residuals (`svd_topk`, `eigh_topk`,
`spectral_norm`), stochastic trace, diagonal and Frobenius-norm estimators
(`trace`, `diagonal`, `frobenius_sq`), spectral densities by stochastic Lanczos
quadrature (`spectral_density`, `fraction_in`), counts in an interval with intervals
that hold the truth (`count_in` from quadrature, `chebyshev_count` by a damped
Chebyshev filter) and log-determinants (`logdet`).
Every function takes an explicit `jax.random` key, gives identical results for
identical keys and works under `jax.jit`.
"""

from jacscope.linalg._counts import IntervalCount as IntervalCount
from jacscope.linalg._counts import chebyshev_count as chebyshev_count
from jacscope.linalg._counts import chebyshev_degree as chebyshev_degree
from jacscope.linalg._counts import chebyshev_resolution as chebyshev_resolution
from jacscope.linalg._counts import count_in as count_in
from jacscope.linalg._density import SpectralDensity as SpectralDensity
from jacscope.linalg._density import fraction_in as fraction_in
from jacscope.linalg._density import spectral_density as spectral_density
from jacscope.linalg._eigh import eigh_topk as eigh_topk
from jacscope.linalg._estimate import Estimate as Estimate
from jacscope.linalg._logdet import logdet as logdet
from jacscope.linalg._methods import SLQ as SLQ
from jacscope.linalg._methods import Lanczos as Lanczos
from jacscope.linalg._methods import Randomized as Randomized
from jacscope.linalg._slq import Quadrature as Quadrature
from jacscope.linalg._slq import lanczos_quadrature as lanczos_quadrature
from jacscope.linalg._spectral_norm import NormEstimate as NormEstimate
from jacscope.linalg._spectral_norm import spectral_norm as spectral_norm
from jacscope.linalg._svd import DecompositionInfo as DecompositionInfo
from jacscope.linalg._svd import svd_topk as svd_topk
from jacscope.linalg._trace import diagonal as diagonal
from jacscope.linalg._trace import frobenius_sq as frobenius_sq
from jacscope.linalg._trace import trace as trace
