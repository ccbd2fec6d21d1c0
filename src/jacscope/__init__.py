"""jacscope: Jacobians of learning, computed without forming them.

The public API is re-exported here; subpackages (`jacscope.linalg`, ...) hold the rest.
"""

from jacscope import operators as operators
from jacscope.operators import AbstractLinearOperator as AbstractLinearOperator
from jacscope.operators import DenseTooLarge as DenseTooLarge
from jacscope.operators import JacobianOperator as JacobianOperator
from jacscope.operators import LinearOperator as LinearOperator
from jacscope.operators import identity as identity
from jacscope.operators import jacobian_operator as jacobian_operator

__version__ = "0.1.0"
