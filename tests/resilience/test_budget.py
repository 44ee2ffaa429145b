"""RetryBudget: a share of recent requests, a per-window floor, exact arithmetic, threads."""

from __future__ import annotations

import math
import threading
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.resilience._budget import RetryBudget, RetryBudgetStatistics
from distsys.testing import ManualClock


def grants(budget: RetryBudget, tries: int) -> int:
    return sum(budget.try_retry() for _ in range(tries))


def test_without_requests_only_the_floor_is_allowed() -> None:
    budget = RetryBudget(clock=ManualClock())
    assert grants(budget, 10) == 3


@pytest.mark.parametrize(
    ("share", "min_retries", "requests", "allowed"),
    [
        (0.2, 3, 100, 20),
        (0.2, 3, 10, 3),  # 20% of 10 is 2: the floor of 3 wins
        (0.2, 0, 14, 2),  # 2.8 rounds down: never more than the share
        (0.1, 0, 30, 3),  # 0.1 * 30 is 3.0000000000000004 in floats
        (0.29, 0, 100, 29),  # 0.29 * 100 is 28.999999999999996 in floats
        (0.0, 0, 1000, 0),
        (0.0, 5, 1000, 5),
        (1.0, 0, 7, 7),
    ],
)
def test_retries_are_a_share_of_requests_with_a_floor(
    share: float, min_retries: int, requests: int, allowed: int
) -> None:
    budget = RetryBudget(share, min_retries=min_retries, clock=ManualClock())
    for _ in range(requests):
        budget.record_request()
    assert budget.statistics().available == allowed
    assert grants(budget, allowed + 10) == allowed
    assert budget.statistics().available == 0


def test_counts_leave_the_window_a_bucket_at_a_time() -> None:
    clock = ManualClock()
    budget = RetryBudget(0.5, min_retries=0, window=10.0, buckets=10, clock=clock)
    for _ in range(10):
        budget.record_request()
    assert grants(budget, 10) == 5
    clock.advance(9.5)
    assert grants(budget, 1) == 0  # still in the window
    clock.advance(0.5)  # bucket 0 (requests and retries alike) leaves
    assert budget.statistics().requests == 0
    assert grants(budget, 1) == 0
    for _ in range(4):
        budget.record_request()
    assert grants(budget, 10) == 2


def test_statistics_report_the_window_and_the_totals() -> None:
    clock = ManualClock()
    budget = RetryBudget(0.25, min_retries=1, window=5.0, clock=clock)
    for _ in range(8):
        budget.record_request()
    grants(budget, 3)
    assert budget.statistics() == RetryBudgetStatistics(
        share=0.25,
        min_retries=1,
        window=5.0,
        requests=8,
        retries=2,
        available=0,
        granted=2,
        denied=1,
    )
    assert repr(budget) == "RetryBudget(share=0.25, min_retries=1, window=5.0)"


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.just("request"),
            st.just("retry"),
            st.sampled_from([0.5, 1.0, 3.0, 12.0]),  # an advance of the clock
        ),
        max_size=300,
    ),
    share=st.sampled_from([0.0, 0.1, 0.2, 0.29, 0.5, 1.0]),
    min_retries=st.integers(0, 4),
)
def test_retries_never_exceed_the_budget_over_random_sequences(
    ops: list[Any], share: float, min_retries: int
) -> None:
    clock = ManualClock()
    budget = RetryBudget(share, min_retries=min_retries, window=10.0, buckets=10, clock=clock)
    events: list[tuple[int, str]] = []  # (bucket number, kind): the reference model

    def in_window(kind: str) -> int:
        now = math.floor(clock.now())
        return sum(1 for bucket, k in events if k == kind and now - bucket < 10)

    for op in ops:
        if op == "request":
            budget.record_request()
            events.append((math.floor(clock.now()), "request"))
        elif op == "retry":
            allowance = max(min_retries, math.floor(Fraction(repr(share)) * in_window("request")))
            granted = budget.try_retry()
            assert granted == (in_window("retry") + 1 <= allowance)
            if granted:
                events.append((math.floor(clock.now()), "retry"))
                assert in_window("retry") <= max(min_retries, share * in_window("request") + 1e-9)
        else:
            clock.advance(op)
        stats = budget.statistics()
        assert (stats.requests, stats.retries) == (in_window("request"), in_window("retry"))


def test_concurrent_callers_never_overdraw_the_budget() -> None:
    budget = RetryBudget(0.1, min_retries=0, clock=ManualClock())
    for _ in range(1000):
        budget.record_request()
    barrier = threading.Barrier(8)
    won: list[int] = []

    def spend() -> None:
        barrier.wait()
        won.append(grants(budget, 100))

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sum(won) == 100
    assert budget.statistics().denied == 700


@pytest.mark.parametrize(
    ("options", "field", "error"),
    [
        ({"share": 1.5}, "share", InvalidArgumentError),
        ({"share": -0.1}, "share", InvalidArgumentError),
        ({"share": math.nan}, "share", InvalidArgumentError),
        ({"share": "20%"}, "share", ArgumentTypeError),
        ({"min_retries": -1}, "min_retries", InvalidArgumentError),
        ({"min_retries": 1.5}, "min_retries", ArgumentTypeError),
        ({"window": 0}, "window", InvalidArgumentError),
        ({"window": -5}, "window", InvalidArgumentError),
        ({"buckets": 0}, "buckets", InvalidArgumentError),
        ({"clock": object()}, "clock", ArgumentTypeError),
    ],
)
def test_bad_configuration_fails_at_construction_naming_the_field(
    options: dict[str, Any], field: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        RetryBudget(**options)
    assert info.value.field == field  # type: ignore[attr-defined]
    assert info.value.accepted  # type: ignore[attr-defined]
