"""RateLimiter: allow, FIFO waits on a manual clock, deadlines refused up front, no leaks."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.context import background, with_cancel, with_timeout
from distsys.errors import (
    ArgumentTypeError,
    BlockingCallInLoopError,
    CanceledError,
    DeadlineExceededError,
    InvalidArgumentError,
    RateLimitedError,
    RejectedError,
)
from distsys.resilience._ratelimit import RateLimiter, RateLimiterStatistics
from distsys.testing import ManualClock
from tests.conftest import wait_until


async def until(predicate: Callable[[], bool]) -> None:
    """Let other tasks run until ``predicate()`` holds (no wall-clock involved)."""
    for _ in range(100_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


def limiter(clock: ManualClock, rate: float = 10.0, burst: int = 2) -> RateLimiter:
    return RateLimiter("api", rate=rate, burst=burst, clock=clock)


def test_allow_spends_the_burst_then_refuses_until_tokens_refill() -> None:
    clock = ManualClock()
    lim = limiter(clock)
    assert [lim.allow(), lim.allow(), lim.allow()] == [True, True, False]
    clock.advance(0.1)
    assert lim.allow()
    assert not lim.allow()
    clock.advance(10.0)
    assert lim.allow(2)
    assert lim.statistics() == RateLimiterStatistics("api", 10.0, 2, 0.0, 4, 2, 0, 0)


def test_retry_after_is_exact_and_takes_nothing() -> None:
    clock = ManualClock()
    lim = limiter(clock, rate=4.0, burst=2)
    lim.allow(2)
    assert lim.retry_after() == pytest.approx(0.25)
    assert lim.retry_after(2) == pytest.approx(0.5)
    clock.advance(0.1)
    assert lim.retry_after() == pytest.approx(0.15)
    assert lim.statistics().tokens == pytest.approx(0.4)


def test_acquire_returns_at_once_while_tokens_are_there() -> None:
    clock = ManualClock()
    lim = limiter(clock)
    lim.acquire()
    lim.acquire(ctx=background(clock=clock), timeout=0)
    assert clock.pending() == 0


def test_waiting_threads_are_served_first_come_first_served() -> None:
    clock = ManualClock()
    lim = limiter(clock, rate=10.0, burst=1)
    lim.allow()
    served: list[tuple[str, float]] = []

    def take(who: str, tokens: int) -> None:
        lim.acquire(tokens)
        served.append((who, clock.now()))

    first = threading.Thread(target=take, args=("first", 1))
    first.start()
    wait_until(lambda: clock.pending() == 1)
    second = threading.Thread(target=take, args=("second", 1))
    second.start()
    wait_until(lambda: clock.pending() == 2)
    assert not lim.allow()  # a newcomer cannot jump the queue
    assert lim.statistics().waiting == 2
    clock.advance(0.1)
    first.join(5)
    assert served == [("first", 0.1)]
    clock.advance(0.1)
    second.join(5)
    assert served == [("first", 0.1), ("second", pytest.approx(0.2))]
    assert lim.statistics().waiting == 0


async def test_waiting_tasks_sleep_until_their_tokens_are_due() -> None:
    clock = ManualClock()
    lim = limiter(clock, rate=2.0, burst=1)
    await lim.aacquire()
    task = asyncio.create_task(lim.aacquire())
    await until(lambda: clock.pending() > 0)
    assert clock.next_deadline() == pytest.approx(0.5)
    clock.advance(0.5)
    await task
    assert lim.statistics().granted == 2


@pytest.mark.parametrize("timeout", [0, 0.05, 0.0999])
def test_a_wait_longer_than_the_timeout_is_refused_at_once(timeout: float) -> None:
    clock = ManualClock()
    lim = limiter(clock, rate=10.0, burst=1)
    lim.allow()
    with pytest.raises(RateLimitedError) as info:
        lim.acquire(timeout=timeout)
    assert isinstance(info.value, RejectedError)
    assert info.value.name == "api"
    assert info.value.retry_after == pytest.approx(0.1)
    assert clock.pending() == 0  # no sleep
    assert lim.statistics().tokens == 0  # nothing reserved


def test_a_wait_that_would_reach_the_deadline_is_refused_without_sleeping() -> None:
    clock = ManualClock()
    lim = limiter(clock, rate=10.0, burst=1)
    lim.allow()
    ctx, _ = with_timeout(background(clock=clock), 0.1)
    with pytest.raises(RateLimitedError) as info:
        lim.acquire(ctx=ctx)
    assert info.value.retry_after == pytest.approx(0.1)
    assert clock.pending() == 0
    assert clock.now() == 0.0
    assert lim.statistics().rejected == 1


async def test_the_async_twin_refuses_a_wait_past_the_deadline_too() -> None:
    clock = ManualClock()
    lim = limiter(clock, rate=1.0, burst=1)
    await lim.aacquire()
    ctx, _ = with_timeout(background(clock=clock), 0.5)
    with pytest.raises(RateLimitedError, match=r"next token in 1\.000s"):
        await lim.aacquire(ctx=ctx)
    assert lim.statistics().tokens == 0


def test_a_context_that_has_ended_raises_its_error_and_takes_nothing() -> None:
    clock = ManualClock()
    lim = limiter(clock)
    ctx, cancel = with_cancel(background(clock=clock))
    cancel()
    with pytest.raises(CanceledError):
        lim.acquire(ctx=ctx)
    expired, _ = with_timeout(background(clock=clock), 0)
    with pytest.raises(DeadlineExceededError):
        lim.acquire(ctx=expired)
    assert lim.statistics().tokens == 2


def test_a_thread_whose_context_is_cancelled_while_waiting_gives_its_tokens_back() -> None:
    clock = ManualClock()
    lim = limiter(clock, rate=10.0, burst=1)
    lim.allow()
    ctx, cancel = with_cancel(background(clock=clock))
    raised: list[BaseException] = []

    def take() -> None:
        try:
            lim.acquire(ctx=ctx)
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=take)
    worker.start()
    wait_until(lambda: clock.pending() == 1)
    assert lim.statistics().tokens == -1
    cancel()
    worker.join(5)
    assert isinstance(raised[0], CanceledError)
    assert clock.pending() == 0
    stats = lim.statistics()
    assert (stats.tokens, stats.waiting, stats.canceled) == (0, 0, 1)
    clock.advance(0.1)
    assert lim.allow()  # due exactly when it would have been without the waiter


async def test_a_cancelled_task_gives_its_tokens_back() -> None:
    clock = ManualClock()
    lim = limiter(clock, rate=10.0, burst=2)
    lim.allow(2)
    tasks = [asyncio.create_task(lim.aacquire(2)) for _ in range(3)]
    await until(lambda: clock.pending() >= 3)
    assert lim.statistics().tokens == -6
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    stats = lim.statistics()
    assert (stats.tokens, stats.waiting, stats.canceled, stats.granted) == (0, 0, 3, 1)
    assert clock.pending() == 0


async def test_tasks_and_threads_share_one_bucket() -> None:
    clock = ManualClock()
    lim = limiter(clock, rate=10.0, burst=1)
    lim.allow()
    worker = threading.Thread(target=lim.acquire)
    worker.start()
    await asyncio.to_thread(wait_until, lambda: clock.pending() == 1)
    task = asyncio.create_task(lim.aacquire())
    await until(lambda: clock.pending() >= 2)
    assert clock.next_deadline() == pytest.approx(0.1)  # the thread came first
    clock.advance(0.1)
    await asyncio.to_thread(worker.join, 5)
    assert not task.done()
    clock.advance(0.1)
    await task
    assert lim.statistics().granted == 3


async def test_the_blocking_acquire_refuses_to_wait_on_an_event_loop_thread() -> None:
    clock = ManualClock()
    lim = limiter(clock, burst=1)
    lim.acquire()  # no wait needed: fine
    with pytest.raises(BlockingCallInLoopError):
        lim.acquire()
    assert lim.statistics().tokens == 0  # nothing reserved


@settings(max_examples=200, deadline=None)
@given(
    rate=st.sampled_from([1.0, 5.0, 20.0]),
    burst=st.integers(1, 5),
    steps=st.lists(st.tuples(st.floats(0.0, 0.7), st.integers(1, 5)), max_size=100),
)
def test_allowed_requests_never_exceed_rate_times_elapsed_plus_burst(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    clock = ManualClock()
    lim = limiter(clock, rate=rate, burst=burst)
    grants: list[tuple[float, int]] = []
    for advance, tokens in steps:
        clock.advance(advance)
        tokens = min(tokens, burst)
        if lim.allow(tokens):
            grants.append((clock.now(), tokens))
    for i in range(len(grants)):
        total = 0
        for j in range(i, len(grants)):
            total += grants[j][1]
            assert total <= rate * (grants[j][0] - grants[i][0]) + burst + 1e-9


def test_threads_hammering_allow_get_exactly_the_burst() -> None:
    lim = limiter(ManualClock(), rate=1.0, burst=50)
    barrier = threading.Barrier(8)
    won: list[int] = []

    def hammer() -> None:
        barrier.wait()
        won.append(sum(lim.allow() for _ in range(100)))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sum(won) == 50


@pytest.mark.parametrize(
    ("options", "field", "error"),
    [
        ({"rate": 0, "burst": 1}, "rate", InvalidArgumentError),
        ({"rate": -5, "burst": 1}, "rate", InvalidArgumentError),
        ({"rate": math.inf, "burst": 1}, "rate", InvalidArgumentError),
        ({"rate": None, "burst": 1}, "rate", ArgumentTypeError),
        ({"rate": 1, "burst": 0}, "burst", InvalidArgumentError),
        ({"rate": 1, "burst": -2}, "burst", InvalidArgumentError),
        ({"rate": 1, "burst": 1.0}, "burst", ArgumentTypeError),
        ({"rate": 1, "burst": 1, "clock": 3}, "clock", ArgumentTypeError),
    ],
)
def test_bad_configuration_fails_at_construction(
    options: dict[str, Any], field: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        RateLimiter("api", **options)
    assert info.value.field == field  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("call", "field", "error"),
    [
        (lambda lim: lim.allow(0), "tokens", InvalidArgumentError),
        (lambda lim: lim.allow(3), "tokens", InvalidArgumentError),
        (lambda lim: lim.allow(1.0), "tokens", ArgumentTypeError),
        (lambda lim: lim.acquire(4), "tokens", InvalidArgumentError),
        (lambda lim: lim.retry_after(-1), "tokens", InvalidArgumentError),
        (lambda lim: lim.acquire(timeout=-1), "timeout", InvalidArgumentError),
        (lambda lim: lim.acquire(timeout="1s"), "timeout", ArgumentTypeError),
        (lambda lim: lim.acquire(ctx=1.0), "ctx", ArgumentTypeError),
    ],
)
def test_bad_arguments_fail_at_the_call(call: Any, field: str, error: type[Exception]) -> None:
    lim = limiter(ManualClock(), burst=2)
    with pytest.raises(error) as info:
        call(lim)
    assert info.value.field == field  # type: ignore[attr-defined]
    assert "[1, 2]" in str(info.value) or field != "tokens"


async def test_bad_arguments_fail_the_async_call_too() -> None:
    lim = limiter(ManualClock(), burst=2)
    with pytest.raises(InvalidArgumentError, match="tokens"):
        await lim.aacquire(3)


def test_bad_name_and_repr() -> None:
    with pytest.raises(InvalidArgumentError, match="name"):
        RateLimiter("", rate=1, burst=1)
    assert repr(RateLimiter("api", rate=2, burst=3)) == "RateLimiter('api', rate=2.0, burst=3)"
