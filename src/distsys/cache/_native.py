"""An LRUCache's hot paths when its entries are the C ``LRUMap`` (``_clru.c``).

The C map answers ``get``, ``put`` and ``cached``'s hit itself, one C call each with no
Python frame, and counts hits, misses, evictions and expirations in its own fields. What
it hands back is what the pure-Python closures of :mod:`distsys.cache._hot` also leave
to the core: an expired item found (``LRUCore._drop_expired``), a ``put`` with a
per-item TTL (``slow_put`` below), a memoised function's miss, an unhashable key. Both
builds run the same algorithm with the same counts; ``tests/cache`` runs every test on
each (``conftest.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from distsys.cache._hot import Explain, HotPaths, KeyOf, Miss
from distsys.cache._validate import check_hashable

if TYPE_CHECKING:
    from collections.abc import Callable

    from distsys.cache._clru import LRUMap
    from distsys.cache._core import LRUCore

__all__ = ["bind_native_hot_paths"]


def bind_native_hot_paths(core: LRUCore[Any, Any], entries: LRUMap, missing: Any) -> HotPaths:
    """Build ``core``'s hot paths on its C ``entries``; ``missing`` is the sentinel."""
    lookup = entries.get
    touch = entries.move_to_end
    now = core._now
    maxsize = core._maxsize

    def slow_put(key: Any, value: Any, ttl: float) -> None:
        """A put with a per-item TTL: the entries become ``(value, deadline)`` pairs."""
        lifetime = core._item_ttl(ttl)  # refuse a bad ttl before any change
        if not core._timed:
            core._time_entries()
        t = now()
        try:
            old = lookup(key, missing)
        except TypeError:
            check_hashable(key)
            raise
        if old is not missing:
            touch(key)
            if old[1] <= t:
                entries.expirations += 1
        entries[key] = (value, t + lifetime)
        if len(entries) > maxsize:
            if entries.popitem(False)[1][1] <= t:
                entries.expirations += 1
            else:
                entries.evictions += 1

    entries.bind(
        now=now,
        lifetime=core._lifetime,
        drop_expired=core._drop_expired,
        check_hashable=check_hashable,
        slow_put=slow_put,
    )
    entries.timed = core._timed

    def memoize(key_of: KeyOf, custom: bool, miss: Miss, explain: Explain) -> Callable[..., Any]:
        return entries.memoize(key_of, custom, miss, explain)

    def counts() -> tuple[int, int, int, int]:
        return entries.hits, entries.misses, entries.evictions, entries.expirations

    def set_timed(flag: bool) -> None:
        entries.timed = flag

    put: Callable[..., None] = entries.lru_put
    if core._weights is not None or core._on_evict is not None:
        put = core._put  # weights or callback: the general path
    return HotPaths(entries.lru_get, put, memoize, counts, set_timed)
