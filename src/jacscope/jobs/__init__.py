"""Jobs: the computations behind the command-line tools, returning JSON-ready results.

A job takes a frozen config dataclass and an optional progress callback, computes,
and returns a NamedTuple of plain Python values (`json.dumps(result._asdict())`
works); it prints nothing. A job that runs for minutes writes its finished work to
its output folder as it goes, so that a killed run resumes. `jacscope.report` draws
the results and `jacscope.cli` runs jobs from the command line.
"""

from jacscope.jobs.matrix_free import MatrixFreeReport as MatrixFreeReport
from jacscope.jobs.matrix_free import run_matrix_free as run_matrix_free
from jacscope.jobs.spectrum import PreparedJacobian as PreparedJacobian
from jacscope.jobs.spectrum import SpectrumConfig as SpectrumConfig
from jacscope.jobs.spectrum import SpectrumResult as SpectrumResult
from jacscope.jobs.spectrum import jacobian_shape as jacobian_shape
from jacscope.jobs.spectrum import prepare_jacobian as prepare_jacobian
from jacscope.jobs.spectrum import run_spectrum as run_spectrum
from jacscope.jobs.train_jacobian import ANALYSES as ANALYSES
from jacscope.jobs.train_jacobian import DEFAULT_ANALYSES as DEFAULT_ANALYSES
from jacscope.jobs.train_jacobian import TrainJacobianReport as TrainJacobianReport
from jacscope.jobs.train_jacobian import run_train_jacobian as run_train_jacobian
