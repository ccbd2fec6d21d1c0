"""Linear operators: Jacobians and user maps, known by their products.

See `AbstractLinearOperator` for the protocol (`mv`, `rmv`, `mm`, `rmm`, `T`,
`shape`, `dtype`, `materialize`) shared by every operator in jacscope. A plain matrix
is one with `matrix_operator`; `op.to_lineax()`, `from_lineax` and `op.to_scipy()`
carry operators to and from lineax and SciPy (imported only when called).
"""

from jacscope.operators._dense import DenseTooLarge as DenseTooLarge
from jacscope.operators._interop import from_lineax as from_lineax
from jacscope.operators._jacobian import JacobianOperator as JacobianOperator
from jacscope.operators._jacobian import jacobian_operator as jacobian_operator
from jacscope.operators._linear_operator import AbstractLinearOperator as AbstractLinearOperator
from jacscope.operators._linear_operator import ComposedOperator as ComposedOperator
from jacscope.operators._linear_operator import IdentityOperator as IdentityOperator
from jacscope.operators._linear_operator import LinearOperator as LinearOperator
from jacscope.operators._linear_operator import ScaledOperator as ScaledOperator
from jacscope.operators._linear_operator import SumOperator as SumOperator
from jacscope.operators._linear_operator import TransposedOperator as TransposedOperator
from jacscope.operators._linear_operator import identity as identity
from jacscope.operators._matrix import MatrixOperator as MatrixOperator
from jacscope.operators._matrix import matrix_operator as matrix_operator
