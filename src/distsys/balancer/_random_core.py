"""RandomCore: RandomBalancer's algorithm (explained in ``_random.py``), compiled.

mypyc compiles this module with the rest of the balancer's per-request path; the
public class, with the argument types declared, is in ``_random.py``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Iterable
from itertools import accumulate

from mypy_extensions import mypyc_attr

from distsys.balancer._base import Balancer, Node
from distsys.hashring import Key
from distsys.registry import Instance

__all__ = ["RandomCore"]


@mypyc_attr(allow_interpreted_subclasses=True)  # RandomBalancer, the public class
class RandomCore(Balancer):
    """RandomBalancer's algorithm, compiled by mypyc.

    Its arguments are typed ``object``: see ``Balancer.__init__``.
    """

    name = "random"

    def __init__(
        self,
        instances: Iterable[Instance] = (),
        *,
        service: object = None,
        clock: object = None,
        rng: object = None,
        panic_threshold: object = 0.0,
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
