"""Figures and reports drawn from job results; nothing here computes an analysis."""

from jacscope.report._flow import SUMMARY_HEADERS as SUMMARY_HEADERS
from jacscope.report._flow import summary_rows as summary_rows
from jacscope.report._flow import write_flow_report as write_flow_report
from jacscope.report._html import Section as Section
from jacscope.report._html import Table as Table
from jacscope.report._html import html_page as html_page
from jacscope.report._lyapunov import EXPONENT_HEADERS as EXPONENT_HEADERS
from jacscope.report._lyapunov import convergence_figure as convergence_figure
from jacscope.report._lyapunov import exponent_rows as exponent_rows
from jacscope.report._lyapunov import kaplan_yorke_text as kaplan_yorke_text
from jacscope.report._lyapunov import write_lyapunov_report as write_lyapunov_report
from jacscope.report._matrix_free import stage_seconds as stage_seconds
from jacscope.report._matrix_free import top_rows as top_rows
from jacscope.report._matrix_free import write_matrix_free_report as write_matrix_free_report
from jacscope.report._regions import REGION_HEADERS as REGION_HEADERS
from jacscope.report._regions import region_rows as region_rows
from jacscope.report._regions import region_title as region_title
from jacscope.report._render import render_report as render_report
from jacscope.report._spectrum import save_spectrum_figure as save_spectrum_figure
from jacscope.report._spectrum import spectrum_figure as spectrum_figure
from jacscope.report._training import SECTIONS as SECTIONS
from jacscope.report._training import training_report_sections as training_report_sections
from jacscope.report._training import write_training_report as write_training_report
