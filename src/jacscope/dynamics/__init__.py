"""Dynamics through their Jacobians: Lyapunov spectra of maps, ODEs and training runs by
the QR method, with standard errors from batch means and the Kaplan-Yorke dimension;
covariant Lyapunov vectors; fixed points, their stability and their branches; the
diagnosis of gradients through chaotic unrolls."""

from jacscope.dynamics._covariant import CovariantLyapunovVectors as CovariantLyapunovVectors
from jacscope.dynamics._covariant import covariant_lyapunov_vectors as covariant_lyapunov_vectors
from jacscope.dynamics._explosion import GradientExplosionReport as GradientExplosionReport
from jacscope.dynamics._explosion import gradient_explosion_report as gradient_explosion_report
from jacscope.dynamics._fixed_points import Bifurcation as Bifurcation
from jacscope.dynamics._fixed_points import Branch as Branch
from jacscope.dynamics._fixed_points import FixedPoints as FixedPoints
from jacscope.dynamics._fixed_points import Stability as Stability
from jacscope.dynamics._fixed_points import continue_fixed_point as continue_fixed_point
from jacscope.dynamics._fixed_points import find_fixed_points as find_fixed_points
from jacscope.dynamics._fixed_points import fixed_point_stability as fixed_point_stability
from jacscope.dynamics._lyapunov import LyapunovSpectrum as LyapunovSpectrum
from jacscope.dynamics._lyapunov import kaplan_yorke_dimension as kaplan_yorke_dimension
from jacscope.dynamics._lyapunov import lyapunov_spectrum as lyapunov_spectrum
from jacscope.dynamics._lyapunov import lyapunov_spectrum_ode as lyapunov_spectrum_ode
from jacscope.dynamics._systems import SYSTEMS as SYSTEMS
from jacscope.dynamics._systems import DynamicalSystem as DynamicalSystem
from jacscope.dynamics._systems import HenonMap as HenonMap
from jacscope.dynamics._systems import LogisticMap as LogisticMap
from jacscope.dynamics._systems import Lorenz63 as Lorenz63
from jacscope.dynamics._systems import RateNetwork as RateNetwork
from jacscope.dynamics._systems import TrainedGRU as TrainedGRU
from jacscope.dynamics._training_map import TrainingLyapunovSpectrum as TrainingLyapunovSpectrum
from jacscope.dynamics._training_map import training_lyapunov_spectrum as training_lyapunov_spectrum
