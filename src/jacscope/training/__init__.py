"""The training Jacobian d theta_T / d theta_0 and its analyses."""

from jacscope.training._analysis_alignment import Alignment as Alignment
from jacscope.training._analysis_alignment import alignment as alignment
from jacscope.training._analysis_data import DataDependence as DataDependence
from jacscope.training._analysis_data import data_dependence as data_dependence
from jacscope.training._analysis_function_space import FunctionSpaceOverlap as FunctionSpaceOverlap
from jacscope.training._analysis_function_space import (
    function_space_overlap as function_space_overlap,
)
from jacscope.training._analysis_outputs import PROBE_SETS as PROBE_SETS
from jacscope.training._analysis_outputs import OutputSensitivity as OutputSensitivity
from jacscope.training._analysis_outputs import output_sensitivity as output_sensitivity
from jacscope.training._analysis_outputs import probe_inputs as probe_inputs
from jacscope.training._analysis_perturbation import DEFAULT_EPS as DEFAULT_EPS
from jacscope.training._analysis_perturbation import PerturbationResponse as PerturbationResponse
from jacscope.training._analysis_perturbation import perturbation_response as perturbation_response
from jacscope.training._analysis_restricted import SUBSPACES as SUBSPACES
from jacscope.training._analysis_restricted import RestrictedTraining as RestrictedTraining
from jacscope.training._analysis_restricted import restricted_training as restricted_training
from jacscope.training._analysis_restricted import subspace_indices as subspace_indices
from jacscope.training._analysis_restricted import train_in_subspace as train_in_subspace
from jacscope.training._analysis_seeds import SeedOverlap as SeedOverlap
from jacscope.training._analysis_seeds import SubspaceOverlap as SubspaceOverlap
from jacscope.training._analysis_seeds import seed_overlap as seed_overlap
from jacscope.training._analysis_seeds import subspace_overlap as subspace_overlap
from jacscope.training._analysis_spectrum import DEFAULT_TAUS as DEFAULT_TAUS
from jacscope.training._analysis_spectrum import RegionCounts as RegionCounts
from jacscope.training._analysis_spectrum import bulk_order as bulk_order
from jacscope.training._analysis_spectrum import (
    estimated_region_counts as estimated_region_counts,
)
from jacscope.training._analysis_spectrum import region_counts as region_counts
from jacscope.training._analysis_spectrum import region_intervals as region_intervals
from jacscope.training._analysis_spectrum import region_masks as region_masks
from jacscope.training._analysis_spectrum import region_summary as region_summary
from jacscope.training._jacobian import training_jacobian as training_jacobian
from jacscope.training._matrix_free import MatrixFreeResult as MatrixFreeResult
from jacscope.training._matrix_free import SingularTriplets as SingularTriplets
from jacscope.training._matrix_free import SingularValueDensity as SingularValueDensity
from jacscope.training._matrix_free import matrix_free_analysis as matrix_free_analysis
from jacscope.training._operator import TrainingJacobianOperator as TrainingJacobianOperator
from jacscope.training._operator import TrainingOperatorCost as TrainingOperatorCost
from jacscope.training._operator import training_jacobian_operator as training_jacobian_operator
from jacscope.training._run import TrainingRun as TrainingRun
from jacscope.training._setup import Setup as Setup
from jacscope.training._setup import TrainingConfig as TrainingConfig
from jacscope.training._setup import build_run as build_run
from jacscope.training._store import jacobian_chunks as jacobian_chunks
from jacscope.training._store import jacobian_digest as jacobian_digest
