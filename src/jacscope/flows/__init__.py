"""Continuous normalising flows: log-densities by the instantaneous change of variables
with exact, Hutchinson or Hutch++ divergences, solved by diffrax (the `ode` extra); RNODE's
penalties and the local-error regulariser; FFJORD's concat field."""

from jacscope.flows._cnf import CNFLogDensity as CNFLogDensity
from jacscope.flows._cnf import cnf_log_density as cnf_log_density
from jacscope.flows._cnf import cnf_sample as cnf_sample
from jacscope.flows._cnf import standard_normal_log_density as standard_normal_log_density
from jacscope.flows._field import concat_field as concat_field
from jacscope.flows._field import init_concat_field as init_concat_field
from jacscope.flows._local_error import LocalError as LocalError
from jacscope.flows._local_error import local_error as local_error
from jacscope.flows._objectives import REGULARISERS as REGULARISERS
from jacscope.flows._objectives import maximum_likelihood_loss as maximum_likelihood_loss
