"""Local Lipschitz constants as an interval [lower, upper].

`lipschitz_lower` (projected gradient ascent on the Jacobian norm of any function)
and `lipschitz_upper` (certified bounds: naive, interval and CROWN-based for MLPs given
as layer lists; interval and CROWN-based for any JAX function, by interpreting its
jaxpr with interval enclosures of every intermediate value and of its Jacobian).
"""

from jacscope.lipschitz._lower import LowerBound as LowerBound
from jacscope.lipschitz._lower import lipschitz_lower as lipschitz_lower
from jacscope.lipschitz._upper import lipschitz_upper as lipschitz_upper
