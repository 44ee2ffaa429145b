"""Backoff and RetryPolicy: the pure part of retrying (delays, what to retry, when to stop)."""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.resilience._retry_policy import Backoff, RetryDecision, RetryPolicy


@pytest.mark.parametrize(
    ("base", "cap", "multiplier", "ceilings"),
    [
        (0.1, 1.0, 2.0, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]),
        (1.0, 100.0, 3.0, [1.0, 3.0, 9.0, 27.0, 81.0, 100.0]),
        (0.5, 0.5, 2.0, [0.5, 0.5, 0.5]),
        (0.2, 10.0, 1.0, [0.2, 0.2, 0.2]),  # multiplier 1: constant backoff
    ],
)
def test_ceilings_grow_exponentially_up_to_the_cap(
    base: float, cap: float, multiplier: float, ceilings: list[float]
) -> None:
    backoff = Backoff(base, cap, multiplier=multiplier, jitter=False)
    got = [backoff.ceiling(n) for n in range(len(ceilings))]
    assert got == pytest.approx(ceilings)
    assert [backoff.delay(n) for n in range(len(ceilings))] == pytest.approx(ceilings)


def test_full_jitter_draws_each_delay_uniformly_below_its_ceiling() -> None:
    backoff = Backoff(0.1, 1.0, rng=random.Random(7))
    expected_rng = random.Random(7)
    for n in range(8):
        assert backoff.delay(n) == backoff.ceiling(n) * expected_rng.random()


def test_a_seeded_schedule_is_reproducible() -> None:
    one = Backoff(0.05, 2.0, rng=random.Random(42))
    two = Backoff(0.05, 2.0, rng=random.Random(42))
    assert [one.delay(n) for n in range(10)] == [two.delay(n) for n in range(10)]


def test_huge_retry_numbers_reach_the_cap_without_overflow() -> None:
    backoff = Backoff(0.1, 30.0, jitter=False)
    assert backoff.ceiling(10_000) == 30.0
    assert backoff.delay(10**9) == 30.0


@given(
    base=st.floats(1e-6, 10.0),
    spread=st.floats(1.0, 1000.0),
    multiplier=st.floats(1.0, 10.0),
    retry=st.integers(0, 5000),
    seed=st.integers(0, 2**32),
)
def test_jittered_delays_stay_within_zero_and_the_ceiling(
    base: float, spread: float, multiplier: float, retry: int, seed: int
) -> None:
    cap = base * spread
    backoff = Backoff(base, cap, multiplier=multiplier, rng=random.Random(seed))
    try:
        bound = min(cap, base * multiplier**retry)
    except OverflowError:
        bound = cap
    assert backoff.ceiling(retry) == bound
    assert 0.0 <= backoff.delay(retry) <= bound


class Boom(Exception):
    pass


class Other(Exception):
    pass


def policy(**options: Any) -> RetryPolicy:
    options.setdefault("backoff", Backoff(0.1, 1.0, jitter=False))
    return RetryPolicy(3, **options)


@pytest.mark.parametrize(
    ("attempt", "error", "remaining", "decision"),
    [
        (1, Boom(), None, RetryDecision(True, 0.1)),
        (2, Boom(), None, RetryDecision(True, 0.2)),
        (3, Boom(), None, RetryDecision(False, reason="attempts exhausted")),
        (1, Boom(), 0.5, RetryDecision(True, 0.1)),
        (2, Boom(), 0.2, RetryDecision(False, 0.2, "deadline")),  # would start at it
        (2, Boom(), 0.15, RetryDecision(False, 0.2, "deadline")),
        (1, Boom(), -1.0, RetryDecision(False, 0.1, "deadline")),
        (1, KeyError("k"), None, RetryDecision(False, reason="not retryable")),
    ],
)
def test_decide(
    attempt: int, error: BaseException, remaining: float | None, decision: RetryDecision
) -> None:
    assert policy(retry_on=Boom).decide(attempt, error, remaining) == decision


@pytest.mark.parametrize(
    "error",
    [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(1), GeneratorExit()],
)
def test_cancellation_and_interrupts_are_never_retried(error: BaseException) -> None:
    everything = policy(retry_on=BaseException, retry_if=lambda e: True)
    assert not everything.retryable(error)
    assert everything.decide(1, error).reason == "not retryable"


def test_retry_on_takes_a_class_or_a_tuple_and_retry_if_narrows_it() -> None:
    assert policy(retry_on=(Boom, Other)).retryable(Other())
    assert not policy(retry_on=Boom).retryable(Other())
    only_transient = policy(retry_on=OSError, retry_if=lambda e: getattr(e, "errno", 0) == 11)
    assert only_transient.retryable(OSError(11, "try again"))
    assert not only_transient.retryable(OSError(2, "no such file"))
    assert not only_transient.retryable(ValueError())


def test_defaults_retry_every_exception_three_times() -> None:
    default = RetryPolicy()
    assert default.attempts == 3
    assert default.retryable(ValueError())
    assert default.backoff.base == 0.1
    assert default.backoff.cap == 10.0
    assert "attempts=3" in repr(default)


@pytest.mark.parametrize(
    ("options", "field", "error"),
    [
        ({"base": 0}, "base", InvalidArgumentError),
        ({"base": -0.1}, "base", InvalidArgumentError),
        ({"base": math.nan}, "base", InvalidArgumentError),
        ({"base": math.inf}, "base", InvalidArgumentError),
        ({"base": "0.1"}, "base", ArgumentTypeError),
        ({"base": 1.0, "cap": 0.5}, "cap", InvalidArgumentError),
        ({"cap": 0}, "cap", InvalidArgumentError),
        ({"cap": math.inf}, "cap", InvalidArgumentError),
        ({"multiplier": 0.5}, "multiplier", InvalidArgumentError),
        ({"multiplier": None}, "multiplier", ArgumentTypeError),
        ({"jitter": "full"}, "jitter", ArgumentTypeError),
        ({"rng": object()}, "rng", ArgumentTypeError),
    ],
)
def test_bad_backoff_fails_at_construction_naming_the_field(
    options: dict[str, Any], field: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        Backoff(**options)
    assert info.value.field == field  # type: ignore[attr-defined]
    assert info.value.accepted  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("options", "field", "error"),
    [
        ({"attempts": 0}, "attempts", InvalidArgumentError),
        ({"attempts": -3}, "attempts", InvalidArgumentError),
        ({"attempts": 2.0}, "attempts", ArgumentTypeError),
        ({"attempts": True}, "attempts", ArgumentTypeError),
        ({"retry_on": "ValueError"}, "retry_on", ArgumentTypeError),
        ({"retry_on": ()}, "retry_on", ArgumentTypeError),
        ({"retry_on": (ValueError, int)}, "retry_on", ArgumentTypeError),
        ({"retry_if": 3}, "retry_if", ArgumentTypeError),
        ({"backoff": 0.1}, "backoff", ArgumentTypeError),
    ],
)
def test_bad_policy_fails_at_construction_naming_the_field(
    options: dict[str, Any], field: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        RetryPolicy(**options)
    assert info.value.field == field  # type: ignore[attr-defined]
