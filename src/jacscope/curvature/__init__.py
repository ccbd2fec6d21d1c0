"""Curvature matrices of a loss, as jacscope operators on any pytree model.

The operators users of curvlinops, PyHessian and laplace-torch reach for, each a
`(P, P)` symmetric `CurvatureOperator` on flat parameter vectors (`mv == rmv`, `mm`,
`materialize(max_bytes=...)`), over one batch in memory or a stream of batches from a
function (a data set larger than memory):

- `hessian_operator(loss_fn, params, data)`: the loss Hessian, by Hessian-vector
  products;
- `ggn_operator(model_fn, params, data, loss=...)`: the generalised Gauss-Newton
  matrix J^T H J, equal to the Fisher for `"cross_entropy"`, `"mse"`, `"bernoulli"`;
- `empirical_fisher_operator`, `gradient_covariance_operator`: sums and the
  covariance of per-example gradients, without forming them;
- `output_jacobian_operator(model_fn, params, inputs)`: the `(N C, P)` per-example
  Jacobian of the outputs.

`jacscope.linalg` takes them unchanged: `eigh_topk` for top eigenvalues, `trace`,
`spectral_density(kind="eigen")`, `logdet` (of a damped `G + delta * identity(P)`).
"""

from jacscope.curvature._fisher import empirical_fisher_operator as empirical_fisher_operator
from jacscope.curvature._fisher import (
    gradient_covariance_operator as gradient_covariance_operator,
)
from jacscope.curvature._ggn import ggn_operator as ggn_operator
from jacscope.curvature._hessian import hessian_operator as hessian_operator
from jacscope.curvature._losses import LOSSES as LOSSES
from jacscope.curvature._operator import CurvatureOperator as CurvatureOperator
from jacscope.curvature._output_jacobian import (
    output_jacobian_operator as output_jacobian_operator,
)
