"""The training Jacobian d theta_T / d theta_0 and its analyses."""

from jacscope.training._run import TrainingRun as TrainingRun
