"""RoundRobinCore: RoundRobinBalancer's algorithm (explained in ``_round_robin.py``), compiled.

mypyc compiles this module with the rest of the balancer's per-request path; the
public class, with the argument types declared, is in ``_round_robin.py``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from typing import Final

from mypy_extensions import mypyc_attr

from distsys.balancer._base import Balancer, Node
from distsys.hashring import Key
from distsys.registry import Instance

__all__ = ["RoundRobinCore", "smooth_cycle"]

CYCLE_BUDGET: Final = 1 << 15
"""Most steps (instances x cycle length) spent precomputing a cycle: a few ms at most."""


def smooth_cycle(weights: Sequence[int]) -> list[int]:
    """Return one period of nginx's smooth weighted round robin, as indices into ``weights``.

    Index ``i`` appears exactly ``weights[i]`` times among the ``sum(weights)`` entries.

    Args:
        weights: positive ints.
    """
    total = sum(weights)
    indices = range(len(weights))
    current = [0] * len(weights)
    cycle = []
    for _ in range(total):
        best = 0
        for i in indices:
            current[i] += weights[i]
            if current[i] > current[best]:
                best = i
        current[best] -= total
        cycle.append(best)
    return cycle


@mypyc_attr(allow_interpreted_subclasses=True)  # RoundRobinBalancer, the public class
class RoundRobinCore(Balancer):
    """RoundRobinBalancer's algorithm, compiled by mypyc.

    Its arguments are typed ``object``: see ``Balancer.__init__``.
    """

    name = "round_robin"

    def __init__(
        self,
        instances: Iterable[Instance] = (),
        *,
        service: object = None,
        clock: object = None,
        rng: object = None,
        panic_threshold: object = 0.0,
    ) -> None:
        self._cycle: list[Node] | None = []  # None: too long to precompute, run the pass
        self._cycle_budget = CYCLE_BUDGET  # per balancer: a compiled Final is not patchable
        self._weights: list[int] = []
        self._cursor = 0
        self._started = False
        super().__init__(
            instances, service=service, clock=clock, rng=rng, panic_threshold=panic_threshold
        )

    def _rebuild(self) -> None:
        nodes = self._candidates
        if not nodes:
            self._cycle, self._weights, self._cursor = [], [], 0
            return
        divisor = math.gcd(*(node.weight for node in nodes))
        weights = [node.weight // divisor for node in nodes]
        total = sum(weights)
        self._weights = weights
        for node in nodes:
            node.current = 0
        if total * len(nodes) > self._cycle_budget:
            self._cycle = None
            return
        self._cycle = [nodes[i] for i in smooth_cycle(weights)]
        if self._started:
            self._cursor %= total
        else:
            self._cursor = int(self._random() * total)
            self._started = True

    def _choose(self, key: Key | None, exclude: Collection[str], now: float) -> Node | None:
        cycle = self._cycle
        if cycle and not exclude:
            i = self._cursor
            node = cycle[i]
            i += 1
            self._cursor = i if i < len(cycle) else 0
            return node
        if cycle is None:
            return self._smooth_pass(exclude)
        size = len(cycle)
        start = self._cursor
        for step in range(size):
            node = cycle[(start + step) % size]
            if node.id not in exclude:
                self._cursor = (start + step + 1) % size
                return node
        return None

    def _smooth_pass(self, exclude: Collection[str]) -> Node | None:
        # One step of nginx's algorithm; excluded instances sit the step out, as nginx
        # skips the peers a request has already tried.
        best: Node | None = None
        total = 0
        for node, weight in zip(self._candidates, self._weights, strict=True):
            if exclude and node.id in exclude:
                continue
            node.current += weight
            total += weight
            if best is None or node.current > best.current:
                best = node
        if best is not None:
            best.current -= total
        return best
