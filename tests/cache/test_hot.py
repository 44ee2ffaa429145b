"""The hot paths built per cache: which ones a cache gets, and that they stay right."""

from __future__ import annotations

import math
from typing import Any

import pytest

from distsys.cache import EvictionReason, LRUCache, ThreadSafeLRUCache, cached
from distsys.testing import ManualClock


def test_a_cache_serves_get_and_put_from_its_own_closures() -> None:
    cache = LRUCache[str, int](2)
    assert cache.get is cache._hot.get
    assert cache.put is cache._hot.put
    assert LRUCache[str, int](2).get is not cache.get  # per cache, not shared


def test_the_methods_of_the_class_reach_the_same_paths() -> None:
    cache = LRUCache[str, int](2)
    LRUCache.put(cache, "a", 1)
    assert LRUCache.get(cache, "a") == 1
    assert LRUCache.get(cache, "b", 0) == 0
    stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.size) == (1, 1, 1)


def test_a_subclass_override_is_not_shadowed() -> None:
    seen: list[str] = []

    class Logged(LRUCache[str, int]):
        def get(self, key: str, default: Any = None) -> Any:
            seen.append(key)
            return super().get(key, default)

    cache = Logged(2)
    cache.put("a", 1)
    assert cache.get("a") == 1
    assert cache["a"] == 1
    assert seen == ["a", "a"]
    assert cache.put is cache._hot.put  # the method it did not override is still fast


def test_a_thread_safe_cache_binds_locked_paths() -> None:
    cache = ThreadSafeLRUCache[str, int](2)
    assert cache.get is not cache._hot.get
    assert cache.put is not cache._hot.put
    assert cache._lock in [cell.cell_contents for cell in cache.get.__closure__ or ()]
    cache.put("a", 1)
    assert cache.get("a") == 1


def test_a_bound_get_and_put_follow_a_switch_to_pairs_and_back() -> None:
    clock = ManualClock()
    cache = LRUCache[str, int](3, clock=clock)
    get, put = cache.get, cache.put
    put("a", 1)
    put("b", 2, 5)  # the first per-item TTL turns every entry into a pair
    assert cache._timed
    put("c", 3)
    assert (get("a"), get("b"), get("c")) == (1, 2, 3)
    clock.advance(5)
    assert get("b") is None
    put("d", 4)
    assert cache.items() == [("a", 1), ("c", 3), ("d", 4)]
    cache.clear()  # back to bare values; the bound paths follow
    assert not cache._timed
    put("e", 5)
    assert get("e") == 5
    assert cache._data["e"] == 5
    stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.expirations) == (4, 1, 1)


def test_a_bad_per_item_ttl_leaves_a_plain_cache_unchanged() -> None:
    cache = LRUCache[str, int](2)
    cache.put("a", 1)
    cache.put("b", 2)
    with pytest.raises(ValueError, match="ttl"):
        cache.put("a", 3, ttl=-1)
    assert not cache._timed
    assert cache.items() == [("a", 1), ("b", 2)]


def test_a_bad_per_item_ttl_leaves_a_timed_cache_unchanged() -> None:
    cache = LRUCache[str, int](2, ttl=10)
    cache.put("a", 1)
    cache.put("b", 2)
    with pytest.raises(ValueError, match="ttl"):
        cache.put("a", 3, ttl=0)
    assert cache.items() == [("a", 1), ("b", 2)]


def test_statistics_add_the_hot_and_the_general_counts() -> None:
    events: list[tuple[str, int, EvictionReason]] = []
    clock = ManualClock()
    cache = LRUCache[str, int](
        2, ttl=1, on_evict=lambda k, v, r: events.append((k, v, r)), clock=clock
    )
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)  # general put: a CAPACITY eviction on the core
    clock.advance(1)
    assert cache.get("b") is None  # hot get: a miss in the cells, an expiry on the core
    stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.evictions, stats.expirations) == (0, 1, 1, 1)
    assert [reason for _, _, reason in events] == [EvictionReason.CAPACITY, EvictionReason.EXPIRED]


@pytest.mark.parametrize("ttl", [None, 10.0, math.inf])
def test_cached_counts_in_the_caches_cells(ttl: float | None) -> None:
    cache = LRUCache[Any, Any](2, ttl=ttl)
    calls: list[int] = []

    @cached(cache)
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    assert [double(1), double(1), double(2), double(1), double(x=1)] == [2, 2, 4, 2, 2]
    assert calls == [1, 2, 1]
    stats = cache.statistics()
    assert (stats.hits, stats.misses) == (2, 3)


def test_cached_over_a_plain_cache_follows_its_switch_to_pairs() -> None:
    clock = ManualClock()
    cache = LRUCache[Any, Any](4, clock=clock)
    calls: list[int] = []

    @cached(cache)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert square(3) == 9
    cache.put((4,), 16, ttl=1)  # the cache turns timed under the wrapper
    assert (square(3), square(4)) == (9, 16)
    clock.advance(1)
    assert square(4) == 16  # expired: computed again
    assert calls == [3, 4]
    stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.expirations) == (2, 2, 1)
