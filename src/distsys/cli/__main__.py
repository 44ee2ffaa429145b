"""Run the ``distsys`` command as ``python -m distsys.cli``."""

from distsys.cli._main import main

main(prog_name="distsys")
