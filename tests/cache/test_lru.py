"""LRUCache: recency, capacity, lazy expiry, weights, eviction callbacks, bad input."""

from __future__ import annotations

import math
from typing import Any

import pytest

from distsys.cache import CacheStatistics, EvictionReason, LRUCache
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.testing import ManualClock

CAPACITY = EvictionReason.CAPACITY
EXPIRED = EvictionReason.EXPIRED
REPLACED = EvictionReason.REPLACED

Events = list[tuple[Any, Any, EvictionReason]]


def recorder() -> tuple[Events, Any]:
    events: Events = []
    return events, lambda key, value, reason: events.append((key, value, reason))


# -- recency and capacity -------------------------------------------------------------


def test_get_and_put_evict_the_least_recently_used() -> None:
    cache = LRUCache[str, int](3)
    for i, key in enumerate("abc"):
        cache.put(key, i)
    assert cache.get("a") == 0  # a is now the most recent: b is the oldest
    cache.put("d", 3)
    assert list(cache) == ["c", "a", "d"]
    assert "b" not in cache
    assert cache.statistics() == CacheStatistics(
        hits=1, misses=0, evictions=1, expirations=0, size=3, weight=3, maxsize=3
    )


def test_put_on_an_existing_key_replaces_and_refreshes_it() -> None:
    cache = LRUCache[str, int](2)
    cache["a"] = 1
    cache["b"] = 2
    cache["a"] = 10
    cache["c"] = 3
    assert cache.items() == [("a", 10), ("c", 3)]


def test_misses_return_the_default_and_are_counted() -> None:
    cache = LRUCache[str, int](2)
    assert cache.get("x") is None
    assert cache.get("x", -1) == -1
    with pytest.raises(KeyError):
        cache["x"]
    stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.hit_ratio) == (0, 3, 0.0)


def test_none_is_a_value_like_any_other() -> None:
    cache = LRUCache[str, None](2)
    cache.put("a", None)
    assert cache.get("a", "missing") is None
    assert "a" in cache
    assert cache.statistics().hits == 1


