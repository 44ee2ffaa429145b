"""LRUCache against a reference model: a plain list in recency order, with deadlines.

Hypothesis drives both through random sequences of puts (with and without per-item
TTLs), lookups, removals, clock advances and purges, on random configurations (capacity,
default TTL, weights, callback or not, LRUCache or ThreadSafeLRUCache), so every shape of
the hot paths (``distsys.cache._hot``: bare values, pairs, a plain cache turned timed by
a per-item TTL and back by ``clear``, the general put) meets the same model. Lookups and
puts go half through ``get`` / ``put`` bound once at the start — they must stay right
across those switches — and half through ``[]``. After every step the two must agree on
the recency order, every counter, and every eviction callback with its reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from distsys.cache import CacheStatistics, EvictionReason, LRUCache, ThreadSafeLRUCache
from distsys.errors import InvalidArgumentError
from distsys.testing import ManualClock

MISSING: Any = object()
KEYS = st.integers(0, 5)
VALUES = st.integers(0, 9)
ITEM_TTLS = st.sampled_from([None, None, 0.5, 1.0, 3.0, math.inf])


def weigh(value: int) -> int:
    return value % 3


@dataclass
class Item:
    key: int
    value: int
    deadline: float
    weight: int


class Model:
    """The obvious O(n) LRU with lazy expiry: the semantics LRUCache promises."""

    def __init__(self, maxsize: int, ttl: float | None, weighted: bool) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self.weighted = weighted
        self.items: list[Item] = []  # least recently used first
        self.hits = self.misses = self.evictions = self.expirations = 0
        self.events: list[tuple[int, int, EvictionReason]] = []

    def _index(self, key: int) -> int | None:
        return next((i for i, item in enumerate(self.items) if item.key == key), None)

    def _drop(self, i: int, reason: EvictionReason) -> None:
        item = self.items.pop(i)
        if reason is EvictionReason.EXPIRED:
            self.expirations += 1
        elif reason is EvictionReason.CAPACITY:
            self.evictions += 1
        self.events.append((item.key, item.value, reason))

    def _found(self, key: int, now: float, *, touch: bool) -> int | None:
        i = self._index(key)
        if i is None:
            return None
        if touch:
            self.items.append(self.items.pop(i))
            i = len(self.items) - 1
        if self.items[i].deadline <= now:
            self._drop(i, EvictionReason.EXPIRED)
            return None
        return i

    def get(self, key: int, now: float) -> Any:
        i = self._found(key, now, touch=True)
        if i is None:
            self.misses += 1
            return MISSING
        self.hits += 1
        return self.items[i].value

    def peek(self, key: int, now: float) -> Any:
        i = self._found(key, now, touch=False)
        return MISSING if i is None else self.items[i].value

    def pop(self, key: int, now: float) -> Any:
        i = self._found(key, now, touch=False)
        return MISSING if i is None else self.items.pop(i).value

    def put(self, key: int, value: int, ttl: float | None, now: float) -> bool:
        weight = weigh(value) if self.weighted else 1
        if weight > self.maxsize:
            return False  # refused, nothing changes
        lifetime = ttl if ttl is not None else self.ttl
        deadline = now + lifetime if lifetime is not None else math.inf
        i = self._index(key)
        if i is not None:
            old = self.items[i]
            self._drop(
                i, EvictionReason.EXPIRED if old.deadline <= now else EvictionReason.REPLACED
            )
        self.items.append(Item(key, value, deadline, weight))
        while self.weight() > self.maxsize:
            self._drop(
                0,
                EvictionReason.EXPIRED
                if self.items[0].deadline <= now
                else EvictionReason.CAPACITY,
            )
        return True

    def expire(self, now: float) -> int:
        due = [item for item in self.items if item.deadline <= now]
        self.items = [item for item in self.items if item.deadline > now]
        for item in due:  # in recency order, as the cache reports them
            self.expirations += 1
            self.events.append((item.key, item.value, EvictionReason.EXPIRED))
        return len(due)

    def weight(self) -> int:
        return sum(item.weight for item in self.items)

    def statistics(self) -> CacheStatistics:
        return CacheStatistics(
            hits=self.hits,
            misses=self.misses,
            evictions=self.evictions,
            expirations=self.expirations,
            size=len(self.items),
            weight=self.weight(),
            maxsize=self.maxsize,
        )


class LRUCacheMatchesModel(RuleBasedStateMachine):
    cache: LRUCache[int, int]
    model: Model

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.events: list[tuple[int, int, EvictionReason]] = []
        self.callback = False

    @initialize(
        maxsize=st.integers(1, 4),
        ttl=st.sampled_from([None, 1.0, 2.5]),
        weighted=st.booleans(),
        callback=st.booleans(),
        threadsafe=st.booleans(),
    )
    def configure(
        self, maxsize: int, ttl: float | None, weighted: bool, callback: bool, threadsafe: bool
    ) -> None:
        self.callback = callback
        cache_class = ThreadSafeLRUCache if threadsafe else LRUCache
        self.cache = cache_class(
            maxsize,
            ttl=ttl,
            getsizeof=weigh if weighted else None,
            on_evict=(lambda k, v, r: self.events.append((k, v, r))) if callback else None,
            clock=self.clock,
        )
        self.model = Model(maxsize, ttl, weighted)
        self.bound_get = self.cache.get  # bound once, used across every mode switch
        self.bound_put = self.cache.put

    @property
    def now(self) -> float:
        return self.clock.now()

    @rule(key=KEYS, value=VALUES, ttl=ITEM_TTLS)
    def put(self, key: int, value: int, ttl: float | None) -> None:
        if self.model.put(key, value, ttl, self.now):
            self._put(key, value, ttl)
        else:
            with pytest.raises(InvalidArgumentError, match=r"^getsizeof\(value\)="):
                self._put(key, value, ttl)

    def _put(self, key: int, value: int, ttl: float | None) -> None:
        if ttl is None and key % 2:
            self.cache[key] = value
        else:
            self.bound_put(key, value, ttl)

    @rule(key=KEYS)
    def get(self, key: int) -> None:
        expected = self.model.get(key, self.now)
        actual = self.bound_get(key, MISSING)
        assert actual is MISSING if expected is MISSING else actual == expected

    @rule(key=KEYS)
    def get_item(self, key: int) -> None:
        expected = self.model.get(key, self.now)
        try:
            assert self.cache[key] == expected
        except KeyError:
            assert expected is MISSING

    @rule(key=KEYS)
    def peek(self, key: int) -> None:
        expected = self.model.peek(key, self.now)
        actual = self.cache.peek(key, MISSING)
        assert actual is MISSING if expected is MISSING else actual == expected

    @rule(key=KEYS)
    def contains(self, key: int) -> None:
        assert (key in self.cache) == (self.model.peek(key, self.now) is not MISSING)

    @rule(key=KEYS)
    def pop(self, key: int) -> None:
        expected = self.model.pop(key, self.now)
        actual = self.cache.pop(key, MISSING)
        assert actual is MISSING if expected is MISSING else actual == expected

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5]))  # lands on deadlines exactly, often
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def expire(self) -> None:
        assert self.cache.expire() == self.model.expire(self.now)

    @rule()
    def items(self) -> None:
        self.model.expire(self.now)
        assert self.cache.items() == [(i.key, i.value) for i in self.model.items]
        assert len(self.cache) == len(self.model.items)

    @precondition(lambda self: self.model.statistics().size > 2)
    @rule()
    def clear(self) -> None:
        self.cache.clear()
        self.model.items.clear()

    @invariant()
    def agree(self) -> None:
        assert self.cache.statistics() == self.model.statistics()
        # The recency order, read without touching anything (white box: _data is it).
        assert list(self.cache._data) == [item.key for item in self.model.items]
        if self.callback:
            assert self.events == self.model.events


def test_lru_cache_matches_the_model() -> None:
    # A plain test (not the machine's TestCase) so that it runs on both entry builds.
    run_state_machine_as_test(
        LRUCacheMatchesModel,
        settings=settings(max_examples=400, stateful_step_count=40, deadline=None),
    )
