"""Bulkhead: limits, FIFO hand-over, timeouts and deadlines, one limit for threads and tasks."""

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
    BulkheadFullError,
    CanceledError,
    DeadlineExceededError,
    InvalidArgumentError,
    RejectedError,
)
from distsys.resilience._bulkhead import Bulkhead, BulkheadStatistics
from distsys.testing import ManualClock
from tests.conftest import wait_until


async def until(predicate: Callable[[], bool]) -> None:
    """Let other tasks run until ``predicate()`` holds (no wall-clock involved)."""
    for _ in range(100_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def echo(value: str) -> str:
    return value


def bulkhead(clock: ManualClock | None = None, **options: Any) -> Bulkhead:
    options.setdefault("max_concurrent", 2)
    return Bulkhead("db", clock=clock or ManualClock(), **options)


def test_at_most_max_concurrent_slots_are_held() -> None:
    bh = bulkhead()
    assert bh.try_acquire()
    assert bh.try_acquire()
    assert not bh.try_acquire()
    bh.release()
    assert bh.try_acquire()
    assert bh.statistics() == BulkheadStatistics("db", 2, 0, 2, 0, 2, 0, 3, 1, 0)


def test_without_waiting_places_a_full_bulkhead_rejects_at_once() -> None:
    bh = bulkhead(max_concurrent=1)
    bh.acquire()
    with pytest.raises(BulkheadFullError) as info:
        bh.acquire()
    assert isinstance(info.value, RejectedError)
    assert (info.value.name, info.value.limit) == ("db", 1)
    assert "0 of 0 waiting places taken" in str(info.value)


def test_when_the_waiting_places_are_taken_newcomers_are_rejected_at_once() -> None:
    clock = ManualClock()
    bh = bulkhead(clock, max_concurrent=1, max_waiting=1)
    bh.acquire()
    waiter = threading.Thread(target=bh.call, args=(lambda: None,))
    waiter.start()
    wait_until(lambda: bh.statistics().waiting == 1)
    with pytest.raises(BulkheadFullError, match="1 of 1 waiting places taken"):
        bh.acquire()
    assert not bh.try_acquire()  # a free slot would go to the waiter first anyway
    bh.release()
    waiter.join(5)
    stats = bh.statistics()
    assert (stats.in_use, stats.waiting, stats.acquired, stats.rejected) == (0, 0, 2, 2)


def test_a_released_slot_goes_to_the_oldest_waiter() -> None:
    bh = bulkhead(max_concurrent=1, max_waiting=3)
    bh.acquire()
    order: list[int] = []
    threads = []
    for i in range(3):
        thread = threading.Thread(target=bh.call, args=(order.append, i))
        thread.start()
        wait_until(lambda i=i: bh.statistics().waiting == i + 1)  # type: ignore[misc]
        threads.append(thread)
    bh.release()
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2]
    assert bh.statistics().peak_waiting == 3


def test_a_wait_longer_than_the_timeout_is_rejected() -> None:
    clock = ManualClock()
    bh = bulkhead(clock, max_concurrent=1, max_waiting=1)
    bh.acquire()
    raised: list[BaseException] = []

    def wait() -> None:
        try:
            bh.acquire(timeout=0.5)
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=wait)
    worker.start()
    wait_until(lambda: clock.pending() == 1)
    clock.advance(0.5)
    worker.join(5)
    assert isinstance(raised[0], BulkheadFullError)
    assert "no slot was freed within 0.500s" in str(raised[0])
    stats = bh.statistics()
    assert (stats.in_use, stats.waiting, stats.rejected, stats.abandoned) == (1, 0, 1, 0)


def test_max_wait_bounds_waits_that_give_no_timeout_and_zero_never_waits() -> None:
    clock = ManualClock()
    bh = bulkhead(clock, max_concurrent=1, max_waiting=5, max_wait=0)
    bh.acquire()
    with pytest.raises(BulkheadFullError, match="timeout=0"), bh:
        pass
    assert clock.pending() == 0