def test_peek_and_contains_leave_order_and_counts_alone() -> None:
    cache = LRUCache[str, int](2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.peek("a") == 1
    assert "a" in cache
    assert cache.peek("zz", 0) == 0
    cache.put("c", 3)  # a was only peeked at: it is still the oldest
    assert list(cache) == ["b", "c"]
    assert cache.statistics().hits == cache.statistics().misses == 0


def test_pop_del_and_clear_remove_without_callbacks() -> None:
    events, on_evict = recorder()
    cache = LRUCache[str, int](3, on_evict=on_evict)
    for i, key in enumerate("abc"):
        cache.put(key, i)
    assert cache.pop("a") == 0
    assert cache.pop("a", None) is None
    with pytest.raises(KeyError):
        cache.pop("a")
    del cache["b"]
    with pytest.raises(KeyError):
        del cache["b"]
    cache.clear()
    assert len(cache) == 0
    assert events == []
    cache.put("d", 4)  # usable after clear
    assert cache.items() == [("d", 4)]


def test_iteration_is_a_snapshot_least_recent_first() -> None:
    cache = LRUCache[int, int](4)
    for i in range(4):
        cache.put(i, i)
    seen = []
    for key in cache:
        seen.append(key)
        cache.get(key)  # changing recency while iterating is fine: it is a snapshot
    assert seen == [0, 1, 2, 3]
    assert len(cache) == 4


def test_maxsize_one_keeps_only_the_last_item() -> None:
    cache = LRUCache[int, int](1)
    cache.put(1, 1)
    cache.put(2, 2)
    assert cache.items() == [(2, 2)]
    assert cache.statistics().evictions == 1


def test_repr_and_properties() -> None:
    cache = LRUCache[int, int](5, ttl=2.5)
    cache.put(1, 1)
    assert repr(cache) == "LRUCache(maxsize=5, ttl=2.5, size=1, weight=1)"
    assert (cache.maxsize, cache.ttl, cache.getsizeof) == (5, 2.5, None)


# -- eviction callbacks ---------------------------------------------------------------


def test_on_evict_reports_capacity_and_replaced() -> None:
    events, on_evict = recorder()
    cache = LRUCache[str, int](2, on_evict=on_evict)
    cache.put("a", 1)
    cache.put("a", 2)
    cache.put("b", 3)
    cache.put("c", 4)
    assert events == [("a", 1, REPLACED), ("a", 2, CAPACITY)]
    assert cache.statistics().evictions == 1


def test_on_evict_may_use_the_cache() -> None:
    cache: LRUCache[str, int]
    seen = []

    def on_evict(key: str, value: int, reason: EvictionReason) -> None:
        seen.append((key, cache.peek(key), len(cache)))  # the operation is complete
        if reason is REPLACED:
            cache.put(f"previous-{key}", value)

    cache = LRUCache(3, on_evict=on_evict)
    cache.put("a", 1)
    cache.put("a", 2)
    cache.put("b", 3)
    cache.put("c", 4)
    assert seen == [("a", 2, 1), ("a", None, 3)]  # replaced, then evicted for c
    assert cache.items() == [("previous-a", 1), ("b", 3), ("c", 4)]


def test_an_on_evict_error_propagates_after_the_operation_and_the_others_still_run() -> None:
    heard = []

    def on_evict(key: int, value: int, reason: EvictionReason) -> None:
        heard.append(key)
        raise RuntimeError(f"boom {key}")

    cache = LRUCache[int, int](4, getsizeof=lambda v: v, on_evict=on_evict)
    cache.put(1, 1)
    cache.put(2, 1)
    cache.put(3, 2)
    with pytest.raises(RuntimeError, match="boom 1"):
        cache.put(4, 3)  # evicts 1, 2 and 3
    assert heard == [1, 2, 3]
    assert cache.items() == [(4, 3)]


# -- time to live -------------------------------------------------------------------


def test_an_item_expires_ttl_seconds_after_its_put_and_reads_do_not_extend_it() -> None:
    clock = ManualClock()
    events, on_evict = recorder()
    cache = LRUCache[str, int](4, ttl=10, clock=clock, on_evict=on_evict)
    cache.put("a", 1)
    clock.advance(9.999)
    assert cache.get("a") == 1
    clock.advance(0.001)  # exactly at the deadline it is gone
    assert cache.get("a") is None
    assert events == [("a", 1, EXPIRED)]
    stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.expirations, stats.size) == (1, 1, 1, 0)


def test_a_put_restarts_the_time_to_live() -> None:
    clock = ManualClock()
    cache = LRUCache[str, int](4, ttl=10, clock=clock)
    cache.put("a", 1)
    clock.advance(8)
    cache.put("a", 2)
    clock.advance(8)
    assert cache["a"] == 2


def test_expired_items_linger_until_found_then_never_come_back() -> None:
    clock = ManualClock()
    cache = LRUCache[str, int](4, ttl=1, clock=clock)
    cache.put("a", 1)
    cache.put("b", 2)
    clock.advance(1)
    assert cache.statistics().size == 2  # held, not returned
    assert cache.peek("a") is None
    assert "b" not in cache
    assert cache.statistics().size == 0
    assert cache.statistics().expirations == 2


def test_expire_purges_everything_due_and_len_counts_live_items() -> None:
    clock = ManualClock()
    events, on_evict = recorder()
    cache = LRUCache[str, int](8, ttl=5, clock=clock, on_evict=on_evict)
    cache.put("a", 1)
    cache.put("b", 2, ttl=20)
    cache.put("c", 3)
    clock.advance(5)
    assert cache.statistics().size == 3
    assert len(cache) == 1  # drops the expired ones first
    assert sorted(events) == [("a", 1, EXPIRED), ("c", 3, EXPIRED)]
    clock.advance(15)
    assert cache.expire() == 1
    assert cache.expire() == 0
    assert list(cache) == []


def test_an_expired_least_recent_item_leaves_as_expired_when_room_is_needed() -> None:
    clock = ManualClock()
    events, on_evict = recorder()
    cache = LRUCache[str, int](2, clock=clock, on_evict=on_evict)
    cache.put("a", 1, ttl=1)
    cache.put("b", 2)
    clock.advance(2)
    cache.put("c", 3)  # a is the least recent and expired
    cache.put("d", 4)  # b is the least recent and live
    assert events == [("a", 1, EXPIRED), ("b", 2, CAPACITY)]
    stats = cache.statistics()
    assert (stats.evictions, stats.expirations) == (1, 1)


