"""RollingWindow: rolling buckets, ignore_current, rate, a brute-force reference, threads."""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Iterator
from dataclasses import FrozenInstanceError
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.metrics import RollingWindow, WindowBucket, WindowStatistics
from distsys.testing import ManualClock

# Each step: advance the clock by `advance` seconds, then add each value.
Step = tuple[float, list[float]]


def run(window_options: dict[str, Any], steps: list[Step]) -> WindowStatistics:
    clock = ManualClock()
    window = RollingWindow(clock=clock, **window_options)
    for advance, values in steps:
        clock.advance(advance)
        for value in values:
            window.add(value)
    return window.statistics()


@pytest.mark.parametrize(
    ("options", "steps", "expected"),
    [
        pytest.param(
            {"size": 3, "interval": 1.0},
            [(0.0, [1.0, 2.0]), (1.0, [3.0])],
            WindowStatistics(3, 6.0, 2.0, 1.0, 3.0, 6.0, 1.0),
            id="young window: rate over the 1 s it has seen",
        ),
        pytest.param(
            {"size": 3, "interval": 1.0},
            [(0.0, [1.0]), (1.0, [2.0]), (1.0, [3.0]), (1.0, [4.0])],
            WindowStatistics(3, 9.0, 3.0, 2.0, 4.0, 4.5, 2.0),
            id="bucket 0 rolled out at t=3",
        ),
        pytest.param(
            {"size": 3, "interval": 1.0},
            [(0.0, [5.0]), (2.5, [])],
            WindowStatistics(1, 5.0, 5.0, 5.0, 5.0, 2.0, 2.5),
            id="rate while young",
        ),
        pytest.param(
            {"size": 4, "interval": 0.5},
            [(0.0, [1.0] * 4), (0.5, [1.0] * 4), (0.5, [1.0] * 4), (0.5, [1.0] * 4), (0.5, [])],
            WindowStatistics(12, 12.0, 1.0, 1.0, 1.0, 8.0, 1.5),
            id="a steady 8/s stream reads 8/s right after a roll",
        ),
        pytest.param(
            {"size": 3, "interval": 1.0},
            [(0.0, [1.0, 2.0]), (1.0, [3.0]), (3.0, [])],
            WindowStatistics(0, 0.0, None, None, None, 0.0, 2.0),
            id="a gap as long as the window empties it",
        ),
        pytest.param(
            {"size": 3, "interval": 1.0},
            [(0.0, [9.0]), (1e6 + 0.5, [-2.0])],
            WindowStatistics(1, -2.0, -2.0, -2.0, -2.0, -2.0 / 2.5, 2.5),
            id="a very long gap: only the new value",
        ),
        pytest.param(
            {"size": 3, "interval": 1.0, "ignore_current": True},
            [(0.0, [1.0]), (0.5, [2.0])],
            WindowStatistics(0, 0.0, None, None, None, 0.0, 0.0),
            id="ignore_current: nothing complete yet",
        ),
        pytest.param(
            {"size": 3, "interval": 1.0, "ignore_current": True},
            [(0.0, [1.0]), (1.0, [2.0]), (1.0, [7.0]), (0.5, [])],
            WindowStatistics(2, 3.0, 1.5, 1.0, 2.0, 1.5, 2.0),
            id="ignore_current: the two completed buckets",
        ),
        pytest.param(
            {"size": 3, "interval": 1.0, "ignore_current": True},
            [(0.0, [1.0]), (1.0, [2.0]), (1.0, [7.0]), (1.0, [])],
            WindowStatistics(2, 9.0, 4.5, 2.0, 7.0, 4.5, 2.0),
            id="ignore_current: full, rate over exactly (size - 1) * interval",
        ),
        pytest.param(
            {"size": 1, "interval": 2.0},
            [(0.0, [1.0]), (1.0, [2.0]), (1.0, [4.0])],
            WindowStatistics(1, 4.0, 4.0, 4.0, 4.0, 0.0, 0.0),
            id="one bucket: just rolled, nothing covered yet, rate 0",
        ),
    ],
)
def test_statistics(options: dict[str, Any], steps: list[Step], expected: WindowStatistics) -> None:
    assert run(options, steps) == expected


def test_properties_read_the_same_as_statistics() -> None:
    clock = ManualClock()
    window = RollingWindow(5, 1.0, clock=clock)
    assert (window.count, window.sum, window.mean, window.min, window.max) == (
        0,
        0.0,
        None,
        None,
        None,
    )
    for value in (3, 1.5, -2):
        window.add(value)
    clock.advance(2.0)
    assert (window.count, window.sum, window.mean, window.min, window.max) == (
        3,
        2.5,
        2.5 / 3,
        -2,
        3,
    )
    assert window.rate() == 2.5 / 2.0


def test_add_defaults_to_one_event() -> None:
    window = RollingWindow(2, 1.0, clock=ManualClock())
    window.add()
    window.add()
    assert (window.count, window.sum) == (2, 2.0)


def test_buckets_lists_the_window_oldest_first() -> None:
    clock = ManualClock(100.0)
    window = RollingWindow(3, 1.0, clock=clock)
    window.add(1.0)
    clock.advance(2.0)
    window.add(4.0)
    window.add(2.0)
    assert window.buckets() == (
        WindowBucket(100.0, 1, 1.0, 1.0, 1.0),
        WindowBucket(101.0, 0, 0.0, None, None),
        WindowBucket(102.0, 2, 6.0, 2.0, 4.0),
    )
    assert max(b.count for b in window.buckets()) == 2  # a go-zero style reduction


