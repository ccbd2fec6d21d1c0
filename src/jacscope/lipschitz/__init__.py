"""Local Lipschitz constants as an interval [lower, upper].

`lipschitz_lower` (projected gradient ascent on the Jacobian norm of any function)
and `lipschitz_upper` (naive, interval and CROWN-based certified bounds for MLPs).
"""

from jacscope.lipschitz._lower import LowerBound as LowerBound
from jacscope.lipschitz._lower import lipschitz_lower as lipschitz_lower
from jacscope.lipschitz._upper import lipschitz_upper as lipschitz_upper
