"""ConsistentHashCore: ConsistentHashBalancer's algorithm (explained in ``_hash.py``), compiled.

mypyc compiles this module with the rest of the balancer's per-request path; the
public class, with the argument types declared, is in ``_hash.py``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from mypy_extensions import mypyc_attr

from distsys.balancer._base import Balancer, Node
from distsys.errors import InvalidArgumentError
from distsys.hashring import BoundedLoadBalancer, HashRing, Key
from distsys.registry import Instance

__all__ = ["ConsistentHashCore"]

_KEY_ACCEPTED = "a request key (str, bytes or int): consistent_hash places requests by key"


@mypyc_attr(allow_interpreted_subclasses=True)  # ConsistentHashBalancer, the public class
class ConsistentHashCore(Balancer):
    """ConsistentHashBalancer's algorithm, compiled by mypyc.

    Its arguments are typed ``object``: see ``Balancer.__init__``.
    """

    name = "consistent_hash"

    def __init__(
        self,
        instances: Iterable[Instance] = (),
        *,
        factor: Any = 1.25,
        vnodes: Any = 160,
        service: object = None,
        clock: object = None,
        rng: object = None,
        panic_threshold: object = 0.0,
    ) -> None:
        self._ring = HashRing(vnodes=vnodes)
        self._bounded = BoundedLoadBalancer(self._ring, factor=factor)
        self._by_id: dict[str, Node] = {}
        super().__init__(
            instances, service=service, clock=clock, rng=rng, panic_threshold=panic_threshold
        )

    def _rebuild(self) -> None:
        ring = self._ring
        wanted = {node.id: node.weight for node in self._candidates}
        for name in ring.nodes:
            if name not in wanted:
                ring.remove(name)
        for name, weight in wanted.items():
            if name not in ring:
                ring.add(name, weight)
            elif ring.weight(name) != weight:
                ring.set_weight(name, weight)
        self._by_id = {node.id: node for node in self._candidates}

    def _choose(self, key: Key | None, exclude: Collection[str], now: float) -> Node | None:
        if key is None:
            raise InvalidArgumentError("key", None, _KEY_ACCEPTED)
        if not self._by_id:
            return None
        if exclude:
            return self._choose_excluding(key, exclude)
        return self._by_id[self._bounded.acquire(key)]

    def _choose_excluding(self, key: Key, exclude: Collection[str]) -> Node | None:
        ring, bounded = self._ring, self._bounded
        allowed = [name for name in ring.get_n(key, len(ring)) if name not in exclude]
        if not allowed:
            return None
        for name in allowed:
            if bounded.load(name) < bounded.capacity(name):
                # Point 0 of a node sits at hash_key(f"{name}#0") (the ring's documented
                # placement), so the walk starts on that node, which has room.
                placed = bounded.acquire(f"{name}#0")
                if placed == name:
                    return self._by_id[name]
                bounded.release(placed)  # the point is shadowed (a 2**-64 event)
                break
        # Every allowed instance is at its bound: place on a ring without the excluded
        # ones, whose capacities then cover the requests in flight.
        removed = [(name, ring.weight(name)) for name in ring.nodes if name in exclude]
        for name, _ in removed:
            ring.remove(name)
        try:
            return self._by_id[bounded.acquire(key)]
        finally:
            for name, weight in removed:
                ring.add(name, weight)

    def _record(self, node: Node, start: float, now: float, error: bool | None) -> None:
        self._bounded.release(node.id)