async def test_a_task_waits_until_its_context_deadline_then_raises_its_error() -> None:
    clock = ManualClock()
    bh = bulkhead(clock, max_concurrent=1, max_waiting=1, max_wait=10.0)
    await bh.aacquire()
    ctx, _ = with_timeout(background(clock=clock), 0.25)
    task = asyncio.create_task(bh.aacquire(ctx=ctx))
    await until(lambda: clock.pending() > 0)
    assert clock.next_deadline() == pytest.approx(0.25)  # the nearer of 10 s and 0.25 s
    clock.advance(0.25)
    with pytest.raises(DeadlineExceededError):
        await task
    stats = bh.statistics()
    assert (stats.in_use, stats.waiting, stats.abandoned, stats.rejected) == (1, 0, 1, 0)


def test_a_thread_whose_context_is_cancelled_while_waiting_raises_its_error() -> None:
    clock = ManualClock()
    bh = bulkhead(clock, max_concurrent=1, max_waiting=1)
    bh.acquire()
    ctx, cancel = with_cancel(background(clock=clock))
    raised: list[BaseException] = []

    def wait() -> None:
        try:
            with bh.slot(ctx=ctx):
                pass
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=wait)
    worker.start()
    wait_until(lambda: bh.statistics().waiting == 1)
    cancel()
    worker.join(5)
    assert isinstance(raised[0], CanceledError)
    assert bh.statistics().waiting == 0
    bh.release()
    assert bh.statistics().in_use == 0


def test_a_context_that_has_ended_is_refused_even_with_free_slots() -> None:
    bh = bulkhead()
    ctx, cancel = with_cancel(background())
    cancel()
    with pytest.raises(CanceledError):
        bh.call(lambda: None, ctx=ctx)
    assert bh.statistics().acquired == 0


async def test_cancelled_waiters_leak_nothing() -> None:
    bh = bulkhead(max_concurrent=1, max_waiting=10)
    await bh.aacquire()
    tasks = [asyncio.create_task(bh.aacquire()) for _ in range(5)]
    await until(lambda: bh.statistics().waiting >= 5)
    for task in tasks[::2]:
        task.cancel()
    await asyncio.sleep(0)
    assert bh.statistics().waiting == 2
    bh.release()  # to tasks[1]
    await tasks[1]
    bh.release()  # to tasks[3]
    await tasks[3]
    bh.release()
    stats = bh.statistics()
    assert (stats.in_use, stats.waiting, stats.abandoned) == (0, 0, 3)


async def test_a_waiter_cancelled_just_after_being_handed_a_slot_passes_it_on() -> None:
    bh = bulkhead(max_concurrent=1, max_waiting=2)
    await bh.aacquire()
    first = asyncio.create_task(bh.aacquire())
    second = asyncio.create_task(bh.aacquire())
    await until(lambda: bh.statistics().waiting >= 2)
    bh.release()  # hands the slot to `first`...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await second  # the slot went on to the next waiter
    assert bh.statistics().in_use == 1
    bh.release()
    assert bh.statistics().in_use == 0


async def test_threads_and_tasks_share_one_limit() -> None:
    bh = bulkhead(max_concurrent=1, max_waiting=1)
    held = threading.Event()
    go = threading.Event()

    def hold() -> None:
        with bh:
            held.set()
            go.wait(5)

    worker = threading.Thread(target=hold)
    worker.start()
    await asyncio.to_thread(held.wait, 5)
    task = asyncio.create_task(bh.acall(echo, "ran"))
    await until(lambda: bh.statistics().waiting > 0)
    assert not task.done()
    go.set()
    assert await task == "ran"
    await asyncio.to_thread(worker.join, 5)
    assert bh.statistics().in_use == 0


async def test_async_with_and_slot_hold_a_slot_and_release_on_error() -> None:
    bh = bulkhead(max_concurrent=1)
    async with bh:
        assert bh.statistics().in_use == 1
    with pytest.raises(KeyError):
        async with bh.slot(timeout=1.0):
            raise KeyError("boom")
    assert bh.statistics().in_use == 0


