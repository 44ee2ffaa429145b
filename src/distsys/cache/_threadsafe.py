"""ThreadSafeLRUCache: the same cache with every operation under one lock.

Why a second class instead of a lock in :class:`LRUCache`: the plain cache's operations
are compound (a lookup, then ``move_to_end``; an insert, then an eviction, then the
weight bookkeeping), so threads interleaving inside them lose counts or fail half-way.
A lock makes each operation atomic but, measured on the benchmark trace
(``benchmarks/bench_cache.py``), leaves a fifth to a third of the single-threaded
throughput (about half on the pure-Python build): a lock round trip costs more than a
whole C ``get``. Code that stays on one thread or one event loop should not pay for it.

The lock is reentrant because ``on_evict`` runs while it is held and may use the cache.
Methods not overridden here (``[]``, ``in``, ``del``, iteration) are built on the
overridden ones and take the lock through them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar, overload

from distsys.cache._lru import MISSING, LRUCache
from distsys.cache._statistics import CacheStatistics, EvictionReason
from distsys.clock import Clock

__all__ = ["ThreadSafeLRUCache"]

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")


class ThreadSafeLRUCache(LRUCache[K, V]):
    """An :class:`LRUCache` that any number of threads (and event loops) may share.

    Same constructor, API and semantics as :class:`LRUCache`. Thread-safe: every
    operation runs under one reentrant lock, so it is atomic and the counters,
    weights and recency order stay exact under any interleaving. The cost is the lock:
    a fifth to a third of the single-threaded throughput of :class:`LRUCache` on the
    benchmark trace (about half on the pure-Python build; see ``docs/cache.md``), and
    threads serialise on it. ``on_evict`` runs on the thread whose operation evicted,
    with the lock held: keep it short (it may call back into the cache).
    """

    __slots__ = ("_lock",)

    def __init__(
        self,
        maxsize: int,
        *,
        ttl: float | None = None,
        getsizeof: Callable[[V], int] | None = None,
        on_evict: Callable[[K, V, EvictionReason], object] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._lock = lock = threading.RLock()
        super().__init__(maxsize, ttl=ttl, getsizeof=getsizeof, on_evict=on_evict, clock=clock)
        get, put = self._hot.get, self._hot.put

        def locked_get(key: K, default: Any = None) -> Any:
            with lock:
                return get(key, default)

        def locked_put(key: K, value: V, ttl: float | None = None) -> None:
            with lock:
                put(key, value, ttl)

        # As in LRUCache: closures, not bound methods, on the two hottest paths.
        self._shadow(ThreadSafeLRUCache, get=locked_get, put=locked_put)

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: D) -> V | D: ...
    def get(self, key: K, default: Any = None) -> Any:
        """Return the live value for ``key`` and mark it most recently used, or ``default``."""
        with self._lock:
            return self._hot.get(key, default)

    @overload
    def peek(self, key: K) -> V | None: ...
    @overload
    def peek(self, key: K, default: D) -> V | D: ...
    def peek(self, key: K, default: Any = None) -> Any:
        """Return the live value for ``key`` or ``default``; leave order and counts alone."""
        with self._lock:
            return LRUCache.peek(self, key, default)

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` as the most recently used item."""
        with self._lock:
            self._hot.put(key, value, ttl)

    @overload
    def pop(self, key: K) -> V: ...
    @overload
    def pop(self, key: K, default: D) -> V | D: ...
    def pop(self, key: K, default: Any = MISSING) -> Any:
        """Remove the item for ``key`` and return its value (no ``on_evict`` call)."""
        with self._lock:
            return LRUCache.pop(self, key, default)

    def clear(self) -> None:
        """Remove every item (no ``on_evict`` calls); the counters keep counting."""
        with self._lock:
            LRUCache.clear(self)

    def expire(self) -> int:
        """Drop every item whose time to live has run out; return how many."""
        with self._lock:
            return LRUCache.expire(self)

    def __len__(self) -> int:
        """The number of live items (expired ones are dropped first)."""
        with self._lock:
            return LRUCache.__len__(self)

    def items(self) -> list[tuple[K, V]]:
        """Return the live ``(key, value)`` pairs, least recently used first."""
        with self._lock:
            return LRUCache.items(self)

    def statistics(self) -> CacheStatistics:
        """Return a consistent snapshot of the counters and the size."""
        with self._lock:
            return LRUCache.statistics(self)
