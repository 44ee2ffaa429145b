"""HashRing: consistent hashing with weighted virtual nodes and replica walks.

Placement
---------
Every node owns ``max(1, floor(vnodes * weight + 0.5))`` points on a ring of 64-bit
positions (see :mod:`distsys.hashring._hashing` for the hash and encodings). A key
belongs to the first point at or after its hash, wrapping past the top of the ring to
the lowest point. Two virtual nodes that land on the same position (with XXH3-64 and
thousands of points this is astronomically rare, but it must still be decided the same
way everywhere) go to the node whose name sorts first; the other one is *shadowed* and
comes back if the winner leaves.

How reads stay lock-free
------------------------
The lookup table is an immutable snapshot held in one attribute, ``_state``: the sorted
points, a parallel list of owners with the first owner repeated at the end (so a key
past the last point wraps without a modulo), and the node-to-weight mapping. Writers,
serialised by a lock, build a new snapshot and publish it with one assignment. A reader
loads ``_state`` once and works on that snapshot only, so it sees the ring wholly
before or wholly after any change, and never takes a lock.
"""

from __future__ import annotations

import math
import numbers
import threading
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

from xxhash import xxh3_64_intdigest

from distsys.errors import ArgumentTypeError, EmptyRingError, InvalidArgumentError
from distsys.hashring._hashing import Key, hash_key, node_name, vnode_points

__all__ = ["HashRing", "HashRingStatistics"]

RING_SIZE: Final = 1 << 64
MAX_POINTS_PER_NODE: Final = 1 << 20
DEFAULT_VNODES: Final = 160

# (sorted points, owners with the first repeated at the end, node -> weight); never mutated
State: TypeAlias = tuple[list[int], list[str], dict[str, float]]
Entry: TypeAlias = tuple[int, str]  # (point, node), shadowed points included


@dataclass(frozen=True, slots=True)
class HashRingStatistics:
    """A snapshot of a HashRing's shape and balance.

    ``max_share_ratio`` and ``min_share_ratio`` compare the largest and smallest share of
    the hash space a node owns with its fair share (its weight over the total weight):
    1.0 is perfect balance. Both are 0.0 for an empty ring.
    """

    nodes: int
    points: int
    shadowed_points: int
    vnodes: int
    total_weight: float
    max_share_ratio: float
    min_share_ratio: float


def point_count(weight: float, vnodes: int) -> int:
    """Return how many ring points a node of ``weight`` gets: round half up, at least 1."""
    return max(1, math.floor(vnodes * weight + 0.5))


def check_vnodes(vnodes: object) -> int:
    """Return ``vnodes`` if it is an int in ``[1, MAX_POINTS_PER_NODE]``."""
    accepted = f"an int from 1 to {MAX_POINTS_PER_NODE}"
    if isinstance(vnodes, bool) or not isinstance(vnodes, int):
        raise ArgumentTypeError("vnodes", vnodes, accepted)
    if not 1 <= vnodes <= MAX_POINTS_PER_NODE:
        raise InvalidArgumentError("vnodes", vnodes, accepted)
    return vnodes


def check_weight(weight: object, vnodes: int) -> float:
    """Return ``weight`` as a float if it is a finite number > 0 of a sane size."""
    accepted = "a finite number > 0 (fractions allowed: a node gets round(vnodes * weight))"
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
        raise ArgumentTypeError("weight", weight, accepted)
    value = float(weight)
    if not (value > 0 and math.isfinite(value)):
        raise InvalidArgumentError("weight", weight, accepted)
    if vnodes * value > MAX_POINTS_PER_NODE:
        limit = MAX_POINTS_PER_NODE / vnodes
        raise InvalidArgumentError(
            "weight", weight, f"a number > 0 and <= {limit:g} at vnodes={vnodes}"
        )
    return value


def on_the_ring(weights: Mapping[str, float]) -> str:
    """Describe what a ``node`` argument may name: the nodes on the ring, a few shown."""
    if not weights:
        return "a node on the ring (the ring is empty)"
    names = sorted(weights)
    shown = ", ".join(repr(n) for n in names[:5])
    more = f", and {len(names) - 5} more" if len(names) > 5 else ""
    return f"a node on the ring: {shown}{more}"


def _shares(state: State) -> dict[str, float]:
    points, owners, weights = state
    owned = dict.fromkeys(weights, 0)
    if points:
        previous = points[-1] - RING_SIZE  # the lowest point also owns the wrapped arc
        for point, node in zip(points, owners, strict=False):  # owners has one more
            owned[node] += point - previous
            previous = point
    return {node: size / RING_SIZE for node, size in owned.items()}


