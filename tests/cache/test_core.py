"""LRUCore's modes: which path a put takes, and when a cache switches between them."""

from __future__ import annotations

import math

from distsys.cache import LRUCache
from distsys.cache._core import GENERAL, PLAIN, TIMED
from distsys.testing import ManualClock


def test_the_mode_follows_the_configuration() -> None:
    assert LRUCache[int, int](2)._mode == PLAIN
    assert LRUCache[int, int](2, ttl=1)._mode == TIMED
    assert LRUCache[int, int](2, ttl=math.inf)._mode == PLAIN
    assert LRUCache[int, int](2, getsizeof=abs)._mode == GENERAL
    assert LRUCache[int, int](2, ttl=1, on_evict=print)._mode == GENERAL


def test_a_per_item_ttl_wraps_a_plain_caches_values_once_and_clear_unwraps() -> None:
    clock = ManualClock()
    cache = LRUCache[str, int](4, clock=clock)
    cache.put("a", 1)
    cache.put("b", 2)
    assert not cache._timed
    cache.put("c", 3, ttl=5)
    assert cache._mode == TIMED
    assert list(cache._data.items()) == [
        ("a", (1, math.inf)),
        ("b", (2, math.inf)),
        ("c", (3, 5.0)),
    ]
    cache.put("d", 4)  # no ttl: never expires, on the timed fast path
    clock.advance(5)
    assert cache.items() == [("a", 1), ("b", 2), ("d", 4)]
    cache.clear()
    assert (cache._mode, cache._timed) == (PLAIN, False)


def test_a_weighted_cache_stays_general_when_timed() -> None:
    cache = LRUCache[str, str](4, getsizeof=len)
    cache.put("a", "x", ttl=1)
    assert (cache._mode, cache._timed) == (GENERAL, True)
    assert cache.get("a") == "x"
