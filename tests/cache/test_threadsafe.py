"""ThreadSafeLRUCache: the LRUCache contract holds under any interleaving of threads."""

from __future__ import annotations

import contextlib
import random
import sys
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from distsys.cache import EvictionReason, LRUCache, ThreadSafeLRUCache
from distsys.errors import InvalidArgumentError
from distsys.testing import ManualClock

THREADS = 8
OPS = 3000
MAXSIZE = 8


@pytest.fixture
def eager_switching() -> Iterator[None]:
    """Make the interpreter switch threads every few bytecodes, so races get their chance."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def weigh(value: int) -> int:
    return 1 + value % 3  # 1..3: the item count never exceeds the total weight


def test_is_an_lru_cache_with_the_same_api() -> None:
    cache = ThreadSafeLRUCache[str, int](2, ttl=10)
    assert isinstance(cache, LRUCache)
    cache["a"] = 1
    cache.put("b", 2, ttl=5)
    assert cache["a"] == 1
    cache.put("c", 3)
    assert list(cache) == ["a", "c"]
    assert "b" not in cache
    assert cache.peek("a") == 1
    assert cache.pop("a") == 1
    del cache["c"]
    assert len(cache) == 0
    assert cache.expire() == 0
    cache.clear()
    assert cache.statistics().evictions == 1
    assert repr(cache).startswith("ThreadSafeLRUCache(maxsize=2")


def test_on_evict_may_call_back_into_the_cache() -> None:
    cache: ThreadSafeLRUCache[str, int]
    seen = []

    def on_evict(key: str, value: int, reason: EvictionReason) -> None:
        seen.append((key, key in cache, len(cache), cache.get("b")))

    cache = ThreadSafeLRUCache(2, on_evict=on_evict)  # the lock is reentrant: no deadlock
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert seen == [("a", False, 2, 2)]


def test_threads_hammering_a_small_cache_keep_every_count_exact(eager_switching: None) -> None:
    clock = ManualClock()
    events: list[tuple[int, int, EvictionReason]] = []
    cache = ThreadSafeLRUCache[int, int](
        MAXSIZE,
        ttl=5.0,
        getsizeof=weigh,
        on_evict=lambda k, v, r: events.append((k, v, r)),
        clock=clock,
    )
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []
    tallies: list[Counter[str]] = []

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        tally: Counter[str] = Counter()
        start.wait()
        try:
            for _ in range(OPS):
                key = rng.randrange(12)
                op = rng.random()
                if op < 0.35:
                    cache.get(key)
                    tally["gets"] += 1
                elif op < 0.45:
                    with contextlib.suppress(KeyError):
                        cache[key]
                    tally["gets"] += 1
                elif op < 0.75:
                    value = rng.randrange(100)
                    ttl = rng.choice([None, None, 1.0, 20.0])
                    cache.put(key, value, ttl=ttl)
                    tally["puts"] += 1
                elif op < 0.82:
                    if cache.pop(key, None) is not None:
                        tally["removed"] += 1
                elif op < 0.87:
                    try:
                        del cache[key]
                    except KeyError:
                        pass
                    else:
                        tally["removed"] += 1
                elif op < 0.92:
                    cache.peek(key)
                    _ = key in cache
                elif op < 0.95:
                    clock.advance(0.5)
                elif op < 0.97:
                    cache.expire()
                elif op < 0.99:
                    assert len(cache) <= MAXSIZE
                    assert sum(weigh(v) for _, v in cache.items()) <= MAXSIZE
                else:
                    stats = cache.statistics()
                    assert stats.weight <= MAXSIZE
                    assert stats.size <= stats.weight
        except BaseException as exc:
            errors.append(exc)
        tallies.append(tally)

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    total = sum(tallies, Counter())
    live = cache.items()  # drops what has expired, reporting it
    stats = cache.statistics()
    reasons = Counter(reason for _, _, reason in events)
    assert stats.size == len(live) <= MAXSIZE
    assert stats.weight == sum(weigh(value) for _, value in live) <= MAXSIZE
    assert stats.hits + stats.misses == total["gets"]
    assert stats.evictions == reasons[EvictionReason.CAPACITY]
    assert stats.expirations == reasons[EvictionReason.EXPIRED]
    # Every put created one item; each item was replaced, evicted, expired, removed, or is
    # still here.
    assert total["puts"] == (
        reasons[EvictionReason.REPLACED]
        + reasons[EvictionReason.CAPACITY]
        + reasons[EvictionReason.EXPIRED]
        + total["removed"]
        + len(live)
    )
    assert min(total["gets"], total["puts"], reasons[EvictionReason.CAPACITY]) > 0


def test_a_refused_put_in_a_thread_changes_nothing() -> None:
    cache = ThreadSafeLRUCache[str, str](3, getsizeof=len)
    cache.put("a", "xx")
    failures: list[BaseException] = []

    def heavy() -> None:
        try:
            cache.put("a", "xxxx")
        except InvalidArgumentError as exc:
            failures.append(exc)

    thread = threading.Thread(target=heavy)
    thread.start()
    thread.join()
    assert len(failures) == 1
    assert cache.items() == [("a", "xx")]
