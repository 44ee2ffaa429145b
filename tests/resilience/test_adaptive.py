"""AdaptiveBreaker: the SRE rejection formula, statistically and exactly, and its API."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.errors import ArgumentTypeError, BreakerOpenError, InvalidArgumentError
from distsys.resilience import AdaptiveBreaker, Breaker, CountWindow, TimeWindow
from distsys.testing import ManualClock
from tests.resilience.breaker_helpers import Boom, Ignored, Stop


class NeverReject(random.Random):
    """Draws 1.0: a call is rejected only if the probability is 1 (it never is)."""

    def random(self) -> float:
        return 1.0


def formula(requests: int, accepts: int, k: float, protection: int) -> float:
    return max(0.0, (requests - protection - k * accepts) / (requests + 1))


def feed(breaker: AdaptiveBreaker, accepts: int, failures: int) -> None:
    for _ in range(accepts):
        breaker.allow().success()
    for _ in range(failures):
        # A local rejection counts as a request not accepted, as a failure does.
        with contextlib.suppress(BreakerOpenError):
            breaker.allow().failure()


@settings(max_examples=200, deadline=None)
@given(
    accepts=st.integers(0, 300),
    failures=st.integers(0, 300),
    k=st.floats(1.0, 4.0),
    protection=st.integers(0, 20),
)
def test_rejection_probability_is_the_sre_formula(
    accepts: int, failures: int, k: float, protection: int
) -> None:
    breaker = AdaptiveBreaker(
        "a", k=k, protection=protection, clock=ManualClock(), rng=NeverReject()
    )
    feed(breaker, accepts, failures)
    s = breaker.statistics()
    assert (s.requests, s.accepts) == (accepts + failures, accepts)
    expected = formula(accepts + failures, accepts, k, protection)
    assert s.reject_probability == pytest.approx(expected)
    assert breaker.reject_probability() == pytest.approx(expected)
    assert (s.k, s.protection, s.rejected) == (k, protection, 0)


def test_rejections_follow_the_formula_statistically() -> None:
    breaker = AdaptiveBreaker("a", clock=ManualClock(), rng=random.Random(20240601))
    feed(breaker, 300, 700)  # p = (1000 - 5 - 450) / 1001 = 0.54 and rising with rejections
    before = breaker.statistics().rejected
    expected = variance = 0.0
    rejections: list[BreakerOpenError] = []
    for _ in range(3000):
        p = breaker.reject_probability()
        expected += p
        variance += p * (1 - p)
        try:
            breaker.allow().ignore()  # admitted: not counted, so only rejections move p
        except BreakerOpenError as exc:
            rejections.append(exc)
    assert abs(len(rejections) - expected) < 4 * math.sqrt(variance)
    assert breaker.statistics().rejected - before == len(rejections)
    assert {exc.retry_after for exc in rejections} == {None}


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(st.tuples(st.floats(0, 5), st.integers(0, 30)), max_size=30),
    k=st.floats(1.0, 3.0),
    protection=st.integers(0, 10),
)
def test_never_rejects_while_the_backend_accepts_everything(
    steps: list[tuple[float, int]], k: float, protection: int
) -> None:
    clock = ManualClock()
    breaker = AdaptiveBreaker("a", k=k, protection=protection, clock=clock, rng=random.Random(1))
    for gap, calls in steps:
        clock.advance(gap)
        for _ in range(calls):
            assert breaker.call(lambda: 1) == 1
        assert breaker.reject_probability() == 0.0


@settings(max_examples=50, deadline=None)
@given(protection=st.integers(0, 20), seed=st.integers(0, 1000))
def test_protection_keeps_low_traffic_from_being_throttled(protection: int, seed: int) -> None:
    breaker = AdaptiveBreaker(
        "a", protection=protection, clock=ManualClock(), rng=random.Random(seed)
    )
    for _ in range(protection + 1):  # every one fails, yet none is rejected
        with pytest.raises(Boom):
            breaker.call(_raise, Boom())
    assert breaker.statistics().rejected == 0


def _raise(exc: BaseException) -> None:
    raise exc


def test_failures_leave_with_the_window() -> None:
    clock = ManualClock()
    breaker = AdaptiveBreaker("a", clock=clock, rng=NeverReject())
    feed(breaker, 0, 50)
    assert breaker.reject_probability() > 0.8
    clock.advance(9.9)
    assert breaker.reject_probability() > 0.8
    clock.advance(0.25)  # 40 buckets of 0.25 s: the failures' bucket has left
    assert breaker.reject_probability() == 0.0
    assert breaker.statistics().requests == 0


def test_a_custom_window() -> None:
    clock = ManualClock()
    breaker = AdaptiveBreaker("a", window=TimeWindow(1.0, 2), clock=clock, rng=NeverReject())
    feed(breaker, 0, 50)
    clock.advance(1.0)
    assert breaker.statistics().requests == 0


def test_what_counts_as_accepted() -> None:
    breaker = AdaptiveBreaker(
        "a",
        record_exceptions=Boom,
        ignore_exceptions=Ignored,
        clock=ManualClock(),
        rng=NeverReject(),
    )
    breaker.call(lambda: None)  # accepted
    for exc in (Boom(), LookupError(), Ignored(), Stop()):
        with pytest.raises(type(exc)):
            breaker.call(_raise, exc)
    s = breaker.statistics()
    # Boom: a request not accepted; LookupError: the backend answered (accepted);
    # Ignored and the BaseException: not counted at all.
    assert (s.requests, s.accepts) == (3, 2)


async def test_acall_and_the_async_decorator() -> None:
    breaker = AdaptiveBreaker("a", clock=ManualClock(), rng=NeverReject())

    @breaker
    async def fetch(fail: bool) -> str:
        await asyncio.sleep(0)
        if fail:
            raise Boom
        return "ok"

    assert await fetch(False) == "ok"
    with pytest.raises(Boom):
        await fetch(True)
    assert await breaker.acall(asyncio.sleep, 0, "x") == "x"
    s = breaker.statistics()
    assert (s.requests, s.accepts) == (3, 2)


async def test_cancellation_is_not_counted() -> None:
    breaker = AdaptiveBreaker("a", clock=ManualClock(), rng=NeverReject())
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(breaker.acall(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.statistics().requests == 0


def test_sync_decorator_with_blocks_and_permits() -> None:
    breaker = AdaptiveBreaker("a", clock=ManualClock(40.0), rng=NeverReject())

    @breaker
    def double(x: int) -> int:
        return 2 * x

    assert double(4) == 8
    with breaker as permit:
        assert permit.started == 40.0
    with pytest.raises(Boom), breaker:
        raise Boom
    permit = breaker.allow()
    assert permit.success() is True
    assert permit.failure() is False
    assert permit.done
    with breaker.allow() as permit:
        permit.ignore()
    s = breaker.statistics()
    assert (s.requests, s.accepts) == (4, 3)


def test_rejected_calls_do_not_run() -> None:
    breaker = AdaptiveBreaker("a", protection=0, clock=ManualClock(), rng=random.Random(3))
    feed(breaker, 0, 200)
    ran = []
    rejected = 0
    for _ in range(100):
        try:
            breaker.call(ran.append, 1)
        except BreakerOpenError:
            rejected += 1
    assert rejected > 90
    assert len(ran) == 100 - rejected


def test_reset_forgets_the_window() -> None:
    breaker = AdaptiveBreaker("a", clock=ManualClock(), rng=NeverReject())
    feed(breaker, 0, 30)
    breaker.reset()
    assert breaker.statistics().requests == 0
    assert repr(breaker) == "AdaptiveBreaker('a', k=1.5, protection=5)"
    assert breaker.name == "a"
    assert isinstance(breaker, Breaker)


def test_threads_lose_no_count() -> None:
    breaker = AdaptiveBreaker("a", clock=ManualClock(), rng=NeverReject())

    def caller() -> None:
        for i in range(2000):
            with contextlib.suppress(Boom):
                breaker.call(_raise if i % 4 == 0 else _noop, Boom())

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    s = breaker.statistics()
    assert (s.requests, s.accepts) == (16000, 12000)


def _noop(exc: BaseException) -> None:
    return None


BAD: list[tuple[dict[str, Any], str, type[InvalidArgumentError]]] = [
    ({"k": 0}, "k", InvalidArgumentError),
    ({"k": -1.5}, "k", InvalidArgumentError),
    ({"k": 0.9}, "k", InvalidArgumentError),
    ({"k": float("inf")}, "k", InvalidArgumentError),
    ({"k": "1.5"}, "k", ArgumentTypeError),
    ({"protection": -1}, "protection", InvalidArgumentError),
    ({"protection": 1.5}, "protection", ArgumentTypeError),
    ({"window": CountWindow(10)}, "window", ArgumentTypeError),
    ({"window": "time"}, "window", ArgumentTypeError),
    ({"rng": 42}, "rng", ArgumentTypeError),
    ({"clock": object()}, "clock", ArgumentTypeError),
    ({"record_exceptions": 3}, "record_exceptions", ArgumentTypeError),
]


@pytest.mark.parametrize(("changes", "field", "error"), BAD, ids=[b[1] for b in BAD])
def test_bad_settings_fail_naming_the_field(
    changes: dict[str, Any], field: str, error: type[InvalidArgumentError]
) -> None:
    with pytest.raises(error) as caught:
        AdaptiveBreaker("a", **changes)
    assert caught.value.field == field
    assert caught.value.accepted in str(caught.value)
