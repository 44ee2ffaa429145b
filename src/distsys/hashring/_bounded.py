"""BoundedLoadBalancer: consistent hashing with bounded loads.

Mirrokni, Thorup and Zadimoghaddam ("Consistent Hashing with Bounded Loads", 2017) keep
consistent hashing's affinity while capping how far any node can run ahead of the
average; Envoy's ``hash_balance_factor`` and HAProxy's ``hash-balance-factor`` use it.

The rule
--------
With ``T`` the number of requests in flight *counting the one being placed*, a node of
weight ``w`` out of a total weight ``W`` on the ring has the capacity::

    capacity(T) = ceil(c * T * w / W)        equal weights: ceil(c * T / n)

A request goes to the first node clockwise from its key whose current load is below its
capacity, so right after the assignment that node's load is at most ``capacity(T)``.
Such a node always exists when ``c >= 1``: were every node full, their loads would add
up to at least ``sum(ceil(c * T * w / W)) >= c * T >= T``, more than the ``T - 1``
requests already in flight. Releases only lower loads, so with a fixed ring no node
ever holds more than ``ceil(c * T_max * w / W)``, ``T_max`` being the most requests in
flight at any moment so far.

The comparison ``load < c * T * w / W`` is done in exact rational arithmetic, with ``c``
and the weights read as the decimal numbers they print as (``1.1`` is 11/10, not the
binary float just above it), so a bound that is an integer, such as
``1.1 * 10 / 11 == 1``, is never rounded up to the next one.
"""

from __future__ import annotations

import math
import numbers
import threading
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

from distsys.errors import ArgumentTypeError, EmptyRingError, InvalidArgumentError
from distsys.hashring._hashing import Key, hash_key
from distsys.hashring._ring import HashRing, on_the_ring

__all__ = ["BoundedLoadBalancer", "BoundedLoadStatistics"]

DEFAULT_FACTOR: Final = 1.25
_FACTOR_ACCEPTED: Final = (
    "a finite number >= 1 (1 is perfect balance, larger trades balance for affinity)"
)


@dataclass(frozen=True, slots=True)
class BoundedLoadStatistics:
    """A snapshot of a BoundedLoadBalancer.

    ``in_flight`` is the number of acquired, unreleased requests; ``max_load`` the
    largest number any one node holds; ``forwarded`` how many acquisitions went past
    the key's own node because it was full (the affinity given up for balance).
    """

    factor: float
    nodes: int
    in_flight: int
    max_load: int
    acquired: int
    released: int
    forwarded: int


def decimal(value: float) -> Fraction:
    """Return the exact value of the shortest decimal that prints as ``value``."""
    return Fraction(repr(float(value)))


def check_factor(factor: object) -> float:
    """Return ``factor`` as a float if it is a finite number >= 1."""
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real):
        raise ArgumentTypeError("factor", factor, _FACTOR_ACCEPTED)
    value = float(factor)
    if not (value >= 1 and math.isfinite(value)):
        raise InvalidArgumentError("factor", factor, _FACTOR_ACCEPTED)
    return value


