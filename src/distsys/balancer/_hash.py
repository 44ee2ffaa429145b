"""ConsistentHashBalancer: request keys to instances on a hash ring, with bounded loads."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from random import Random

from distsys.balancer._base import Balancer, Node
from distsys.clock import Clock
from distsys.errors import InvalidArgumentError
from distsys.hashring import BoundedLoadBalancer, HashRing, Key
from distsys.registry import Instance

__all__ = ["ConsistentHashBalancer"]

_KEY_ACCEPTED = "a request key (str, bytes or int): consistent_hash places requests by key"


class ConsistentHashBalancer(Balancer):
    """Send each key to the same instance, while no instance holds too many requests.

    For cache affinity: ``pick(key=...)`` places the key on a :class:`HashRing` of the
    eligible instances (by id, weighted by ``Instance.weight``) and places the request
    with a :class:`BoundedLoadBalancer`: the key's own instance, unless it already holds
    ``ceil(factor * T * w / W)`` of the ``T`` requests in flight, in which case the next
    instance clockwise with room. So the same key goes to the same instance while loads
    are even, and a hot key spills over to neighbours instead of overloading one.

    The load is the number of outstanding picks: acquired on pick, released when the
    pick is finished (done, abandoned or collected). The ring changes only when the set
    of eligible instances or their weights change (an update, an ejection): then only
    the keys of the instances that came or went move.

    A pick with ``exclude`` walks the ring from the key to the first instance not
    excluded that has room; if every such instance is full (the room is on the excluded
    ones) the excluded instances are taken off the ring for the placement.

    Thread-safe (see :class:`Balancer`).

    Args:
        factor: the bounded-load factor ``c`` >= 1 (default 1.25; 1 is the tightest
            balance, larger keeps more affinity).
        vnodes: ring points per unit of weight (default 160).
    """

    name = "consistent_hash"

    def __init__(
        self,
        instances: Iterable[Instance] = (),
        *,
        factor: float = 1.25,
        vnodes: int = 160,
        service: str | None = None,
        clock: Clock | None = None,
        rng: Random | None = None,
        panic_threshold: float = 0.0,
    ) -> None:
        self._ring = HashRing(vnodes=vnodes)
        self._bounded = BoundedLoadBalancer(self._ring, factor=factor)
        self._by_id: dict[str, Node] = {}
        super().__init__(
            instances, service=service, clock=clock, rng=rng, panic_threshold=panic_threshold
        )

    @property
    def ring(self) -> HashRing:
        """The ring of eligible instance ids (read it; do not change it)."""
        return self._ring

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