def test_fast_timed_path_counts_expired_victims_and_replacements() -> None:
    clock = ManualClock()
    cache = LRUCache[str, int](2, ttl=1, clock=clock)  # no callback: the inline path
    cache.put("a", 1)
    cache.put("b", 2)
    clock.advance(1)
    cache.put("b", 3)  # replaces an expired item
    cache.put("c", 4)  # evicts a, expired
    cache.put("d", 5)  # evicts b, live
    stats = cache.statistics()
    assert (stats.expirations, stats.evictions) == (2, 1)
    assert cache.items() == [("c", 4), ("d", 5)]


def test_replacing_an_expired_item_reports_it_as_expired() -> None:
    clock = ManualClock()
    events, on_evict = recorder()
    cache = LRUCache[str, int](2, ttl=1, clock=clock, on_evict=on_evict)
    cache.put("a", 1)
    clock.advance(1)
    cache.put("a", 2)
    assert events == [("a", 1, EXPIRED)]
    assert cache.get("a") == 2


def test_per_item_ttl_on_a_plain_cache() -> None:
    clock = ManualClock()
    cache = LRUCache[str, int](4, clock=clock)
    cache.put("forever", 0)
    cache.put("short", 1, ttl=1)
    cache.put("never", 2, ttl=math.inf)
    clock.advance(100)
    assert cache.items() == [("forever", 0), ("never", 2)]
    cache.clear()  # back to a plain cache
    cache.put("x", 1)
    clock.advance(1000)
    assert cache.get("x") == 1


def test_a_per_item_ttl_overrides_the_cache_ttl_both_ways() -> None:
    clock = ManualClock()
    cache = LRUCache[str, int](4, ttl=10, clock=clock)
    cache.put("short", 1, ttl=1)
    cache.put("long", 2, ttl=100)
    cache.put("default", 3)
    clock.advance(50)
    assert cache.items() == [("long", 2)]


def test_the_default_clock_is_monotonic() -> None:
    cache = LRUCache[str, int](2, ttl=3600)
    cache.put("a", 1)
    assert cache.get("a") == 1


# -- weights ------------------------------------------------------------------------


def test_weights_bound_the_total_and_evict_as_many_as_needed() -> None:
    events, on_evict = recorder()
    cache = LRUCache[str, str](10, getsizeof=len, on_evict=on_evict)
    cache.put("a", "xxxx")
    cache.put("b", "xxxx")
    cache.put("c", "xx")
    assert cache.statistics().weight == 10
    cache.put("d", "xxxxxxx")  # needs 7: a, b go
    assert [key for key, _, _ in events] == ["a", "b"]
    assert cache.statistics().weight == 9
    cache.put("c", "xxx")  # one heavier: exactly full, nothing goes, c becomes the newest
    assert cache.items() == [("d", "xxxxxxx"), ("c", "xxx")]
    assert cache.statistics().weight == 10


def test_replacing_with_a_heavier_value_evicts_others_but_never_the_item_itself() -> None:
    cache = LRUCache[str, str](6, getsizeof=len)
    cache.put("a", "xx")
    cache.put("b", "xx")
    cache.put("a", "xxxxx")
    assert cache.items() == [("a", "xxxxx")]
    assert cache.statistics().weight == 5


def test_a_value_heavier_than_the_cache_is_refused_and_nothing_changes() -> None:
    cache = LRUCache[str, str](5, getsizeof=len)
    cache.put("a", "xxx")
    with pytest.raises(InvalidArgumentError) as info:
        cache.put("a", "xxxxxx")
    assert info.value.field == "getsizeof(value)"
    assert info.value.value == 6
    assert "maxsize=5" in str(info.value)
    assert cache.items() == [("a", "xxx")]
    assert cache.statistics().weight == 3


@pytest.mark.parametrize("weight", [-1, 1.5, "1", True, None])
def test_getsizeof_must_return_a_non_negative_int(weight: object) -> None:
    cache = LRUCache[str, int](5, getsizeof=lambda value: weight)  # type: ignore[arg-type,return-value]
    with pytest.raises(InvalidArgumentError, match="getsizeof") as info:
        cache.put("a", 1)
    assert info.value.field == "getsizeof"
    assert cache.statistics().size == 0


