"""jacscope: Jacobians of learning, computed without forming them.

The public API: the operator protocol and the training Jacobian are re-exported
here; each capability is a subpackage (`jacscope.linalg`, `jacscope.curvature`,
`jacscope.training`, `jacscope.penalties`, `jacscope.lipschitz`, `jacscope.propagation`,
`jacscope.parallel`, `jacscope.descent`, `jacscope.dynamics`, `jacscope.taylor`) with its
own explicit re-exports.

Importing jacscope before JAX has run anything asks JAX for one CPU device per core
(`JACSCOPE_CPU_DEVICES` sets another count), so that chunked work such as
`training_jacobian` fills the host; see `jacscope.use_cpu_cores`.
"""

from jacscope import curvature as curvature
from jacscope import data as data
from jacscope import descent as descent
from jacscope import dynamics as dynamics
from jacscope import linalg as linalg
from jacscope import lipschitz as lipschitz
from jacscope import models as models
from jacscope import operators as operators
from jacscope import parallel as parallel
from jacscope import penalties as penalties
from jacscope import propagation as propagation
from jacscope import taylor as taylor
from jacscope import training as training
from jacscope._devices import use_cpu_cores as use_cpu_cores
from jacscope._devices import use_cpu_cores_by_default
from jacscope._io import FolderError as FolderError
from jacscope._progress import Progress as Progress
from jacscope.jobs import load as load
from jacscope.linalg import Estimate as Estimate
from jacscope.operators import AbstractLinearOperator as AbstractLinearOperator
from jacscope.operators import DenseTooLarge as DenseTooLarge
from jacscope.operators import JacobianOperator as JacobianOperator
from jacscope.operators import LinearOperator as LinearOperator
from jacscope.operators import MatrixOperator as MatrixOperator
from jacscope.operators import from_lineax as from_lineax
from jacscope.operators import identity as identity
from jacscope.operators import jacobian_operator as jacobian_operator
from jacscope.operators import matrix_operator as matrix_operator
from jacscope.training import TrainingRun as TrainingRun
from jacscope.training import training_jacobian as training_jacobian
from jacscope.training import training_jacobian_operator as training_jacobian_operator

__version__ = "0.1.0"

use_cpu_cores_by_default()
