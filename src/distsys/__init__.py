"""distsys: Go-style concurrency and the building blocks of distributed systems.

Import from the concept, for example ``from distsys.concurrency import Chan, select``
or ``from distsys.context import background, with_timeout``. This top-level module stays
light: it imports nothing heavy and no optional dependency.
"""

from distsys import _pure

if _pure.requested():  # DISTSYS_PURE_PYTHON=1: the .py files, not the compiled modules
    _pure.install()

from distsys.errors import DistsysError

__all__ = ["DistsysError", "__version__"]

__version__ = "0.1.0"
