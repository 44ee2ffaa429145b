"""Retry drivers: schedules on a manual clock, deadlines never overslept, budgets, notes."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.context import Context, background, with_cancel, with_timeout
from distsys.errors import (
    ArgumentTypeError,
    BlockingCallInLoopError,
    CanceledError,
    DeadlineExceededError,
    InvalidArgumentError,
)
from distsys.resilience._budget import RetryBudget
from distsys.resilience._retry import Retry, RetryStatistics
from distsys.testing import ManualClock
from tests.conftest import wait_until


async def until(predicate: Callable[[], bool]) -> None:
    """Let other tasks run until ``predicate()`` holds (no wall-clock involved)."""
    for _ in range(100_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


class JumpClock(ManualClock):
    """Virtual time: each timer fires as soon as it is set, the clock jumping to it."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> Any:
        timer = super().call_later(delay, callback)
        self.advance(max(delay, 0.0))
        return timer


class Flaky:
    """Fails ``failures`` times with ``error``, then returns ``result``; notes call times."""

    def __init__(
        self, clock: ManualClock, failures: int, error: type[Exception] = ConnectionError
    ) -> None:
        self.clock = clock
        self.failures = failures
        self.error = error
        self.times: list[float] = []
        self.errors: list[Exception] = []

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.times.append(self.clock.now())
        if len(self.times) <= self.failures:
            error = self.error(f"failure {len(self.times)}")
            self.errors.append(error)
            raise error
        return "ok"

    async def acall(self, *args: Any, **kwargs: Any) -> str:
        return self(*args, **kwargs)


def retry(clock: ManualClock, **options: Any) -> Retry:
    options.setdefault("jitter", False)
    return Retry(options.pop("attempts", 4), clock=clock, **options)


# ---------------------------------------------------------------------- schedules


@pytest.mark.parametrize(
    ("options", "failures", "times"),
    [
        ({"base": 0.1}, 3, [0.0, 0.1, 0.3, 0.7]),
        ({"base": 0.1, "cap": 0.25}, 3, [0.0, 0.1, 0.3, 0.55]),
        ({"base": 1.0, "multiplier": 3.0}, 2, [0.0, 1.0, 4.0]),
        ({"base": 0.5, "multiplier": 1.0}, 3, [0.0, 0.5, 1.0, 1.5]),
        ({"base": 0.1}, 0, [0.0]),
    ],
)
def test_attempts_follow_the_backoff_schedule(
    options: dict[str, Any], failures: int, times: list[float]
) -> None:
    clock = JumpClock()
    flaky = Flaky(clock, failures)
    assert retry(clock, **options).call(flaky) == "ok"
    assert flaky.times == pytest.approx(times)


def test_full_jitter_sleeps_the_seeded_delays() -> None:
    clock = JumpClock()
    flaky = Flaky(clock, 3)
    seeded = Retry(4, base=0.1, cap=1.0, clock=clock, rng=random.Random(3))
    assert seeded.call(flaky) == "ok"
    draws = random.Random(3)
    gaps = [b - a for a, b in zip(flaky.times, flaky.times[1:], strict=False)]
    assert gaps == pytest.approx([c * draws.random() for c in (0.1, 0.2, 0.4)])
    assert all(0 <= gap <= ceiling for gap, ceiling in zip(gaps, (0.1, 0.2, 0.4), strict=True))


def test_a_thread_sleeps_on_the_manual_clock_until_it_is_advanced() -> None:
    clock = ManualClock()
    flaky = Flaky(clock, 2)
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(retry(clock).call(flaky)))
    worker.start()
    for expected in (0.1, 0.3):
        wait_until(lambda: clock.pending() == 1)
        assert clock.next_deadline() == pytest.approx(expected)
        clock.advance(clock.next_deadline() - clock.now())  # type: ignore[operator]
    worker.join(5)
    assert result == ["ok"]
    assert flaky.times == pytest.approx([0.0, 0.1, 0.3])


async def test_a_task_sleeps_on_the_manual_clock_until_it_is_advanced() -> None:
    clock = ManualClock()
    flaky = Flaky(clock, 2)
    task = asyncio.create_task(retry(clock).acall(flaky.acall))
    for expected in (0.1, 0.3):
        await until(lambda: clock.pending() > 0)
        assert clock.next_deadline() == pytest.approx(expected)
        clock.advance(clock.next_deadline() - clock.now())  # type: ignore[operator]
    assert await task == "ok"
    assert flaky.times == pytest.approx([0.0, 0.1, 0.3])


# ---------------------------------------------------------------------- giving up


