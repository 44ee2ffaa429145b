"""What a cache reports: why an item left it, and a snapshot of its counters."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["CacheStatistics", "EvictionReason"]


class EvictionReason(enum.Enum):
    """Why the cache let go of an item, as passed to ``on_evict(key, value, reason)``.

    Only the cache's own decisions are reported; ``pop``, ``del`` and ``clear`` are the
    caller's, and return or discard the value without a callback.
    """

    CAPACITY = "capacity"
    """The least recently used item made room for a new one."""

    EXPIRED = "expired"
    """The item's time to live ran out; it was dropped on access, to make room, or by
    ``expire()``."""

    REPLACED = "replaced"
    """``put`` stored a new value under the item's key; the old value is reported."""


@dataclass(frozen=True, slots=True)
class CacheStatistics:
    """A snapshot of an :class:`~distsys.cache.LRUCache`.

    Attributes:
        hits: ``get`` / ``[]`` calls that found a live item.
        misses: ``get`` / ``[]`` calls that found nothing (or only an expired item).
        evictions: items dropped to make room (reason ``CAPACITY``).
        expirations: items dropped because their time to live ran out (``EXPIRED``).
        size: items held, including expired items not dropped yet (``expire()`` drops
            them; ``len()`` counts only live items).
        weight: total weight of the items held; equals ``size`` without ``getsizeof``.
        maxsize: the capacity, in items or (with ``getsizeof``) in weight.
    """

    hits: int
    misses: int
    evictions: int
    expirations: int
    size: int
    weight: int
    maxsize: int

    @property
    def hit_ratio(self) -> float:
        """``hits / (hits + misses)``, or 0.0 before the first lookup."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0
