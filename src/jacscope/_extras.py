"""The optional parts of jacscope and the packages each needs.

`pip install jacscope` installs the library (operators, linear algebra, the training
Jacobian and its analyses, the capabilities). The command line, the reports, the jobs'
configuration files and the embedded data sets need the `cli` extra,
`pip install 'jacscope[cli]'`, an operator's `to_lineax` the `lineax` extra, and the
Lyapunov spectra of ODEs the `ode` extra (diffrax); what
needs one calls `require` first, so that its absence
is one line naming the extra, never an `ImportError` from deep inside.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

EXTRAS = {
    "cli": {
        "rich": "rich",
        "matplotlib": "matplotlib",
        "sklearn": "scikit-learn",
        "tomli_w": "tomli-w",
        "mnist1d": "mnist1d",
    },
    "lineax": {"lineax": "lineax"},
    "ode": {"diffrax": "diffrax"},
}
"""Per extra, `{module: distribution}` of the packages it installs."""


class MissingExtra(ImportError):
    """A part of jacscope was used without the extra that installs its packages."""


def _absent(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a finder refused it, or a broken stub
        return True


def missing(extra: str) -> list[str]:
    """The distributions of `extra` whose module cannot be found, in order."""
    return [dist for module, dist in EXTRAS[extra].items() if _absent(module)]


def require(module: str, purpose: str) -> ModuleType:
    """Import `module`, or raise `MissingExtra` naming the extra that installs it.

    **Arguments:**

    - `module`: the module's import name (a key of one of `EXTRAS`).
    - `purpose`: what needs it, for the message ("the digits data set").
    """
    extra = next(name for name, modules in EXTRAS.items() if module in modules)
    if _absent(module):
        raise MissingExtra(
            f"{purpose} needs {EXTRAS[extra][module]}, which comes with the {extra!r} extra: "
            f"pip install 'jacscope[{extra}]'"
        )
    return importlib.import_module(module)