class BoundedLoadBalancer:
    """Assign keys to the nodes of a HashRing, no node above ``factor`` times its share.

    ``acquire(key)`` returns the node for one request and counts it in flight there;
    ``release(node)`` ends it; ``with balancer.hold(key) as node:`` does both. A key
    goes to its own ring node unless that node is at capacity (see the module docs for
    the exact bound), in which case it walks clockwise to the next node with room, so
    hot keys spill over to neighbours instead of overloading one node. The balancer
    follows the ring: nodes added to or removed from it take part from the next call.

    Thread-safe: ``acquire`` and ``release`` take a short internal lock and never wait
    for anything else, so they are also safe to call from asyncio tasks.

    Args:
        ring: the ring to place keys on; it may keep changing.
        factor: ``c``, the allowed load over the average; at least 1 (default 1.25).

    Raises:
        InvalidArgumentError: ``factor`` is below 1 or not finite.
        ArgumentTypeError: ``ring`` is not a HashRing or ``factor`` not a number.
    """

    __slots__ = (
        "_acquired",
        "_factor",
        "_forwarded",
        "_limits",
        "_limits_for",
        "_loads",
        "_lock",
        "_released",
        "_ring",
        "_total",
    )

    def __init__(self, ring: HashRing, *, factor: float = DEFAULT_FACTOR) -> None:
        if not isinstance(ring, HashRing):
            raise ArgumentTypeError("ring", ring, "a distsys.hashring.HashRing")
        self._ring = ring
        self._factor = check_factor(factor)
        self._lock = threading.Lock()
        self._loads: dict[str, int] = {}  # only nodes holding requests
        self._total = 0
        self._acquired = 0
        self._released = 0
        self._forwarded = 0
        self._limits_for: Mapping[str, float] | None = None
        self._limits: dict[str, tuple[int, int]] = {}

    @property
    def ring(self) -> HashRing:
        """The ring keys are placed on."""
        return self._ring

    @property
    def factor(self) -> float:
        """``c``: how far above its fair share a node's load may go."""
        return self._factor

    def _limits_of(self, weights: Mapping[str, float]) -> dict[str, tuple[int, int]]:
        # node -> (p, q) with c * w / W == p / q; cached per ring snapshot
        if weights is not self._limits_for:
            total = sum(decimal(weight) for weight in weights.values())
            factor = decimal(self._factor)
            limits = {}
            for node, weight in weights.items():
                share = factor * decimal(weight) / total
                limits[node] = (share.numerator, share.denominator)
            self._limits, self._limits_for = limits, weights
        return self._limits

    def acquire(self, key: Key) -> str:
        """Return the node for a request with ``key`` and count the request there.

        Every call must be matched by one :meth:`release` of the returned node.

        Raises:
            EmptyRingError: the ring has no nodes.
            ArgumentTypeError: ``key`` is of another type than the ring accepts.
        """
        point = hash_key(key)
        with self._lock:
            points, owners, weights = self._ring._snapshot()
            if not points:
                raise EmptyRingError()
            limits = self._limits_of(weights)
            loads = self._loads
            total = self._total + 1
            size = len(points)
            start = bisect_left(points, point)
            node = owners[start]
            for i in range(start, start + size):
                node = owners[i % size]
                numerator, denominator = limits[node]
                if loads.get(node, 0) * denominator < numerator * total:
                    break
            loads[node] = loads.get(node, 0) + 1
            self._total = total
            self._acquired += 1
            if node != owners[start]:
                self._forwarded += 1
            return node

    def release(self, node: str) -> None:
        """End one request that :meth:`acquire` placed on ``node``.

        Raises:
            InvalidArgumentError: ``node`` holds no request (a release without an
                acquire, or one too many); nothing is changed.
        """
        with self._lock:
            load = self._loads.get(node, 0) if isinstance(node, str) else 0
            if load == 0:
                raise InvalidArgumentError(
                    "node", node, "a node holding a request from acquire() not yet released"
                )
            if load == 1:
                del self._loads[node]
            else:
                self._loads[node] = load - 1
            self._total -= 1
            self._released += 1

    @contextmanager
    def hold(self, key: Key) -> Iterator[str]:
        """Acquire a node for ``key`` for the duration of a ``with`` block."""
        node = self.acquire(key)
        try:
            yield node
        finally:
            self.release(node)

    def load(self, node: str) -> int:
        """Return the number of requests ``node`` holds (0 for a node unknown here)."""
        return self._loads.get(node, 0) if isinstance(node, str) else 0

    def loads(self) -> dict[str, int]:
        """Return the load of every node on the ring, and of any removed node still busy."""
        with self._lock:
            weights = self._ring._snapshot()[2]
            return {**dict.fromkeys(weights, 0), **self._loads}

    def capacity(self, node: str) -> int:
        """Return the most requests ``node`` may hold once the next request is placed.

        That is ``ceil(c * (in_flight + 1) * w / W)`` for the ring as it is now.

        Raises:
            InvalidArgumentError: ``node`` is not on the ring.
        """
        with self._lock:
            weights = self._ring._snapshot()[2]
            if not isinstance(node, str) or node not in weights:
                raise InvalidArgumentError("node", node, on_the_ring(weights))
            numerator, denominator = self._limits_of(weights)[node]
            return -(-numerator * (self._total + 1) // denominator)

    def statistics(self) -> BoundedLoadStatistics:
        """Return the loads and counters of this balancer."""
        with self._lock:
            return BoundedLoadStatistics(
                factor=self._factor,
                nodes=len(self._ring._snapshot()[2]),
                in_flight=self._total,
                max_load=max(self._loads.values(), default=0),
                acquired=self._acquired,
                released=self._released,
                forwarded=self._forwarded,
            )
