"""ConsistentHashBalancer: request keys to instances on a hash ring, with bounded loads.

The algorithm is in ``_hash_core``, compiled by mypyc with the rest of the balancer's
per-request path; this module is its public face, with the argument types declared.
"""

from __future__ import annotations

from collections.abc import Iterable
from random import Random

from distsys.balancer._hash_core import ConsistentHashCore
from distsys.clock import Clock
from distsys.hashring import HashRing
from distsys.registry import Instance

__all__ = ["ConsistentHashBalancer"]


class ConsistentHashBalancer(ConsistentHashCore):
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
        super().__init__(
            instances,
            factor=factor,
            vnodes=vnodes,
            service=service,
            clock=clock,
            rng=rng,
            panic_threshold=panic_threshold,
        )

    @property
    def ring(self) -> HashRing:
        """The ring of eligible instance ids (read it; do not change it)."""
        return self._ring
