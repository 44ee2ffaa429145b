"""A bounded array of counts per integer key that folds its lowest keys when it must grow.

The store keeps one count per key over a contiguous range ``[lo, hi]``, in a plain list.
Its size is bounded by ``limit``: the range is always

    hi = the largest key ever added
    lo = max(smallest key ever added, hi - limit + 1)

and a key below ``lo`` is counted at ``lo`` (DDSketch's "collapsing lowest" store). The
state is a function of the multiset of keys added, whatever their order, which is what
makes merging two stores exactly equal to adding every key to one store.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from itertools import accumulate

__all__ = ["CollapsingStore"]


class CollapsingStore:
    """Counts per integer key over at most ``limit`` consecutive keys; see the module docstring.

    Not thread-safe.
    """

    __slots__ = ("counts", "limit", "lo", "min_key")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: list[int] = []  # counts[i] is the count of key lo + i
        self.lo = 0
        self.min_key = 0  # the smallest key ever added (< lo once something was folded)

    @property
    def collapsed(self) -> bool:
        """Whether some keys were folded into ``lo`` (their counts sit one bucket too high)."""
        return bool(self.counts) and self.min_key < self.lo

    def add(self, key: int) -> None:
        """Count ``key`` once."""
        i = key - self.lo
        counts = self.counts
        if 0 <= i < len(counts):
            counts[i] += 1
        else:
            self._add_outside(key)

    def _add_outside(self, key: int) -> None:
        counts = self.counts
        if not counts:
            self.counts, self.lo, self.min_key = [1], key, key
            return
        if key < self.lo:
            self.min_key = min(self.min_key, key)
            self._reshape(self.lo + len(counts) - 1)
            self.counts[max(key - self.lo, 0)] += 1
        else:
            self._reshape(key)
            self.counts[-1] += 1

    def _reshape(self, hi: int) -> None:
        """Make the list cover ``[lo, hi]`` for the current ``min_key`` and the new ``hi``."""
        counts, lo = self.counts, self.lo
        new_lo = max(self.min_key, hi - self.limit + 1)
        if new_lo > lo:  # the lowest keys no longer fit: fold them into new_lo
            cut = new_lo - lo
            counts = [sum(counts[: cut + 1]), *counts[cut + 1 :]]
        elif new_lo < lo:
            counts = [0] * (lo - new_lo) + counts
        counts.extend([0] * (hi - new_lo + 1 - len(counts)))
        self.counts, self.lo = counts, new_lo

    def merge(self, others: list[CollapsingStore]) -> None:
        """Add every count of ``others`` (stores with the same ``limit``) to this store."""
        stores = [s for s in others if s.counts]
        if not stores:
            return
        if self.counts:
            stores.append(self)
        hi = max(s.lo + len(s.counts) - 1 for s in stores)
        min_key = min(s.min_key for s in stores)
        lo = max(min_key, hi - self.limit + 1)
        width = hi - lo + 1
        aligned = []
        for store in stores:
            counts, shift = store.counts, store.lo - lo
            if shift < 0:  # keys below lo fold into it
                counts = [sum(counts[: 1 - shift]), *counts[1 - shift :]]
                shift = 0
            padded = [0] * shift + counts
            padded.extend([0] * (width - len(padded)))
            aligned.append(padded)
        self.counts = list(map(sum, zip(*aligned, strict=True)))
        self.lo, self.min_key = lo, min_key

    def keys_at_ranks(self, ranks: Iterable[int]) -> list[int]:
        """Return the key holding each 0-based rank, in key order (each rank < the total)."""
        cumulative = list(accumulate(self.counts))
        return [self.lo + bisect_right(cumulative, rank) for rank in ranks]

    def copy(self) -> CollapsingStore:
        """Return an independent copy."""
        twin = CollapsingStore(self.limit)
        twin.counts, twin.lo, twin.min_key = list(self.counts), self.lo, self.min_key
        return twin

    def clear(self) -> None:
        """Forget every count."""
        self.counts, self.lo, self.min_key = [], 0, 0
