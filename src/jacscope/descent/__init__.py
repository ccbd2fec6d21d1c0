"""Jacobian descent: aggregators of a Jacobian's rows and their weightings.

Convention: a weighting (`*_weights`) maps the Gramian G = J J^T (m x m) to weights w
(m,), and the aggregator of the same name maps J (m x n) to w^T J. GradDrop, ConFIG and
the trimmed mean act on J directly and have no weighting; GradVac carries a state.
`objective_jacobian` and `objective_gramian` build J and G from a vector of losses,
`jacobian_descent` is the optax transformation and `multitask_jacobians` the Jacobians
of a shared trunk with task heads. Every function is pure, and
jit- and vmap-compatible; the random ones take an explicit key.
"""

from jacscope.descent._aligned_mtl import aligned_mtl as aligned_mtl
from jacscope.descent._aligned_mtl import aligned_mtl_weights as aligned_mtl_weights
from jacscope.descent._bargaining import fairgrad as fairgrad
from jacscope.descent._bargaining import fairgrad_weights as fairgrad_weights
from jacscope.descent._bargaining import nash_mtl as nash_mtl
from jacscope.descent._bargaining import nash_mtl_weights as nash_mtl_weights
from jacscope.descent._cagrad import cagrad as cagrad
from jacscope.descent._cagrad import cagrad_weights as cagrad_weights
from jacscope.descent._config import config as config
from jacscope.descent._dual_cone import ActiveSet as ActiveSet
from jacscope.descent._dual_cone import DualConeProjection as DualConeProjection
from jacscope.descent._dual_cone import ProjectedGradient as ProjectedGradient
from jacscope.descent._dual_cone import project_to_dual_cone as project_to_dual_cone
from jacscope.descent._elementary import constant as constant
from jacscope.descent._elementary import constant_weights as constant_weights
from jacscope.descent._elementary import mean as mean
from jacscope.descent._elementary import mean_weights as mean_weights
from jacscope.descent._elementary import random as random
from jacscope.descent._elementary import random_weights as random_weights
from jacscope.descent._elementary import sum_rows as sum_rows
from jacscope.descent._elementary import sum_weights as sum_weights
from jacscope.descent._graddrop import graddrop as graddrop
from jacscope.descent._gradvac import GradVacState as GradVacState
from jacscope.descent._gradvac import gradvac as gradvac
from jacscope.descent._gradvac import gradvac_init as gradvac_init
from jacscope.descent._gradvac import gradvac_weights as gradvac_weights
from jacscope.descent._gramian import gramian as gramian
from jacscope.descent._gramian import regularize_gramian as regularize_gramian
from jacscope.descent._imtl_g import imtl_g as imtl_g
from jacscope.descent._imtl_g import imtl_g_weights as imtl_g_weights
from jacscope.descent._mgda import mgda as mgda
from jacscope.descent._mgda import mgda_weights as mgda_weights
from jacscope.descent._objectives import objective_gramian as objective_gramian
from jacscope.descent._objectives import objective_jacobian as objective_jacobian
from jacscope.descent._pcgrad import pcgrad as pcgrad
from jacscope.descent._pcgrad import pcgrad_weights as pcgrad_weights
from jacscope.descent._projection import dualproj as dualproj
from jacscope.descent._projection import dualproj_weights as dualproj_weights
from jacscope.descent._projection import upgrad as upgrad
from jacscope.descent._projection import upgrad_weights as upgrad_weights
from jacscope.descent._robust import krum as krum
from jacscope.descent._robust import krum_weights as krum_weights
from jacscope.descent._robust import trimmed_mean as trimmed_mean
from jacscope.descent._transform import JacobianDescentState as JacobianDescentState
from jacscope.descent._transform import MultitaskJacobians as MultitaskJacobians
from jacscope.descent._transform import jacobian_descent as jacobian_descent
from jacscope.descent._transform import multitask_jacobians as multitask_jacobians
