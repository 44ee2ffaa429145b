"""LeastOutstandingCore: LeastOutstandingBalancer's algorithm (see ``_least.py``), compiled.

mypyc compiles this module with the rest of the balancer's per-request path; the
public class, with the argument types declared, is in ``_least.py``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from mypy_extensions import mypyc_attr

from distsys.balancer._base import Balancer, Node
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.hashring import Key
from distsys.registry import Instance

__all__ = ["LeastOutstandingCore"]

_CHOICES_ACCEPTED = "None (exact minimum over all instances) or an int >= 2 (sampled)"


@mypyc_attr(allow_interpreted_subclasses=True)  # LeastOutstandingBalancer, the public class
class LeastOutstandingCore(Balancer):
    """LeastOutstandingBalancer's algorithm, compiled by mypyc.

    Its arguments are typed ``object``: see ``Balancer.__init__``.
    """

    name = "least_outstanding"

    def __init__(
        self,
        instances: Iterable[Instance] = (),
        *,
        choices: object = None,
        service: object = None,
        clock: object = None,
        rng: object = None,
        panic_threshold: object = 0.0,
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
