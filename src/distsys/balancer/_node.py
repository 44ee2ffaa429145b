"""Node: what a balancer keeps about one instance; and why none is eligible."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Final

from distsys.registry import Instance, Status

__all__ = ["Node", "explain"]


class Node:
    """What a balancer keeps about one instance; survives updates while the id stays."""

    __slots__ = (
        "current",
        "ejected",
        "ejected_until",
        "errors",
        "ewma",
        "id",
        "instance",
        "last_pick",
        "outstanding",
        "picks",
        "samples",
        "stamp",
        "weight",
    )

    def __init__(self, instance: Instance) -> None:
        self.id = instance.id
        self.instance = instance
        self.weight = instance.weight
        self.outstanding = 0
        self.picks = 0
        self.errors = 0
        self.ejected = False
        self.ejected_until: float | None = None
        self.current = 0  # smooth weighted round robin's running weight
        self.ewma = -1.0  # p2c_ewma's latency estimate; < 0: not known (neutral)
        self.stamp = 0.0  # clock time of the last EWMA sample
        self.samples = 0
        self.last_pick = 0.0


EXCLUDED: Final = "excluded (already tried)"
REASONS: Final = ("draining", "down", "ejected", EXCLUDED, "not eligible")


def explain(nodes: Iterable[Node], exclude: Collection[str], *, panic: bool) -> str:
    """Say why none of ``nodes`` is eligible (the NoInstancesError reason)."""
    nodes = list(nodes)
    if not nodes:
        return "no instance is registered"
    why = dict.fromkeys(REASONS, 0)
    for node in nodes:
        status = node.instance.status
        if status is Status.DRAINING:
            why["draining"] += 1
        elif status is Status.DOWN:
            why["down"] += 1
        elif node.ejected and not panic:
            why["ejected"] += 1
        elif node.id in exclude:
            why[EXCLUDED] += 1
        else:  # not expected: every picker returns a candidate when one is left
            why["not eligible"] += 1
    found = {label: count for label, count in why.items() if count}
    if len(found) == 1:
        (label,) = found
        excluded = label == EXCLUDED
        if len(nodes) == 1:
            return f"its only instance {'was' if excluded else 'is'} {label}"
        return f"all {len(nodes)} instances {'were' if excluded else 'are'} {label}"
    parts = ", ".join(f"{count} {label}" for label, count in found.items())
    return f"none of its {len(nodes)} instances is eligible: {parts}"