class HashRing:
    """A consistent-hash ring of named nodes with weighted virtual nodes.

    ``get(key)`` names the node that owns a key; ``get_n(key, n)`` names ``n`` distinct
    nodes in ring order (the owner first) for replicas. Adding a node moves keys only to
    it; removing one moves only its keys. Placement depends on nothing but the node names,
    weights, ``vnodes`` and the key, so every process and version agrees (see
    ``docs/hashring.md`` for the exact scheme).

    Thread-safe. Lookups never lock: each one reads one immutable snapshot, so it sees
    the ring wholly before or wholly after a concurrent change. Changes (``add``,
    ``remove``, ``set_weight``) are serialised by an internal lock and cost time
    proportional to the number of points. Safe from any thread and any event loop.

    Args:
        nodes: initial nodes, as names (weight 1 each) or a mapping of name to weight.
        vnodes: virtual nodes per unit of weight (default 160).

    Raises:
        InvalidArgumentError: ``vnodes`` out of range, a weight not > 0, a duplicate node.
        ArgumentTypeError: a node that is not a str, a weight that is not a number.
    """

    __slots__ = ("_entries", "_lock", "_state", "_vnodes")

    def __init__(
        self,
        nodes: Iterable[str] | Mapping[str, float] | None = None,
        *,
        vnodes: int = DEFAULT_VNODES,
    ) -> None:
        self._vnodes = check_vnodes(vnodes)
        self._lock = threading.Lock()
        weights = self._initial_weights(nodes)
        entries = sorted(
            (point, node)
            for node, weight in weights.items()
            for point in vnode_points(node, point_count(weight, self._vnodes))
        )
        self._publish(entries, weights)

    def _initial_weights(self, nodes: object) -> dict[str, float]:
        if nodes is None:
            return {}
        if isinstance(nodes, str | bytes) or not isinstance(nodes, Iterable):
            raise ArgumentTypeError(
                "nodes", nodes, "an iterable of node names or a mapping of name to weight"
            )
        if isinstance(nodes, Mapping):
            pairs: Iterable[tuple[object, object]] = nodes.items()
        else:
            pairs = ((node, 1) for node in nodes)
        weights: dict[str, float] = {}
        for node, weight in pairs:
            name = node_name(node)
            if name in weights:
                raise InvalidArgumentError("nodes", name, "distinct node names")
            weights[name] = check_weight(weight, self._vnodes)
        return weights

    def _publish(self, entries: list[Entry], weights: dict[str, float]) -> None:
        points: list[int] = []
        owners: list[str] = []
        last = -1
        for point, node in entries:
            if point != last:  # on a tie the smaller name, sorted first, keeps the point
                points.append(point)
                owners.append(node)
                last = point
        if owners:
            owners.append(owners[0])
        self._entries = entries
        self._state = (points, owners, weights)

    def _snapshot(self) -> State:
        """Return the current immutable lookup table (for BoundedLoadBalancer)."""
        return self._state

    # -- changes ----------------------------------------------------------------------

    def add(self, node: str, weight: float = 1) -> None:
        """Add ``node`` with ``max(1, floor(vnodes * weight + 0.5))`` virtual nodes.

        Args:
            node: a non-empty name, typically an instance id or ``host:port``.
            weight: a finite number > 0; fractions are allowed.

        Raises:
            InvalidArgumentError: ``node`` is already on the ring (change its weight
                with :meth:`set_weight`), or ``weight`` is not > 0.
            ArgumentTypeError: ``node`` is not a str or ``weight`` not a number.
        """
        name = node_name(node)
        value = check_weight(weight, self._vnodes)
        new = sorted(
            (point, name) for point in vnode_points(name, point_count(value, self._vnodes))
        )
        with self._lock:
            weights = self._state[2]
            if name in weights:
                raise InvalidArgumentError(
                    "node", name, "a node not on the ring yet", detail="use set_weight()"
                )
            self._publish(sorted(self._entries + new), {**weights, name: value})

    def remove(self, node: str) -> None:
        """Remove ``node``; only the keys it owned move (each to the next node clockwise).

        Raises:
            InvalidArgumentError: ``node`` is not on the ring.
        """
        with self._lock:
            weights = self._state[2]
            if not isinstance(node, str) or node not in weights:
                raise InvalidArgumentError("node", node, on_the_ring(weights))
            entries = [entry for entry in self._entries if entry[1] != node]
            self._publish(entries, {n: w for n, w in weights.items() if n != node})

    def set_weight(self, node: str, weight: float) -> None:
        """Change the weight of ``node`` in one step; only its keys move, to or from it.

        The first points of a node do not depend on its weight, so a higher weight adds
        points and a lower one removes some: the rest of the ring is untouched.

        Raises:
            InvalidArgumentError: ``node`` is not on the ring or ``weight`` is not > 0.
            ArgumentTypeError: ``weight`` is not a number.
        """
        value = check_weight(weight, self._vnodes)
        with self._lock:
            weights = self._state[2]
            if not isinstance(node, str) or node not in weights:
                raise InvalidArgumentError("node", node, on_the_ring(weights))
            kept = [entry for entry in self._entries if entry[1] != node]
            new = [(point, node) for point in vnode_points(node, point_count(value, self._vnodes))]
            self._publish(sorted(kept + new), {**weights, node: value})

    # -- lookups ----------------------------------------------------------------------

    def get(self, key: Key) -> str:
        """Return the node that owns ``key``.

        Args:
            key: a str, a bytes-like object or an int; see :func:`hash_key`.

        Raises:
            EmptyRingError: the ring has no nodes.
            ArgumentTypeError: ``key`` is of another type.
        """
        points, owners, _ = self._state
        if type(key) is str:
            try:
                point = xxh3_64_intdigest(key.encode())
            except UnicodeEncodeError:
                point = hash_key(key)  # raises, naming the key
        else:
            point = hash_key(key)
        try:
            return owners[bisect_left(points, point)]
        except IndexError:
            raise EmptyRingError() from None

    def get_n(self, key: Key, n: int) -> list[str]:
        """Return up to ``n`` distinct nodes for ``key``, in ring order from its position.

        The first is ``get(key)``; the others are the next distinct nodes clockwise, the
        usual choice of replicas. When the ring has fewer than ``n`` nodes, all of them
        are returned (so a replica count above the node count degrades, it does not fail).

        Raises:
            EmptyRingError: the ring has no nodes.
            InvalidArgumentError: ``n`` is less than 1.
            ArgumentTypeError: ``n`` is not an int, or ``key`` is of another type.
        """
        if isinstance(n, bool) or not isinstance(n, int):
            raise ArgumentTypeError("n", n, "an int >= 1")
        if n < 1:
            raise InvalidArgumentError("n", n, "an int >= 1")
        points, owners, weights = self._state
        start = bisect_left(points, hash_key(key))
        if not points:
            raise EmptyRingError()
        wanted = min(n, len(weights))
        size = len(points)
        chosen: list[str] = []
        for i in range(start, start + size):
            node = owners[i % size]
            if node not in chosen:  # a short list: cheaper than a set for replica counts
                chosen.append(node)
                if len(chosen) == wanted:
                    break
        return chosen

    # -- introspection ----------------------------------------------------------------

    @property
    def nodes(self) -> tuple[str, ...]:
        """The nodes on the ring, sorted by name."""
        return tuple(sorted(self._state[2]))

    @property
    def vnodes(self) -> int:
        """Virtual nodes per unit of weight."""
        return self._vnodes

    def weight(self, node: str) -> float:
        """Return the weight of ``node``.

        Raises:
            InvalidArgumentError: ``node`` is not on the ring.
        """
        weights = self._state[2]
        if not isinstance(node, str) or node not in weights:
            raise InvalidArgumentError("node", node, on_the_ring(weights))
        return weights[node]

    def shares(self) -> dict[str, float]:
        """Return the fraction of the 64-bit hash space each node owns (they sum to 1).

        With uniformly hashed keys this is the expected fraction of keys per node.
        """
        return _shares(self._state)

    def statistics(self) -> HashRingStatistics:
        """Return the ring's size and how evenly the hash space is split."""
        state = self._state
        points, _, weights = state
        total = sum(weights.values())
        ratios = [share / (weights[node] / total) for node, share in _shares(state).items()]
        placed = sum(point_count(weight, self._vnodes) for weight in weights.values())
        return HashRingStatistics(
            nodes=len(weights),
            points=len(points),
            shadowed_points=placed - len(points),
            vnodes=self._vnodes,
            total_weight=total,
            max_share_ratio=max(ratios, default=0.0),
            min_share_ratio=min(ratios, default=0.0),
        )

    def __len__(self) -> int:
        return len(self._state[2])

    def __contains__(self, node: object) -> bool:
        return isinstance(node, str) and node in self._state[2]

    def __repr__(self) -> str:
        points, _, weights = self._state
        return f"HashRing(nodes={len(weights)}, points={len(points)}, vnodes={self._vnodes})"
