"""RoundRobinBalancer: nginx's smooth weighted round robin, O(1) per pick.

nginx's algorithm (``ngx_http_upstream_get_peer``): every pick, each candidate's
running weight grows by its weight; the largest (the first among equals) is chosen and
loses the total weight. Over ``W = sum(weights)`` picks each instance is chosen exactly
``weight`` times, interleaved as evenly as possible (weights 5, 1, 1 give
``a a b a c a a`` rather than ``a a a a a b c``), and the running weights are back
to zero: the sequence is periodic with period ``W``. So when the cycle is short (after
dividing the weights by their greatest common divisor) it is computed once per change
of the candidates and a pick is one list index; otherwise each pick runs the O(n) pass.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from random import Random
from typing import Final

from distsys.balancer._base import Balancer, Node
from distsys.clock import Clock
from distsys.hashring import Key
from distsys.registry import Instance

__all__ = ["RoundRobinBalancer", "smooth_cycle"]

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


class RoundRobinBalancer(Balancer):
    """Smooth weighted round robin (nginx): deterministic, honours ``Instance.weight``.

    Over any ``W`` consecutive picks without exclusions or changes (``W`` the sum of the
    eligible instances' weights divided by their greatest common divisor), each instance
    is picked exactly ``weight / gcd`` times, spread as evenly as the weights allow;
    equal weights give plain round robin in id order. A pick costs O(1) when the cycle
    is short enough to precompute (``instances x W <= 32768``), O(n) otherwise.

    The cycle starts at a position drawn from ``rng`` once, so a fleet of clients does
    not start on the same instance (as gRPC's round_robin does); with a seeded ``rng``
    the sequence is fully repeatable. When the candidates change (an update, an
    ejection) the cycle is recomputed and continues from the same position. A pick with
    ``exclude`` takes the next entry of the cycle not excluded.

    Thread-safe (see :class:`Balancer`).
    """

    name = "round_robin"

    def __init__(
        self,
        instances: Iterable[Instance] = (),
        *,
        service: str | None = None,
        clock: Clock | None = None,
        rng: Random | None = None,
        panic_threshold: float = 0.0,
    ) -> None:
        self._cycle: list[Node] | None = []  # None: too long to precompute, run the pass
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
        if total * len(nodes) > CYCLE_BUDGET:
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