def test_clear_empties_and_restarts() -> None:
    clock = ManualClock()
    window = RollingWindow(3, 1.0, clock=clock)
    window.add(5.0)
    clock.advance(10.0)
    window.clear()
    assert window.statistics() == WindowStatistics(0, 0.0, None, None, None, 0.0, 0.0)


def test_snapshots_are_frozen() -> None:
    stats = RollingWindow(2, 1.0, clock=ManualClock()).statistics()
    with pytest.raises(FrozenInstanceError):
        stats.count = 3  # type: ignore[misc]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**400])
def test_non_finite_values_are_refused_and_change_nothing(value: float) -> None:
    window = RollingWindow(2, 1.0, clock=ManualClock())
    window.add(1.0)
    with pytest.raises(InvalidArgumentError, match=r"value=.* a finite real number"):
        window.add(value)
    assert (window.count, window.sum) == (1, 1.0)


@pytest.mark.parametrize("value", ["1", None, True, 1j, [1.0]])
def test_non_numbers_are_refused(value: Any) -> None:
    window = RollingWindow(2, 1.0, clock=ManualClock())
    with pytest.raises(ArgumentTypeError, match="value="):
        window.add(value)
    assert window.count == 0


def test_float_subclasses_are_accepted() -> None:
    class Seconds(float):
        pass

    window = RollingWindow(2, 1.0, clock=ManualClock())
    window.add(Seconds(2.5))
    assert window.sum == 2.5


# -- a brute-force reference -------------------------------------------------------------
# Times and values are dyadic (multiples of 1/8, integers), so every float operation below
# is exact and the comparison can be exact too.


class Reference:
    """Stores every (time, value) and recomputes the window by its definition."""

    def __init__(self, size: int, interval: float, start: float, ignore_current: bool) -> None:
        self.size, self.interval, self.start = size, interval, start
        self.ignore_current = ignore_current
        self.events: list[tuple[float, float]] = []

    def epochs(self, now: float) -> range:
        current = math.floor((now - self.start) / self.interval)
        newest = current - 1 if self.ignore_current else current
        return range(max(current - self.size + 1, 0), newest + 1)

    def values(self, now: float) -> list[float]:
        live = self.epochs(now)
        return [v for t, v in self.events if math.floor((t - self.start) / self.interval) in live]

    def statistics(self, now: float) -> WindowStatistics:
        values = self.values(now)
        current = math.floor((now - self.start) / self.interval)
        oldest = self.start + max(current - self.size + 1, 0) * self.interval
        if self.ignore_current:
            covered = min(current, self.size - 1) * self.interval
        else:
            covered = now - oldest
        if not values:
            return WindowStatistics(0, 0.0, None, None, None, 0.0, covered)
        total = float(sum(values))
        rate = total / covered if covered > 0 else 0.0
        return WindowStatistics(
            len(values), total, total / len(values), min(values), max(values), rate, covered
        )


operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(-1000, 1000)),
        st.tuples(st.just("advance"), st.integers(0, 80)),  # eighths of a second
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(1, 6),
    interval=st.sampled_from([0.25, 0.5, 1.0, 2.0]),
    start=st.sampled_from([0.0, 1000.0, 12345.5]),
    ignore_current=st.booleans(),
    ops=operations,
)
def test_matches_a_brute_force_reference(
    size: int, interval: float, start: float, ignore_current: bool, ops: list[tuple[str, int]]
) -> None:
    if ignore_current and size == 1:
        size = 2
    clock = ManualClock(start)
    window = RollingWindow(size, interval, clock=clock, ignore_current=ignore_current)
    reference = Reference(size, interval, start, ignore_current)
    for op, amount in ops:
        if op == "add":
            window.add(float(amount))
            reference.events.append((clock.now(), float(amount)))
        else:
            clock.advance(amount / 8)
        assert window.statistics() == reference.statistics(clock.now())
    live = reference.epochs(clock.now())
    assert [b.start for b in window.buckets()] == [start + e * interval for e in live]


# -- threads ------------------------------------------------------------------------------


@pytest.fixture
def eager_switching() -> Iterator[None]:
    """Make the interpreter switch threads very often, so unguarded updates would race."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.mark.usefixtures("eager_switching")
def test_concurrent_adds_from_threads_lose_nothing_while_buckets_roll() -> None:
    clock = ManualClock()
    window = RollingWindow(100, 1.0, clock=clock)  # the test spans < 100 s: nothing expires
    threads, adds = 8, 5_000
    start = threading.Barrier(threads + 1)

    def adder(value: float) -> None:
        start.wait()
        for _ in range(adds):
            window.add(value)

    def ticker() -> None:
        start.wait()
        for _ in range(90):
            clock.advance(1.0)
            window.statistics()

    workers = [threading.Thread(target=adder, args=(float(i),)) for i in range(threads)]
    workers.append(threading.Thread(target=ticker))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stats = window.statistics()
    assert stats.count == threads * adds
    assert stats.sum == adds * sum(range(threads))
    assert (stats.min, stats.max) == (0.0, threads - 1)


def test_thread_safe_false_has_no_lock() -> None:
    window = RollingWindow(3, 1.0, clock=ManualClock(), thread_safe=False)
    window.add(2.0)
    assert window._lock is None
    assert not window.thread_safe
    assert window.sum == 2.0
