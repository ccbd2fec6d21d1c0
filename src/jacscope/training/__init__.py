"""The training Jacobian d theta_T / d theta_0 and its analyses."""

from jacscope.training._jacobian import training_jacobian as training_jacobian
from jacscope.training._run import TrainingRun as TrainingRun
from jacscope.training._operator import TrainingJacobianOperator as TrainingJacobianOperator
from jacscope.training._operator import TrainingOperatorCost as TrainingOperatorCost
from jacscope.training._operator import training_jacobian_operator as training_jacobian_operator
