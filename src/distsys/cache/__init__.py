"""Caches: an O(1) LRU cache with TTLs and weights, and a memoising decorator.

``LRUCache`` bounds a mapping by item count or total weight and evicts the least
recently used item; items may expire after a time to live. ``ThreadSafeLRUCache`` is the
same cache for sharing between threads. ``cached`` memoises a function or coroutine
function in one of them, running concurrent misses for a key only once (single flight).
"""

from distsys.cache._cached import CachedFunction, cached
from distsys.cache._flight import FlightStatistics
from distsys.cache._keys import hashkey
from distsys.cache._lru import LRUCache
from distsys.cache._statistics import CacheStatistics, EvictionReason
from distsys.cache._threadsafe import ThreadSafeLRUCache

__all__ = [
    "LRUCache",
    "ThreadSafeLRUCache",
    "CacheStatistics",
    "EvictionReason",
    "cached",
    "CachedFunction",
    "FlightStatistics",
    "hashkey",
]
