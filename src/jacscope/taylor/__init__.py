r"""Differential operators by Taylor-mode automatic differentiation: exact (Laplacian,
Hessian diagonal, tr(A H), biharmonic, directional derivatives of any order, any
linear combination of mixed partials) and stochastic (STDE's sparse and dense
estimators), with the forward Laplacian and Hessian-vector products as baselines.

Any contraction of a k-th derivative tensor is a weighted sum of univariate Taylor
coefficients along well-chosen directions (Shi, Hu, Lin & Kawaguchi 2024); the jets
share the primal, carry normalised coefficients and collapse the highest one into a
single sum where only the sum is needed.
"""

from jacscope.taylor._jets import UnsupportedPrimitive as UnsupportedPrimitive
from jacscope.taylor._jets import jet as jet
from jacscope.taylor._operators import biharmonic as biharmonic
from jacscope.taylor._operators import differential_operator as differential_operator
from jacscope.taylor._operators import directional_derivative as directional_derivative
from jacscope.taylor._operators import hessian_diagonal as hessian_diagonal
from jacscope.taylor._operators import hessian_trace_weighted as hessian_trace_weighted
from jacscope.taylor._operators import laplacian as laplacian
from jacscope.taylor._stochastic import Dense as Dense
from jacscope.taylor._stochastic import Sparse as Sparse
from jacscope.taylor._stochastic import TaylorEstimate as TaylorEstimate
from jacscope.taylor._stochastic import stde_biharmonic as stde_biharmonic
from jacscope.taylor._stochastic import stde_differential_operator as stde_differential_operator
from jacscope.taylor._stochastic import stde_hessian_diagonal as stde_hessian_diagonal
from jacscope.taylor._stochastic import stde_hessian_trace_weighted as stde_hessian_trace_weighted
from jacscope.taylor._stochastic import stde_laplacian as stde_laplacian
