"""Propagating input distributions through a network by local linearisation.

`propagate_gaussian` and `propagate_cauchy` (stable distribution propagation,
Petersen et al. 2024), in the full form (one linearisation of the whole
network) and the layer-wise marginal form.
"""

from jacscope.propagation._cauchy import propagate_cauchy as propagate_cauchy
from jacscope.propagation._distributions import Cauchy as Cauchy
from jacscope.propagation._distributions import Gaussian as Gaussian
from jacscope.propagation._gaussian import propagate_gaussian as propagate_gaussian
