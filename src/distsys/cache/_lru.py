"""LRUCache: a bounded mapping that drops the least recently used item first.

How it stays O(1)
-----------------
``_data`` holds the items in a hash table whose entries also sit on a doubly linked list,
running from the least to the most recently used key: the C ``LRUMap`` of ``_clru.c``
when the extension is built (a dict of key -> node plus the list of nodes), else an
:class:`collections.OrderedDict`. A hit is a lookup plus a move to the tail; a miss that
stores is an insert at the tail plus, when full, a pop at the head.

Expiry is lazy
--------------
A cache that can expire items (a ``ttl``, or a ``put(..., ttl=)`` once) is *timed*: its
values are stored as ``(value, deadline)`` entries (``math.inf``: never), so a hit reads
the deadline from the entry it already holds. There is no second index: an expired item
is dropped when a lookup finds it, when it reaches the least recently used end and room
is needed (reported ``EXPIRED``, not ``CAPACITY``), or by ``expire()``, which scans.
A plain cache stores bare values; its first per-item TTL wraps them, once.

Hot paths built per cache
-------------------------
``get`` and ``put`` are made for the cache when it is built and stored as instance
attributes, which shadow the methods below (those stay, for documentation, for
``LRUCache.get(cache, ...)`` and for ``super()`` in subclasses, and call the same
paths): the C map's own ``lru_get`` / ``lru_put`` (:mod:`distsys.cache._native`), or
closures over the OrderedDict (:mod:`distsys.cache._hot`). Either way ``put`` runs
inline for bare values and for ``(value, deadline)`` pairs: a lookup, an insert and at
most one eviction. Weights and ``on_evict`` make a cache ``GENERAL``: ``LRUCore._put``
runs the same algorithm with their bookkeeping. A subclass that overrides ``get`` or
``put`` keeps its override: only methods the subclass inherits from here are shadowed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar, overload

from distsys.cache._core import MISSING, Event, LRUCore
from distsys.cache._statistics import CacheStatistics, EvictionReason
from distsys.cache._validate import check_hashable
from distsys.clock import Clock

__all__ = ["MISSING", "LRUCache"]

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")
_EXPIRED = EvictionReason.EXPIRED


class LRUCache(LRUCore[K, V]):
    """A bounded mapping that evicts the least recently used item, with optional TTLs.

    ``get`` / ``[]`` make an item the most recently used; ``put`` / ``[]=`` store one,
    evicting from the least recently used end when full; both are O(1). Iteration runs
    from the least to the most recently used key. ``peek``, ``in``, ``pop`` and ``del``
    leave the order alone.

    **Expiry.** An item stored with a time to live (``ttl=`` here, or ``put(..., ttl=)``)
    expires that many seconds after its last ``put``; reads do not extend it. An expired
    item is never returned. It is dropped lazily: when a lookup finds it, when it reaches
    the least recently used end and room is needed, or by :meth:`expire`. Until then it
    holds its slot, and ``statistics().size`` counts it; ``len()`` and iteration count
    only live items, so with TTLs they take O(n).

    **Weights.** With ``getsizeof``, ``maxsize`` bounds the total of
    ``getsizeof(value)`` instead of the item count, and a value heavier than ``maxsize``
    is refused (nothing changes).

    **Evictions.** ``on_evict(key, value, reason)`` hears about every item the cache lets
    go of on its own (:class:`EvictionReason`: ``CAPACITY``, ``EXPIRED``, ``REPLACED``),
    after the cache's state is complete, so it may use the cache. ``pop``, ``del`` and
    ``clear`` are the caller's decisions and do not call it. An exception it raises
    propagates to the caller of the operation, which has taken effect.

    Not thread-safe: use one instance from one thread, or from the tasks of one event
    loop (no method awaits, so tasks never interleave inside one). To share a cache
    between threads use :class:`ThreadSafeLRUCache`.

    Args:
        maxsize: the capacity: an int >= 1, in items, or in total weight with
            ``getsizeof``.
        ttl: seconds an item lives after its ``put``; None (or ``math.inf``) for no
            expiry. ``put(..., ttl=)`` overrides it per item.
        getsizeof: ``value -> int >= 0``, the weight of a value.
        on_evict: called as ``on_evict(key, value, reason)``.
        clock: time source for TTLs (default: the monotonic clock).

    Raises:
        InvalidArgumentError: an argument is out of range (``maxsize < 1``, ``ttl <= 0``).
        ArgumentTypeError: an argument is of the wrong kind.
    """

    # No __slots__ here: the instance __dict__ holds the hot paths that shadow get / put.

    def __init__(
        self,
        maxsize: int,
        *,
        ttl: float | None = None,
        getsizeof: Callable[[V], int] | None = None,
        on_evict: Callable[[K, V, EvictionReason], object] | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(maxsize, ttl=ttl, getsizeof=getsizeof, on_evict=on_evict, clock=clock)
        self._shadow(LRUCache, get=self._hot.get, put=self._hot.put)

    def _shadow(self, owner: type[LRUCache[Any, Any]], **paths: Callable[..., Any]) -> None:
        """Make ``paths`` instance attributes, except those a subclass of ``owner`` overrides.

        An instance attribute is found before the class's method, so ``cache.get`` is
        the closure itself: no bound method, no ``self``.
        """
        cls = type(self)
        vars(self).update(
            (name, path) for name, path in paths.items() if getattr(cls, name) is vars(owner)[name]
        )

    @property
    def maxsize(self) -> int:
        """The capacity, in items or (with ``getsizeof``) in total weight."""
        return self._maxsize

    @property
    def getsizeof(self) -> Callable[[V], int] | None:
        """The weight function, or None when ``maxsize`` counts items."""
        return self._getsizeof

    @property
    def ttl(self) -> float | None:
        """The default time to live in seconds, or None when items do not expire."""
        return self._ttl

    # -- lookups ---------------------------------------------------------------------

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: D) -> V | D: ...
    def get(self, key: K, default: Any = None) -> Any:
        """Return the live value for ``key`` and mark it most recently used, or ``default``.

        Raises:
            ArgumentTypeError: ``key`` is not hashable.
        """
        return self._hot.get(key, default)  # shadowed by the same closure: see _hot

    def __getitem__(self, key: K) -> V:
        """Return ``get(key)``; raise KeyError when there is no live item."""
        value = self.get(key, MISSING)
        if value is MISSING:
            raise KeyError(key)
        return value

    @overload
    def peek(self, key: K) -> V | None: ...
    @overload
    def peek(self, key: K, default: D) -> V | D: ...
    def peek(self, key: K, default: Any = None) -> Any:
        """Return the live value for ``key`` or ``default``; leave order and counts alone."""
        try:
            value = self._lookup(key, MISSING)
        except TypeError:
            check_hashable(key)
            raise
        if value is MISSING:
            return default
        if self._timed:
            if value[1] <= self._now():
                self._drop_expired(key)
                return default
            value = value[0]
        return value

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` has a live item (like :meth:`peek`, order is left alone)."""
        return self.peek(key, MISSING) is not MISSING  # type: ignore[arg-type]

    # -- updates ---------------------------------------------------------------------

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` as the most recently used item.

        When the cache is full, the least recently used item makes room (or several,
        by weight); an expired one goes as ``EXPIRED``, a live one as ``CAPACITY``.

        Args:
            key: a hashable key.
            value: the value; replacing a live one reports it as ``REPLACED``.
            ttl: this item's time to live in seconds (``math.inf``: never expires);
                None uses the cache's ``ttl``.

        Raises:
            ArgumentTypeError: ``key`` is not hashable.
            InvalidArgumentError: ``ttl`` is not > 0, or the value weighs more than
                ``maxsize`` (field ``getsizeof(value)``); the cache is unchanged.
        """
        self._hot.put(key, value, ttl)  # shadowed by the same closure: see _hot

    def __setitem__(self, key: K, value: V) -> None:
        """Store ``value`` under ``key`` with the default TTL (``put(key, value)``)."""
        self.put(key, value)

    @overload
    def pop(self, key: K) -> V: ...
    @overload
    def pop(self, key: K, default: D) -> V | D: ...
    def pop(self, key: K, default: Any = MISSING) -> Any:
        """Remove the item for ``key`` and return its value (no ``on_evict`` call).

        Raises:
            KeyError: there is no live item and no ``default`` was given.
        """
        value = self.peek(key, MISSING)
        if value is MISSING:
            if default is MISSING:
                raise KeyError(key)
            return default
        self._remove(key)
        return value

    def __delitem__(self, key: K) -> None:
        """Remove the item for ``key`` (no ``on_evict`` call); KeyError if none is live."""
        self.pop(key)

    def clear(self) -> None:
        """Remove every item (no ``on_evict`` calls); the counters keep counting."""
        self._data.clear()
        if self._weights is not None:
            self._weights.clear()
        self._weight = 0
        self._set_timed(self._ttl is not None)

    def expire(self) -> int:
        """Drop every item whose time to live has run out; return how many. O(n)."""
        if not self._timed:
            return 0
        now = self._now()
        due = [key for key, (_, deadline) in self._data.items() if deadline <= now]
        events: list[Event] | None = [] if self._on_evict is not None else None
        for key in due:
            value = self._remove(key)
            if events is not None:
                events.append((key, value, _EXPIRED))
        self._expirations += len(due)
        if events:
            self._notify(events)
        return len(due)

    # -- views -----------------------------------------------------------------------

    def __len__(self) -> int:
        """The number of live items (expired ones are dropped first: O(n) with TTLs)."""
        self.expire()
        return len(self._data)

    def items(self) -> list[tuple[K, V]]:
        """Return the live ``(key, value)`` pairs, least recently used first."""
        self.expire()
        if self._timed:
            return [(key, entry[0]) for key, entry in self._data.items()]
        return list(self._data.items())

    def __iter__(self) -> Iterator[K]:
        """Iterate over a snapshot of the live keys, least recently used first."""
        return iter([key for key, _ in self.items()])

    def statistics(self) -> CacheStatistics:
        """Return the counters and the size; the cache is not changed (nothing expires)."""
        size = len(self._data)
        hits, misses, evictions, expirations = self._hot.counts()
        return CacheStatistics(
            hits=hits,
            misses=misses,
            evictions=evictions + self._evictions,
            expirations=expirations + self._expirations,
            size=size,
            weight=self._weight if self._weights is not None else size,
            maxsize=self._maxsize,
        )

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"{type(self).__name__}(maxsize={stats.maxsize}, ttl={self._ttl}, "
            f"size={stats.size}, weight={stats.weight})"
        )
