"""The root ``distsys`` command group."""

from __future__ import annotations

import click

from distsys import __version__
from distsys.cli._dataflow_command import dataflow
from distsys.cli._demo import demo
from distsys.cli._gateway_command import gateway
from distsys.cli._load_command import load
from distsys.cli._mq_command import mq
from distsys.cli._registry_command import registry
from distsys.cli._service_command import service

__all__ = ["main"]


@click.group()
@click.version_option(__version__, prog_name="distsys")
def main() -> None:
    """distsys: Go-style concurrency and distributed-systems building blocks."""


main.add_command(dataflow)
main.add_command(demo)
main.add_command(gateway)
main.add_command(load)
main.add_command(mq)
main.add_command(registry)
main.add_command(service)
