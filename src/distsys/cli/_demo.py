"""``distsys demo``: scenarios that show the primitives doing real work."""

from __future__ import annotations

import click

from distsys.cli._algorithms_demo import cache_demo, ring_demo
from distsys.cli._breaker_demo import breaker
from distsys.cli._dataflow_demo import wordcount_demo
from distsys.cli._mq_demo import mq_demo
from distsys.cli._pipeline_command import pipeline
from distsys.cli._system_demo import system_demo

__all__ = ["SCENARIOS", "demo"]

SCENARIOS: tuple[click.Command, ...] = (
    pipeline,
    cache_demo,
    ring_demo,
    breaker,
    mq_demo,
    wordcount_demo,
    system_demo,  # last: the parts above, put together as processes
)
"""The demo scenarios, in the order ``distsys demo`` runs them; add new ones here."""


@click.group(invoke_without_command=True)
@click.pass_context
def demo(click_ctx: click.Context) -> None:
    """Run the demo scenarios: all of them in order, or the one named.

    Without a scenario name every scenario runs with its default options, ending with
    ``system``: a registry, service replicas and the gateway as processes of their own,
    one replica killed under load. Name one (``distsys demo system --help``) to see and
    set its options.
    """
    if click_ctx.invoked_subcommand is None:
        for scenario in SCENARIOS:
            click_ctx.invoke(scenario)


for _scenario in SCENARIOS:
    demo.add_command(_scenario)