def test_call_passes_arguments_and_releases_on_error() -> None:
    bh = bulkhead()
    assert bh.call(divmod, 7, 2) == (3, 1)
    with pytest.raises(ZeroDivisionError):
        bh.call(divmod, 1, 0)
    assert bh.statistics().in_use == 0


async def test_the_blocking_acquire_refuses_to_wait_on_an_event_loop_thread() -> None:
    bh = bulkhead(max_concurrent=1, max_waiting=1)
    bh.acquire()  # a free slot: no wait, fine
    with pytest.raises(BlockingCallInLoopError):
        bh.acquire()
    assert bh.statistics().waiting == 0


def test_release_without_acquire_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="release"):
        bulkhead().release()


@settings(max_examples=15, deadline=None)
@given(
    limit=st.integers(1, 4),
    max_waiting=st.integers(0, 6),
    threads=st.integers(1, 6),
    tasks=st.integers(1, 6),
)
def test_never_more_than_max_concurrent_under_many_threads_and_tasks(
    limit: int, max_waiting: int, threads: int, tasks: int
) -> None:
    bh = Bulkhead("db", max_concurrent=limit, max_waiting=max_waiting)
    guard = threading.Lock()
    inside = [0]
    peak = [0]
    outcomes: list[str] = []

    def enter() -> None:
        with guard:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])

    def leave() -> None:
        with guard:
            inside[0] -= 1

    def thread_work() -> None:
        for _ in range(20):
            try:
                with bh:
                    enter()
                    threading.Event().wait(0.0001)
                    leave()
                outcomes.append("ran")
            except BulkheadFullError:
                outcomes.append("rejected")

    async def task_work() -> None:
        for _ in range(20):
            try:
                async with bh:
                    enter()
                    await asyncio.sleep(0)
                    leave()
                outcomes.append("ran")
            except BulkheadFullError:
                outcomes.append("rejected")

    async def main() -> None:
        await asyncio.gather(*(task_work() for _ in range(tasks)))

    workers = [threading.Thread(target=thread_work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    asyncio.run(main())
    for worker in workers:
        worker.join(30)
    stats = bh.statistics()
    assert peak[0] <= limit
    assert stats.peak_in_use <= limit
    assert stats.peak_waiting <= max_waiting
    assert (stats.in_use, stats.waiting) == (0, 0)
    assert stats.acquired == outcomes.count("ran")
    assert stats.rejected == outcomes.count("rejected")
    assert len(outcomes) == 20 * (threads + tasks)


@pytest.mark.parametrize(
    ("options", "field", "error"),
    [
        ({"max_concurrent": 0}, "max_concurrent", InvalidArgumentError),
        ({"max_concurrent": -1}, "max_concurrent", InvalidArgumentError),
        ({"max_concurrent": 1.5}, "max_concurrent", ArgumentTypeError),
        ({"max_waiting": -1}, "max_waiting", InvalidArgumentError),
        ({"max_waiting": None}, "max_waiting", ArgumentTypeError),
        ({"max_wait": -1}, "max_wait", InvalidArgumentError),
        ({"max_wait": math.nan}, "max_wait", InvalidArgumentError),
        ({"max_wait": "1s"}, "max_wait", ArgumentTypeError),
    ],
)
def test_bad_configuration_fails_at_construction(
    options: dict[str, Any], field: str, error: type[Exception]
) -> None:
    options.setdefault("max_concurrent", 1)
    with pytest.raises(error) as info:
        Bulkhead("db", **options)
    assert info.value.field == field  # type: ignore[attr-defined]


def test_bad_arguments_fail_at_the_call() -> None:
    with pytest.raises(InvalidArgumentError, match="name"):
        Bulkhead("", max_concurrent=1)
    bh = bulkhead(max_concurrent=1, max_waiting=1)
    bh.acquire()
    with pytest.raises(InvalidArgumentError, match="timeout"):
        bh.acquire(timeout=-1)
    with pytest.raises(ArgumentTypeError, match="ctx"):
        bh.acquire(ctx="ctx")  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="ctx"):
        bh.slot(ctx=3)  # type: ignore[arg-type]
    assert repr(bh) == "Bulkhead('db', in_use=1/1, waiting=0/1)"
