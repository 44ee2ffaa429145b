"""RandomBalancer: weighted random choice, O(log n) by bisecting cumulative weights."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Iterable
from itertools import accumulate
from random import Random

from distsys.balancer._base import Balancer, Node
from distsys.clock import Clock
from distsys.hashring import Key
from distsys.registry import Instance

__all__ = ["RandomBalancer"]


class RandomBalancer(Balancer):
    """Weighted random: each pick is independent, instance ``i`` chosen with ``w_i / W``.

    Stateless between picks, so many uncoordinated clients together spread load evenly
    without any shared counter; but with few requests the spread is lumpier than round
    robin's. Equal weights take one ``rng.random()`` per pick; unequal ones add a bisect
    over the cumulative weights (O(log n)). A pick with ``exclude`` draws among the
    remaining instances with the same weights (O(n)).

    Thread-safe (see :class:`Balancer`).
    """

    name = "random"

    def __init__(
        self,
        instances: Iterable[Instance] = (),
        *,
        service: str | None = None,
        clock: Clock | None = None,
        rng: Random | None = None,
        panic_threshold: float = 0.0,
    ) -> None:
        self._uniform = True
        self._cumulative: list[int] = []
        super().__init__(
            instances, service=service, clock=clock, rng=rng, panic_threshold=panic_threshold
        )

    def _rebuild(self) -> None:
        nodes = self._candidates
        self._uniform = len({node.weight for node in nodes}) <= 1
        self._cumulative = list(accumulate(node.weight for node in nodes))

    def _choose(self, key: Key | None, exclude: Collection[str], now: float) -> Node | None:
        nodes = self._candidates
        if exclude:
            nodes = [node for node in nodes if node.id not in exclude]
            if not nodes:
                return None
            cumulative = list(accumulate(node.weight for node in nodes))
        elif not nodes:
            return None
        elif self._uniform:
            return nodes[int(self._random() * len(nodes))]
        else:
            cumulative = self._cumulative
        i = bisect_right(cumulative, self._random() * cumulative[-1])
        return nodes[i] if i < len(nodes) else nodes[-1]  # a product that rounded up
