"""Jobs: a command's computation, run in an output folder that resumes.

A job takes a frozen configuration (a `TrainingConfig`, `SpectrumConfig`,
`LyapunovConfig` or `FlowConfig`, and the method's settings), an output folder and a
`jacscope.Progress` callback; it claims the folder (`JobFolder`: one owner, one
writer, another configuration refused unless forced), keeps every finished stage
there, writes its result last as `report.json` and returns it as a NamedTuple of
plain values; it prints nothing. `load(DIR)` reads a folder back. `jacscope.report`
draws the results and `jacscope.cli` runs jobs from the command line.
"""

from jacscope.jobs._analyses import ANALYSES as ANALYSES
from jacscope.jobs._analyses import DEFAULT_ANALYSES as DEFAULT_ANALYSES
from jacscope.jobs._analyses import Analysis as Analysis
from jacscope.jobs._analyses import parse_analyses as parse_analyses
from jacscope.jobs._folder import JobFolder as JobFolder
from jacscope.jobs._load import FolderResults as FolderResults
from jacscope.jobs._load import load as load
from jacscope.jobs.flow import FlowConfig as FlowConfig
from jacscope.jobs.flow import FlowResult as FlowResult
from jacscope.jobs.flow import run_flow as run_flow
from jacscope.jobs.lyapunov import LyapunovConfig as LyapunovConfig
from jacscope.jobs.lyapunov import LyapunovResult as LyapunovResult
from jacscope.jobs.lyapunov import run_lyapunov as run_lyapunov
from jacscope.jobs.matrix_free import MatrixFreeReport as MatrixFreeReport
from jacscope.jobs.matrix_free import MatrixFreeSettings as MatrixFreeSettings
from jacscope.jobs.matrix_free import run_matrix_free as run_matrix_free
from jacscope.jobs.spectrum import PreparedJacobian as PreparedJacobian
from jacscope.jobs.spectrum import SpectrumConfig as SpectrumConfig
from jacscope.jobs.spectrum import SpectrumResult as SpectrumResult
from jacscope.jobs.spectrum import jacobian_shape as jacobian_shape
from jacscope.jobs.spectrum import prepare_jacobian as prepare_jacobian
from jacscope.jobs.spectrum import run_spectrum as run_spectrum
from jacscope.jobs.train_jacobian import ExactSettings as ExactSettings
from jacscope.jobs.train_jacobian import TrainJacobianReport as TrainJacobianReport
from jacscope.jobs.train_jacobian import run_train_jacobian as run_train_jacobian
