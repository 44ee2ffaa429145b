"""ManualClock and MonotonicClock."""

from __future__ import annotations

import asyncio
import threading

import pytest

from distsys.clock import Clock, MonotonicClock
from distsys.errors import InvalidArgumentError
from distsys.testing import ManualClock


def test_manual_clock_runs_due_timers_in_order_at_their_own_time() -> None:
    clock = ManualClock(10.0)
    seen: list[tuple[str, float]] = []
    clock.call_later(3, lambda: seen.append(("c", clock.now())))
    clock.call_later(1, lambda: seen.append(("a", clock.now())))
    clock.call_later(2, lambda: seen.append(("b", clock.now())))
    assert clock.advance(2.5) == 2
    assert seen == [("a", 11.0), ("b", 12.0)]
    assert clock.now() == 12.5
    assert clock.pending() == 1
    assert clock.next_deadline() == 13.0
    clock.advance(0.5)
    assert seen[-1] == ("c", 13.0)


def test_timers_scheduled_by_timers_run_if_due() -> None:
    clock = ManualClock()
    seen: list[float] = []

    def first() -> None:
        seen.append(clock.now())
        clock.call_later(1, lambda: seen.append(clock.now()))

    clock.call_later(1, first)
    clock.advance(5)
    assert seen == [1.0, 2.0]


def test_cancelled_timers_do_not_run() -> None:
    clock = ManualClock()
    seen: list[int] = []
    handle = clock.call_later(1, lambda: seen.append(1))
    handle.cancel()
    assert clock.pending() == 0
    assert clock.advance(2) == 0
    assert seen == []


def test_time_never_goes_back() -> None:
    with pytest.raises(InvalidArgumentError, match="seconds"):
        ManualClock().advance(-1)


def test_manual_clock_is_thread_safe() -> None:
    clock = ManualClock()
    hits: list[int] = []
    lock = threading.Lock()

    def schedule() -> None:
        for _ in range(500):
            clock.call_later(1, lambda: (lock.acquire(), hits.append(1), lock.release()))

    threads = [threading.Thread(target=schedule) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert clock.advance(1) == 2000
    assert len(hits) == 2000


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(MonotonicClock(), Clock)
    assert isinstance(ManualClock(), Clock)
    assert MonotonicClock().now() <= MonotonicClock().now()


async def test_monotonic_clock_uses_the_running_loop_for_timers() -> None:
    fired = asyncio.Event()
    handle = MonotonicClock().call_later(0, fired.set)
    assert isinstance(handle, asyncio.TimerHandle)
    await asyncio.wait_for(fired.wait(), 10)


def test_monotonic_clock_uses_a_timer_thread_outside_a_loop() -> None:
    fired = threading.Event()
    MonotonicClock().call_later(0, fired.set)
    assert fired.wait(10)


async def test_sleep_on_a_manual_clock_wakes_when_advanced() -> None:
    from distsys.clock import sleep

    clock = ManualClock()
    sleeper = asyncio.create_task(sleep(5, clock))
    await asyncio.sleep(0)
    clock.advance(4.9)
    await asyncio.sleep(0)
    assert not sleeper.done()
    clock.advance(0.1)
    await asyncio.wait_for(sleeper, 10)


async def test_a_cancelled_sleep_leaves_no_timer() -> None:
    from distsys.clock import sleep

    clock = ManualClock()
    sleeper = asyncio.create_task(sleep(5, clock))
    await asyncio.sleep(0)
    sleeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeper
    assert clock.pending() == 0


async def test_sleep_on_the_real_clock() -> None:
    from distsys.clock import sleep

    await sleep(0)
    await sleep(0, MonotonicClock())