def test_exhaustion_raises_the_last_error_itself_with_a_note() -> None:
    clock = JumpClock()
    flaky = Flaky(clock, 10)
    driver = retry(clock, attempts=3, name="db")
    with pytest.raises(ConnectionError) as info:
        driver.call(flaky)
    assert info.value is flaky.errors[-1]
    assert str(info.value) == "failure 3"
    assert info.value.__notes__ == ["db: gave up after 3 attempts: no attempts left"]
    assert driver.statistics() == RetryStatistics("db", 1, 3, 2, 0, 0, 1, 0, 0)
    assert driver.statistics().gave_up == 1


async def test_async_exhaustion_raises_the_last_error_with_a_note() -> None:
    clock = JumpClock()
    flaky = Flaky(clock, 10)
    with pytest.raises(ConnectionError, match="failure 2") as info:
        await retry(clock, attempts=2).acall(flaky.acall)
    assert info.value.__notes__ == ["retry: gave up after 2 attempts: no attempts left"]


def test_one_attempt_means_no_retry() -> None:
    clock = JumpClock()
    flaky = Flaky(clock, 1)
    with pytest.raises(ConnectionError) as info:
        retry(clock, attempts=1).call(flaky)
    assert info.value.__notes__ == ["retry: gave up after 1 attempt: no attempts left"]
    assert flaky.times == [0.0]


def test_an_error_that_is_not_retryable_passes_through_at_once() -> None:
    clock = JumpClock()
    flaky = Flaky(clock, 5, error=PermissionError)
    driver = retry(clock, retry_on=(ConnectionRefusedError, TimeoutError))
    with pytest.raises(PermissionError) as info:
        driver.call(flaky)
    assert not hasattr(info.value, "__notes__")
    assert flaky.times == [0.0]
    assert driver.statistics().not_retried == 1


def test_retry_if_can_stop_retrying_midway_and_says_so() -> None:
    clock = JumpClock()
    seen: list[int] = []

    def fails() -> None:
        seen.append(1)
        raise ValueError(len(seen))

    driver = retry(clock, retry_if=lambda e: e.args[0] < 2)
    with pytest.raises(ValueError, match="2") as info:
        driver.call(fails)
    assert info.value.__notes__ == ["retry: attempt 2 raised an error that is not retried"]


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_interrupts_are_never_retried(error: type[BaseException]) -> None:
    clock = JumpClock()
    calls: list[int] = []

    def interrupted() -> None:
        calls.append(1)
        raise error()

    with pytest.raises(error):
        retry(clock, retry_on=BaseException).call(interrupted)
    assert calls == [1]


async def test_cancelled_error_from_the_call_is_never_retried() -> None:
    clock = JumpClock()
    calls: list[int] = []

    async def cancelled() -> None:
        calls.append(1)
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await retry(clock, retry_on=BaseException).acall(cancelled)
    assert calls == [1]


