"""TokenBucket: refill, reservations, give-backs, and the rate x time + burst bound."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.resilience._ratelimit_bucket import TokenBucket


def test_a_bucket_starts_full_and_refills_up_to_its_burst() -> None:
    bucket = TokenBucket(10.0, 3, now=100.0)
    assert bucket.level(100.0) == 3
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.level(100.0) == 0
    assert bucket.level(100.15) == pytest.approx(1.5)
    assert bucket.level(200.0) == 3  # capped


@pytest.mark.parametrize(
    ("rate", "burst", "takes", "waits"),
    [
        (10.0, 1, [1, 1, 1], [0.0, 0.1, 0.2]),  # reservations queue up
        (10.0, 5, [5, 1, 5], [0.0, 0.1, 0.6]),
        (2.0, 4, [3, 3], [0.0, 1.0]),
        (0.5, 1, [1, 1], [0.0, 2.0]),
    ],
)
def test_take_reserves_and_returns_the_wait(
    rate: float, burst: int, takes: list[int], waits: list[float]
) -> None:
    bucket = TokenBucket(rate, burst)
    assert [bucket.take(0.0, n) for n in takes] == pytest.approx(waits)


def test_wait_time_is_exact_and_takes_nothing() -> None:
    bucket = TokenBucket(4.0, 2)
    bucket.take(0.0, 2)
    assert bucket.wait_time(0.0, 1) == pytest.approx(0.25)
    assert bucket.wait_time(0.0, 2) == pytest.approx(0.5)
    assert bucket.wait_time(0.1, 1) == pytest.approx(0.15)
    assert bucket.wait_time(0.25, 1) == 0.0
    assert bucket.level(0.25) == pytest.approx(1.0)


def test_giving_back_restores_the_level_as_if_never_asked() -> None:
    bucket = TokenBucket(10.0, 2)
    bucket.take(0.0, 2)
    assert bucket.take(0.0, 1) == pytest.approx(0.1)  # a waiter
    behind = bucket.take(0.0, 1)  # and one behind it
    bucket.give_back(0.05, 1)  # the first waiter was cancelled
    assert behind == pytest.approx(0.2)  # keeps its (now pessimistic) wait
    assert bucket.level(0.05) == pytest.approx(-0.5)
    bucket.give_back(10.0, 1)
    assert bucket.level(10.0) == 2  # never above the burst


def test_time_going_backwards_counts_as_no_time() -> None:
    bucket = TokenBucket(1.0, 1, now=10.0)
    bucket.take(10.0)
    assert bucket.level(5.0) == 0.0
    assert bucket.wait_time(5.0) == pytest.approx(1.0)
    assert "rate=1.0" in repr(bucket)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1.0, 3.0, 10.0, 250.0]),
    burst=st.integers(1, 8),
    ops=st.lists(
        st.tuples(st.floats(0.0, 2.0), st.integers(1, 8), st.booleans(), st.booleans()),
        max_size=80,
    ),
)
def test_grants_never_exceed_rate_times_time_plus_burst(
    rate: float, burst: int, ops: list[tuple[float, int, bool, bool]]
) -> None:
    """Over every interval [t1, t2], tokens granted (when due) <= rate*(t2-t1) + burst."""
    bucket = TokenBucket(rate, burst)
    now = 0.0
    granted: list[tuple[float, int]] = []  # (when due, tokens)
    pending: list[tuple[float, int]] = []
    for advance, tokens, wait_allowed, cancel in ops:
        now += advance
        tokens = min(tokens, burst)
        # Waiters whose time has come are granted; a cancelled one gives back first.
        for due, n in list(pending):
            if due <= now:
                pending.remove((due, n))
                granted.append((due, n))
        if not wait_allowed:  # allow(): take only what is there now
            if bucket.wait_time(now, tokens) == 0:
                bucket.take(now, tokens)
                granted.append((now, tokens))
            continue
        wait = bucket.take(now, tokens)
        if cancel and wait > 0:
            bucket.give_back(now + wait / 2, tokens)
            now += wait / 2
        else:
            pending.append((now + wait, tokens))
    granted.extend(pending)
    granted.sort()
    for i in range(len(granted)):
        total = 0
        for j in range(i, len(granted)):
            total += granted[j][1]
            assert total <= rate * (granted[j][0] - granted[i][0]) + burst + 1e-6


@pytest.mark.parametrize(
    ("options", "field", "error"),
    [
        ({"rate": 0, "burst": 1}, "rate", InvalidArgumentError),
        ({"rate": -1, "burst": 1}, "rate", InvalidArgumentError),
        ({"rate": math.inf, "burst": 1}, "rate", InvalidArgumentError),
        ({"rate": math.nan, "burst": 1}, "rate", InvalidArgumentError),
        ({"rate": "10/s", "burst": 1}, "rate", ArgumentTypeError),
        ({"rate": 1, "burst": 0}, "burst", InvalidArgumentError),
        ({"rate": 1, "burst": 2.5}, "burst", ArgumentTypeError),
        ({"rate": 1, "burst": True}, "burst", ArgumentTypeError),
    ],
)
def test_bad_configuration_names_the_field(
    options: dict[str, Any], field: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        TokenBucket(**options)
    assert info.value.field == field  # type: ignore[attr-defined]
