"""The breaker's window counts: time buckets with marks, and the ring of the last N calls."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.resilience import CountWindow, TimeWindow
from distsys.resilience._breaker_window import CountCounts, TimeCounts, make_counts
from distsys.testing import ManualClock


def test_time_counts_add_the_lock_free_successes_by_mark() -> None:
    clock = ManualClock()
    counts = TimeCounts(TimeWindow(4.0, 4), clock)  # 1 s buckets
    ok = 0
    counts.reset(0.0, ok)
    ok += 5  # five plain successes in bucket 0
    counts.record(0.5, ok, True, False)
    assert counts.totals(ok) == (6, 1, 0)
    ok += 3
    counts.record(1.2, ok, False, True)  # rolls into bucket 1: its mark is 8
    assert counts.totals(ok) == (10, 1, 1)
    ok += 2
    counts.roll(3.9, ok)
    assert counts.totals(ok) == (12, 1, 1)
    counts.roll(4.0, ok)  # bucket 0 leaves: its 5 + 3 plain successes and the failure
    assert counts.totals(ok) == (3, 0, 1)  # the 2 plain successes and the slow call
    counts.roll(100.0, ok)
    assert counts.totals(ok) == (0, 0, 0)
    assert counts.next_roll == 101.0


def test_count_counts_keep_the_last_n_outcomes() -> None:
    counts = CountCounts(CountWindow(3))
    assert counts.next_roll == math.inf
    for failed, slow in [(True, True), (False, False), (True, False)]:
        counts.record(0.0, 0, failed, slow)
    assert counts.totals(0) == (3, 2, 1)
    counts.record(0.0, 0, False, False)  # the first (failed, slow) leaves
    assert counts.totals(0) == (3, 1, 0)
    counts.roll(1e9, 0)  # time does not matter
    assert counts.totals(123) == (3, 1, 0)
    counts.reset(0.0, 0)
    assert counts.totals(0) == (0, 0, 0)


def test_make_counts_picks_the_shape() -> None:
    clock = ManualClock()
    assert isinstance(make_counts(TimeWindow(), clock), TimeCounts)
    assert isinstance(make_counts(CountWindow(), clock), CountCounts)


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 20),
    events=st.lists(st.tuples(st.booleans(), st.booleans()), max_size=100),
)
def test_count_counts_match_the_last_n_outcomes(size: int, events: list[tuple[bool, bool]]) -> None:
    counts = CountCounts(CountWindow(size))
    for failed, slow in events:
        counts.record(0.0, 0, failed, slow)
    last = events[-size:]
    assert counts.totals(0) == (len(last), sum(f for f, _ in last), sum(s for _, s in last))


@settings(max_examples=200, deadline=None)
@given(
    buckets=st.integers(1, 8),
    events=st.lists(
        st.tuples(st.floats(0, 3), st.sampled_from(["plain", "fail", "slow", "ok"])),
        max_size=80,
    ),
)
def test_time_counts_match_a_plain_recount(buckets: int, events: list[tuple[float, str]]) -> None:
    """Totals equal a recount of the events whose bucket is in the window."""
    clock = ManualClock()
    spec = TimeWindow(float(buckets), buckets)  # 1 s buckets
    counts = TimeCounts(spec, clock)
    ok, now, seen = 0, 0.0, []
    counts.reset(now, ok)
    for gap, kind in events:
        now += gap
        if kind == "plain":  # what the hot path does: no roll needed, just a tick
            counts.roll(now, ok)
            ok += 1
        else:
            counts.record(now, ok, kind == "fail", kind == "slow")
        seen.append((math.floor(now), kind))
    counts.roll(now, ok)
    current = math.floor(now)
    live = [kind for bucket, kind in seen if bucket > current - buckets]
    expected = (len(live), live.count("fail"), live.count("slow"))
    assert counts.totals(ok) == expected