async def test_cancelling_the_task_during_a_backoff_stops_everything() -> None:
    clock = ManualClock()
    flaky = Flaky(clock, 10)
    task = asyncio.create_task(retry(clock).acall(flaky.acall))
    await until(lambda: clock.pending() > 0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.pending() == 0  # the backoff timer is gone
    assert flaky.times == [0.0]


# ---------------------------------------------------------------------- deadlines


def test_the_driver_gives_up_instead_of_sleeping_past_the_deadline() -> None:
    clock = JumpClock()
    ctx, _ = with_timeout(background(clock=clock), 1.0)
    flaky = Flaky(clock, 10)
    driver = retry(clock, base=0.4)
    with pytest.raises(ConnectionError, match="failure 2") as info:
        driver.call(flaky, ctx=ctx)
    assert flaky.times == pytest.approx([0.0, 0.4])  # the next one would start at 1.2
    assert clock.now() == pytest.approx(0.4)  # gave up at once: nothing overslept
    (note,) = info.value.__notes__
    assert "gave up after 2 attempts" in note
    assert "0.800s away" in note
    assert "deadline (0.600s left)" in note
    assert driver.statistics().deadline == 1


async def test_the_async_driver_gives_up_before_the_deadline_too() -> None:
    clock = JumpClock()
    ctx, _ = with_timeout(background(clock=clock), 0.25)
    flaky = Flaky(clock, 10)
    with pytest.raises(ConnectionError, match="failure 2"):
        await retry(clock).acall(flaky.acall, ctx=ctx)
    assert flaky.times == pytest.approx([0.0, 0.1])
    assert clock.now() == pytest.approx(0.1)


@settings(max_examples=200, deadline=None)
@given(
    timeout=st.floats(0.01, 5.0),
    base=st.floats(0.001, 1.0),
    attempts=st.integers(1, 12),
    seed=st.integers(0, 2**16),
    work=st.floats(0.0, 0.5),
)
def test_no_attempt_ever_starts_at_or_after_the_deadline(
    timeout: float, base: float, attempts: int, seed: int, work: float
) -> None:
    clock = JumpClock()
    ctx, _ = with_timeout(background(clock=clock), timeout)
    starts: list[float] = []

    def slow_failure() -> None:
        starts.append(clock.now())
        clock.advance(work)  # the attempt itself takes time
        raise ConnectionError

    driver = Retry(attempts, base=base, cap=base * 8, clock=clock, rng=random.Random(seed))
    with pytest.raises(ConnectionError):
        driver.call(slow_failure, ctx=ctx)
    assert starts[0] == 0.0
    assert all(start < timeout for start in starts)
    assert len(starts) <= attempts


def test_a_context_that_has_ended_is_not_started() -> None:
    clock = JumpClock()
    ctx, cancel = with_cancel(background(clock=clock))
    cancel()
    flaky = Flaky(clock, 0)
    driver = retry(clock)
    with pytest.raises(CanceledError):
        driver.call(flaky, ctx=ctx)
    expired, _ = with_timeout(background(clock=clock), 0)
    with pytest.raises(DeadlineExceededError):
        driver.call(flaky, ctx=expired)
    assert flaky.times == []
    assert driver.statistics().calls == 0


def test_cancelling_the_context_wakes_a_sleeping_thread_which_gives_up() -> None:
    clock = ManualClock()
    ctx, cancel = with_cancel(background(clock=clock))
    flaky = Flaky(clock, 10)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            retry(clock, base=60.0, cap=60.0).call(flaky, ctx=ctx)
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    wait_until(lambda: clock.pending() == 1)
    cancel()  # no clock advance: the context's end is what wakes it
    worker.join(5)
    (error,) = raised
    assert isinstance(error, ConnectionError)
    assert "the context ended during the backoff (context canceled)" in error.__notes__[0]
    assert clock.pending() == 0


async def test_cancelling_the_context_wakes_a_sleeping_task_which_gives_up() -> None:
    clock = ManualClock()
    ctx, cancel = with_cancel(background(clock=clock))
    flaky = Flaky(clock, 10)
    task = asyncio.create_task(retry(clock, base=60.0, cap=60.0).acall(flaky.acall, ctx=ctx))
    await until(lambda: clock.pending() > 0)
    cancel()
    with pytest.raises(ConnectionError) as info:
        await task
    assert "the context ended during the backoff" in info.value.__notes__[0]
    assert flaky.times == [0.0]


def test_a_context_cancelled_by_the_failing_call_is_not_retried() -> None:
    clock = JumpClock()
    ctx, cancel = with_cancel(background(clock=clock))

    def cancels() -> None:
        cancel()
        raise ConnectionError

    with pytest.raises(ConnectionError) as info:
        retry(clock).call(cancels, ctx=ctx)
    assert "the context ended (context canceled)" in info.value.__notes__[0]


def test_with_a_context_the_driver_sleeps_on_the_contexts_clock() -> None:
    ctx_clock = JumpClock()
    ctx, _ = with_timeout(background(clock=ctx_clock), 10.0)
    flaky = Flaky(ctx_clock, 2)
    driver = Retry(3, jitter=False, clock=ManualClock())  # its own clock is never advanced
    assert driver.call(flaky, ctx=ctx) == "ok"
    assert flaky.times == pytest.approx([0.0, 0.1, 0.3])


# ---------------------------------------------------------------------- budgets


def test_a_spent_budget_stops_retrying_with_a_note() -> None:
    clock = JumpClock()
    budget = RetryBudget(0.2, min_retries=2, clock=clock)
    driver = retry(clock, attempts=5, budget=budget)
    flaky = Flaky(clock, 10)
    with pytest.raises(ConnectionError, match="failure 3") as info:
        driver.call(flaky)
    assert info.value.__notes__ == ["retry: gave up after 3 attempts: the retry budget is spent"]
    assert driver.statistics().budget == 1
    assert budget.statistics().granted == 2
    assert budget.statistics().denied == 1
    assert budget.statistics().requests == 1


@settings(max_examples=100, deadline=None)
@given(
    failures=st.lists(st.integers(0, 6), min_size=1, max_size=60),
    share=st.sampled_from([0.0, 0.1, 0.2, 0.5]),
    min_retries=st.integers(0, 5),
)
def test_retries_never_exceed_the_budget_over_random_failures(
    failures: list[int], share: float, min_retries: int
) -> None:
    clock = JumpClock()
    budget = RetryBudget(share, min_retries=min_retries, window=10_000.0, clock=clock)
    drivers = [Retry(5, base=0.001, cap=0.001, budget=budget, clock=clock) for _ in range(3)]
    for i, failing in enumerate(failures):
        notes: list[str] = []
        try:
            drivers[i % 3].call(Flaky(clock, failing))
        except ConnectionError as exc:
            notes = exc.__notes__
        assert not notes or failing >= 5 or "the retry budget is spent" in notes[0]
    retries = sum(d.statistics().retries for d in drivers)
    assert retries == budget.statistics().granted
    assert retries <= max(min_retries, share * len(failures))


# ---------------------------------------------------------------------- decorators


def test_decorating_a_function_retries_every_call() -> None:
    clock = JumpClock()
    flaky = Flaky(clock, 2)
    driver = retry(clock)

    @driver
    def fetch(key: str) -> str:
        """Fetch a key."""
        return f"{key}={flaky()}"

    assert fetch("a") == "a=ok"
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch a key."
    assert fetch("b") == "b=ok"
    assert driver.statistics().attempts == 4  # 3 for the first call, 1 for the second


async def test_decorating_a_coroutine_function_retries_every_await() -> None:
    clock = JumpClock()
    flaky = Flaky(clock, 1)

    @retry(clock)
    async def fetch(key: str) -> str:
        return f"{key}={flaky()}"

    assert asyncio.iscoroutinefunction(fetch)
    assert await fetch("a") == "a=ok"
    assert flaky.times == pytest.approx([0.0, 0.1])


def test_a_decorated_function_called_with_ctx_honours_and_receives_it() -> None:
    clock = JumpClock()
    ctx, _ = with_timeout(background(clock=clock), 0.25)
    flaky = Flaky(clock, 10)
    received: list[Context] = []

    @retry(clock)
    def fetch(*, ctx: Context) -> str:
        received.append(ctx)
        return flaky()

    with pytest.raises(ConnectionError):
        fetch(ctx=ctx)
    assert received == [ctx, ctx]  # 0.0 and 0.1; 0.3 is past the deadline
    assert flaky.times == pytest.approx([0.0, 0.1])


# ---------------------------------------------------------------------- threads, loops


async def test_the_sync_driver_refuses_to_sleep_on_an_event_loop_thread() -> None:
    flaky = Flaky(ManualClock(), 1)
    with pytest.raises(BlockingCallInLoopError) as info:
        retry(ManualClock()).call(flaky)
    assert isinstance(info.value.__context__, ConnectionError)
    assert retry(ManualClock()).call(Flaky(ManualClock(), 0)) == "ok"  # no sleep: fine


def test_one_retry_serves_many_threads_and_counts_exactly() -> None:
    clock = JumpClock()
    driver = Retry(3, base=0.001, clock=clock)
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        for _ in range(50):
            driver.call(Flaky(clock, 2))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    stats = driver.statistics()
    assert (stats.calls, stats.attempts, stats.retries, stats.successes) == (400, 1200, 800, 400)


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("options", "field", "error"),
    [
        ({"attempts": 0}, "attempts", InvalidArgumentError),
        ({"base": 0}, "base", InvalidArgumentError),
        ({"base": 2.0, "cap": 1.0}, "cap", InvalidArgumentError),
        ({"cap": -1}, "cap", InvalidArgumentError),
        ({"name": ""}, "name", InvalidArgumentError),
        ({"name": 7}, "name", ArgumentTypeError),
        ({"budget": 0.2}, "budget", ArgumentTypeError),
        ({"clock": "now"}, "clock", ArgumentTypeError),
        ({"retry_on": ValueError()}, "retry_on", ArgumentTypeError),
    ],
)
def test_bad_configuration_fails_at_construction(
    options: dict[str, Any], field: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        Retry(**options)
    assert info.value.field == field  # type: ignore[attr-defined]


def test_bad_arguments_fail_at_the_call() -> None:
    driver = Retry()
    with pytest.raises(ArgumentTypeError, match="ctx"):
        driver.call(lambda: 1, ctx=5.0)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="fn"):
        driver(42)  # type: ignore[arg-type]


def test_repr_names_the_policy() -> None:
    assert repr(Retry(name="db")).startswith("Retry('db', RetryPolicy(attempts=3")


async def test_a_cancellation_caused_by_the_context_ending_is_passed_on_untouched() -> None:
    clock = JumpClock()
    ctx, cancel = with_cancel(background(clock=clock))

    async def cancelled_by_its_scope() -> None:
        cancel()
        raise asyncio.CancelledError

    driver = retry(clock)
    with pytest.raises(asyncio.CancelledError) as info:
        await driver.acall(cancelled_by_its_scope, ctx=ctx)
    assert not hasattr(info.value, "__notes__")
    assert driver.statistics().not_retried == 1
