"""Figures and reports drawn from job results; nothing here computes an analysis."""

from jacscope.report._spectrum import save_spectrum_figure as save_spectrum_figure
from jacscope.report._spectrum import spectrum_figure as spectrum_figure
