"""LeastOutstandingBalancer: the fewest requests in flight per unit of weight."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from random import Random

from distsys.balancer._base import Balancer, Node
from distsys.clock import Clock
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.hashring import Key
from distsys.registry import Instance

__all__ = ["LeastOutstandingBalancer"]

_CHOICES_ACCEPTED = "None (exact minimum over all instances) or an int >= 2 (sampled)"


class LeastOutstandingBalancer(Balancer):
    """Send each request where the fewest are in flight, relative to weight.

    *Outstanding* is this balancer's own count of picks not finished yet. With
    ``choices=None`` (the default) the pick is **exact**: it never chooses an instance
    whose ``outstanding / weight`` is strictly greater than another eligible one's, and
    breaks ties by smooth weighted round robin, as nginx's ``least_conn`` does, so
    sequential traffic (everything idle) is spread by weight rather than piled on the
    first instance. That costs O(n) per pick, fine for the tens of instances of a
    typical service.

    With ``choices=k`` it samples ``k`` eligible instances at random (with replacement)
    and takes the one with the least ``outstanding / weight``, the first drawn among
    equals, as Envoy's ``least_request`` with ``choice_count`` (``k = 2`` is the power
    of two choices): O(k) per pick, for large fleets.

    Thread-safe (see :class:`Balancer`).

    Args:
        choices: None for the exact minimum, or how many instances to sample (>= 2).
    """

    name = "least_outstanding"

    def __init__(
        self,
        instances: Iterable[Instance] = (),
        *,
        choices: int | None = None,
        service: str | None = None,
        clock: Clock | None = None,
        rng: Random | None = None,
        panic_threshold: float = 0.0,
    ) -> None:
        if choices is not None:
            if isinstance(choices, bool) or not isinstance(choices, int):
                raise ArgumentTypeError("choices", choices, _CHOICES_ACCEPTED)
            if choices < 2:
                raise InvalidArgumentError("choices", choices, _CHOICES_ACCEPTED)
        self._choices = choices
        super().__init__(
            instances, service=service, clock=clock, rng=rng, panic_threshold=panic_threshold
        )

    def _rebuild(self) -> None:
        for node in self._candidates:
            node.current = 0

    def _choose(self, key: Key | None, exclude: Collection[str], now: float) -> Node | None:
        nodes = self._candidates
        if exclude:
            nodes = [node for node in nodes if node.id not in exclude]
        if not nodes:
            return None
        if self._choices is not None and len(nodes) > self._choices:
            return self._sampled(nodes, self._choices)
        best = nodes[0]
        ties = [best]
        for node in nodes[1:]:
            # node.outstanding / node.weight vs best's, without division
            mine = node.outstanding * best.weight
            theirs = best.outstanding * node.weight
            if mine < theirs:
                best = node
                ties = [node]
            elif mine == theirs:
                ties.append(node)
        if len(ties) == 1:
            return best
        total = 0
        for node in ties:
            node.current += node.weight
            total += node.weight
            if node.current > best.current:
                best = node
        best.current -= total
        return best

    def _sampled(self, nodes: list[Node], choices: int) -> Node:
        random = self._random
        size = len(nodes)
        best = nodes[int(random() * size)]
        for _ in range(choices - 1):
            node = nodes[int(random() * size)]
            if node.outstanding * best.weight < best.outstanding * node.weight:
                best = node
        return best