def test_zero_weight_items_are_allowed() -> None:
    cache = LRUCache[str, str](1, getsizeof=len)
    for key in "abc":
        cache.put(key, "")
    cache.put("d", "x")
    assert len(cache) == 4
    assert cache.statistics().weight == 1


def test_weights_with_ttl() -> None:
    clock = ManualClock()
    events, on_evict = recorder()
    cache = LRUCache[str, str](4, ttl=1, getsizeof=len, clock=clock, on_evict=on_evict)
    cache.put("a", "xx")
    clock.advance(1)
    cache.put("b", "xxxx")  # a is expired and least recent
    assert events == [("a", "xx", EXPIRED)]
    assert cache.statistics().weight == 4
    assert cache.pop("b") == "xxxx"
    assert cache.statistics().weight == 0


# -- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"maxsize": 0}, InvalidArgumentError, "maxsize"),
        ({"maxsize": -3}, InvalidArgumentError, "maxsize"),
        ({"maxsize": 2.0}, ArgumentTypeError, "maxsize"),
        ({"maxsize": True}, ArgumentTypeError, "maxsize"),
        ({"maxsize": "10"}, ArgumentTypeError, "maxsize"),
        ({"maxsize": 1, "ttl": 0}, InvalidArgumentError, "ttl"),
        ({"maxsize": 1, "ttl": -1.0}, InvalidArgumentError, "ttl"),
        ({"maxsize": 1, "ttl": math.nan}, InvalidArgumentError, "ttl"),
        ({"maxsize": 1, "ttl": "5"}, ArgumentTypeError, "ttl"),
        ({"maxsize": 1, "ttl": False}, ArgumentTypeError, "ttl"),
        ({"maxsize": 1, "getsizeof": 3}, ArgumentTypeError, "getsizeof"),
        ({"maxsize": 1, "on_evict": "print"}, ArgumentTypeError, "on_evict"),
        ({"maxsize": 1, "clock": 12.0}, ArgumentTypeError, "clock"),
    ],
)
def test_bad_configuration_fails_at_construction_naming_the_field(
    kwargs: dict[str, Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as info:
        LRUCache(**kwargs)
    assert type(info.value) is error
    assert info.value.field == field  # type: ignore[attr-defined]
    assert str(info.value).startswith(f"{field}=")
    assert "expected" in str(info.value)


def test_an_infinite_ttl_means_no_expiry() -> None:
    assert LRUCache[int, int](1, ttl=math.inf).ttl is None


@pytest.mark.parametrize("ttl", [0, -1, math.nan, "1"])
def test_a_bad_per_item_ttl_is_refused_and_nothing_changes(ttl: Any) -> None:
    for cache in (LRUCache[str, int](2), LRUCache[str, int](2, ttl=5)):
        cache.put("a", 1)
        with pytest.raises(InvalidArgumentError) as info:
            cache.put("a", 2, ttl=ttl)
        assert info.value.field == "ttl"
        assert cache.peek("a") == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get([1]),
        lambda c: c[[1]],
        lambda c: c.peek({}),
        lambda c: [1] in c,
        lambda c: c.put([1], 1),
        lambda c: c.put([1], 1, ttl=5),
        lambda c: c.pop([1]),
    ],
)
@pytest.mark.parametrize("ttl", [None, 5])
def test_an_unhashable_key_is_named_in_the_error(call: Any, ttl: float | None) -> None:
    cache = LRUCache[Any, int](2, ttl=ttl)
    with pytest.raises(ArgumentTypeError) as info:
        call(cache)
    assert isinstance(info.value, TypeError)
    assert info.value.field == "key"
    assert "unhashable" in str(info.value)


def test_a_type_error_from_a_keys_eq_is_not_mistaken_for_unhashability() -> None:
    class Touchy:
        def __hash__(self) -> int:
            return 1

        def __eq__(self, other: object) -> bool:
            raise TypeError("no comparing")

    cache = LRUCache[Any, int](2)
    cache.put(Touchy(), 1)
    with pytest.raises(TypeError, match="no comparing") as info:
        cache.get(Touchy())
    assert not isinstance(info.value, ArgumentTypeError)
