"""The ``distsys`` command.

``distsys --help`` lists the commands; ``distsys demo`` runs the demo scenarios. This is
the only subpackage that imports click and rich.
"""

from distsys.cli._main import main

__all__ = ["main"]
