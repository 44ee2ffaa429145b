"""RollingCounter: named counts, running totals kept exact as buckets roll, threads."""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.metrics import CounterBucket, CounterStatistics, RollingCounter
from distsys.testing import ManualClock

FIELDS = ("calls", "failures", "slow")


def breaker_window(clock: ManualClock, **options: Any) -> RollingCounter:
    return RollingCounter(3, 1.0, fields=FIELDS, clock=clock, **options)


def test_add_counts_per_field_and_bools_count_as_one() -> None:
    window = breaker_window(ManualClock())
    window.add(1, True, False)
    window.add(1, False, True)
    window.add(1)
    assert window.totals() == (3, 1, 1)
    assert window.total("failures") == 1


def test_add_without_amounts_counts_one_in_the_first_field() -> None:
    window = RollingCounter(2, 1.0, clock=ManualClock())
    window.add()
    window.add()
    assert window.fields == ("count",)
    assert window.totals() == (2,)


@pytest.mark.parametrize(
    ("ignore_current", "steps", "totals"),
    [
        (False, [(0.0, 2), (1.0, 3), (1.0, 4)], (9, 9, 0)),
        (False, [(0.0, 2), (1.0, 3), (1.0, 4), (1.0, 0)], (7, 7, 0)),  # bucket 0 left
        (False, [(0.0, 2), (1.0, 3), (5.0, 0)], (0, 0, 0)),  # a long gap resets all
        (True, [(0.0, 2), (1.0, 3)], (2, 2, 0)),
        (True, [(0.0, 2), (1.0, 3), (1.0, 4), (1.0, 1)], (7, 7, 0)),
    ],
)
def test_totals_follow_the_window(
    ignore_current: bool, steps: list[tuple[float, int]], totals: tuple[int, ...]
) -> None:
    clock = ManualClock()
    window = breaker_window(clock, ignore_current=ignore_current)
    for advance, failures in steps:
        clock.advance(advance)
        for _ in range(failures):
            window.add(1, 1)
    assert window.totals() == totals


def test_statistics_by_name_and_rate() -> None:
    clock = ManualClock()
    window = breaker_window(clock)
    window.add(4, 1, 2)
    clock.advance(2.0)
    stats = window.statistics()
    assert stats == CounterStatistics(FIELDS, (4, 1, 2), 2.0)
    assert (stats["calls"], stats["slow"]) == (4, 2)
    assert stats.rate("calls") == 2.0
    assert stats.as_dict() == {"calls": 4, "failures": 1, "slow": 2}
    with pytest.raises(KeyError):
        stats["nope"]
    with pytest.raises(KeyError):
        window.total("nope")
    assert CounterStatistics(FIELDS, (1, 0, 0), 0.0).rate("calls") == 0.0


def test_buckets_oldest_first() -> None:
    clock = ManualClock()
    window = breaker_window(clock)
    window.add(1, 1)
    clock.advance(1.0)
    window.add(2)
    assert window.buckets() == (CounterBucket(0.0, (1, 1, 0)), CounterBucket(1.0, (2, 0, 0)))


def test_clear_resets_the_totals() -> None:
    clock = ManualClock()
    window = breaker_window(clock)
    window.add(5, 2, 1)
    window.clear()
    assert window.totals() == (0, 0, 0)
    window.add(1)
    assert window.totals() == (1, 0, 0)


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(2, 5),
    ignore_current=st.booleans(),
    ops=st.lists(
        st.one_of(
            st.tuples(st.integers(0, 9), st.integers(0, 9)),
            st.tuples(st.just(-1), st.integers(0, 30)),  # advance in quarters of a second
        ),
        max_size=50,
    ),
)
def test_running_totals_equal_the_sum_of_the_live_buckets(
    size: int, ignore_current: bool, ops: list[tuple[int, int]]
) -> None:
    clock = ManualClock()
    window = RollingCounter(
        size, 1.0, fields=("a", "b"), clock=clock, ignore_current=ignore_current
    )
    events: list[tuple[float, int, int]] = []
    for a, b in ops:
        if a < 0:
            clock.advance(b / 4)
            continue
        window.add(a, b)
        events.append((clock.now(), a, b))
        current = math.floor(clock.now())
        live = range(max(current - size + 1, 0), current if ignore_current else current + 1)
        expected = (
            sum(x for t, x, _ in events if math.floor(t) in live),
            sum(y for t, _, y in events if math.floor(t) in live),
        )
        assert window.totals() == expected
        per_bucket = [b.counts for b in window.buckets()]
        assert (sum(c[0] for c in per_bucket), sum(c[1] for c in per_bucket)) == expected


@pytest.mark.parametrize(
    ("amounts", "error", "accepted"),
    [
        ((1.0,), ArgumentTypeError, "an int >= 0"),
        (("1",), ArgumentTypeError, "an int >= 0"),
        ((1, None), ArgumentTypeError, "an int >= 0"),
        ((-1,), InvalidArgumentError, "an int >= 0"),
        ((1, 2, 3, 4), InvalidArgumentError, "at most 3 ints"),
    ],
)
def test_bad_amounts_are_refused_and_change_nothing(
    amounts: tuple[Any, ...], error: type[InvalidArgumentError], accepted: str
) -> None:
    window = breaker_window(ManualClock())
    window.add(1, 1, 1)
    with pytest.raises(error, match=accepted) as info:
        window.add(*amounts)
    assert info.value.field == "amounts"
    assert window.totals() == (1, 1, 1)


@pytest.mark.parametrize("fields", [(), ("a", "a"), ("a", ""), ("a", 1)])
def test_bad_fields_are_refused(fields: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="fields="):
        RollingCounter(3, 1.0, fields=fields)


@pytest.mark.parametrize("fields", ["calls", None, {"a", "b"}])
def test_fields_must_be_a_sequence_of_names(fields: Any) -> None:
    with pytest.raises(ArgumentTypeError, match="fields="):
        RollingCounter(3, 1.0, fields=fields)


@pytest.fixture
def eager_switching() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.mark.usefixtures("eager_switching")
def test_concurrent_adds_from_threads_lose_nothing() -> None:
    clock = ManualClock()
    window = RollingCounter(100, 1.0, fields=FIELDS, clock=clock)
    threads, adds = 8, 5_000
    start = threading.Barrier(threads + 1)

    def adder() -> None:
        start.wait()
        for i in range(adds):
            window.add(1, i % 2, i % 5 == 0)

    def ticker() -> None:
        start.wait()
        for _ in range(90):
            clock.advance(1.0)
            window.totals()

    workers = [threading.Thread(target=adder) for _ in range(threads)]
    workers.append(threading.Thread(target=ticker))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert window.totals() == (threads * adds, threads * adds // 2, threads * adds // 5)
