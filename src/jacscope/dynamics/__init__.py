"""Dynamics through their Jacobians: Lyapunov spectra of maps and ODEs by the QR method,
with standard errors from batch means and the Kaplan-Yorke dimension."""

from jacscope.dynamics._covariant import CovariantLyapunovVectors as CovariantLyapunovVectors
from jacscope.dynamics._covariant import covariant_lyapunov_vectors as covariant_lyapunov_vectors
from jacscope.dynamics._explosion import GradientExplosionReport as GradientExplosionReport
from jacscope.dynamics._explosion import gradient_explosion_report as gradient_explosion_report
from jacscope.dynamics._lyapunov import LyapunovSpectrum as LyapunovSpectrum
from jacscope.dynamics._lyapunov import kaplan_yorke_dimension as kaplan_yorke_dimension
from jacscope.dynamics._lyapunov import lyapunov_spectrum as lyapunov_spectrum
from jacscope.dynamics._lyapunov import lyapunov_spectrum_ode as lyapunov_spectrum_ode
from jacscope.dynamics._training_map import TrainingLyapunovSpectrum as TrainingLyapunovSpectrum
from jacscope.dynamics._training_map import training_lyapunov_spectrum as training_lyapunov_spectrum
