"""CircuitBreaker shared by threads and tasks: no lost counts, half-open limits hold.

Nothing here sleeps to wait for a timeout: threads meet on events and ``wait_until``,
time moves only through a ManualClock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.errors import BreakerOpenError
from distsys.resilience import BreakerState, CircuitBreaker, StateChange, TimeWindow
from distsys.testing import ManualClock
from tests.conftest import wait_until
from tests.resilience.breaker_helpers import Boom, run

THREADS = 8


def start_all(targets: list[Callable[[], object]]) -> list[threading.Thread]:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    return threads


def join_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()


def count(counter: itertools.count[int]) -> int:
    """Return how many values ``counter`` has given (without taking one)."""
    return int(repr(counter)[6:-1])


def _raise_if(fail: bool) -> None:
    if fail:
        raise Boom


def test_threads_lose_no_count_while_the_window_rolls() -> None:
    clock = ManualClock()
    # A wide window the clock never leaves, but crosses bucket after bucket.
    breaker = CircuitBreaker(
        "t", window=TimeWindow(1000.0, 100), failure_rate_threshold=1.0, clock=clock
    )
    per_thread = 3000
    done = threading.Event()

    def caller(index: int) -> None:
        for i in range(per_thread):
            with contextlib.suppress(Boom):
                breaker.call(_raise_if, (i + index) % 10 == 0)

    def ticker() -> None:
        while not done.is_set() and clock.now() < 500:
            clock.advance(0.25)

    tick = start_all([ticker])
    join_all(start_all([lambda i=i: caller(i) for i in range(THREADS)]))
    done.set()
    join_all(tick)
    s = breaker.statistics()
    assert s.state is BreakerState.CLOSED
    assert (s.calls, s.failures) == (THREADS * per_thread, THREADS * per_thread // 10)


async def test_tasks_lose_no_count() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(
        "t", window=TimeWindow(1000.0, 100), failure_rate_threshold=1.0, clock=clock
    )

    async def dependency(fail: bool) -> None:
        await asyncio.sleep(0)
        if fail:
            raise Boom

    async def caller(index: int) -> None:
        for i in range(50):
            with contextlib.suppress(Boom):
                await breaker.acall(dependency, (i + index) % 5 == 0)
            if i % 10 == 0:
                clock.advance(0.3)

    await asyncio.gather(*(caller(i) for i in range(100)))
    s = breaker.statistics()
    assert (s.calls, s.failures) == (5000, 1000)


def test_threads_and_event_loops_share_one_breaker() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker("t", failure_rate_threshold=1.0, clock=clock)

    async def dependency(fail: bool) -> None:
        await asyncio.sleep(0)
        _raise_if(fail)

    async def tasks() -> None:
        async def one(index: int) -> None:
            for i in range(100):
                with contextlib.suppress(Boom):
                    await breaker.acall(dependency, (i + index) % 4 == 0)

        await asyncio.gather(*(one(i) for i in range(20)))

    def thread_calls() -> None:
        for i in range(2000):
            with contextlib.suppress(Boom):
                breaker.call(_raise_if, i % 4 == 0)

    join_all(start_all([lambda: asyncio.run(tasks()), lambda: asyncio.run(tasks()), thread_calls]))
    s = breaker.statistics()
    assert (s.calls, s.failures) == (2 * 2000 + 2000, (2 * 2000 + 2000) // 4)


def half_open(clock: ManualClock, limit: int, **changes: Any) -> CircuitBreaker:
    breaker = CircuitBreaker(
        "t",
        minimum_calls=1,
        wait_duration=5.0,
        half_open_max_calls=limit,
        clock=clock,
        **changes,
    )
    run(breaker, clock, "fail +5")
    return breaker


@settings(max_examples=20, deadline=None)
@given(limit=st.integers(1, 6), callers=st.integers(1, 20))
def test_half_open_admits_at_most_its_limit_to_concurrent_threads(limit: int, callers: int) -> None:
    clock = ManualClock()
    breaker = half_open(clock, limit)
    release = threading.Event()
    lock = threading.Lock()
    running = [0, 0]  # now, peak
    rejected: list[BreakerOpenError] = []

    def trial() -> None:
        with lock:
            running[0] += 1
            running[1] = max(running)
        release.wait(30)
        with lock:
            running[0] -= 1

    def caller() -> None:
        try:
            breaker.call(trial)
        except BreakerOpenError as exc:
            with lock:
                rejected.append(exc)

    threads = start_all([caller] * callers)
    wait_until(lambda: running[0] + len(rejected) == callers)
    assert running[0] == min(limit, callers)
    assert breaker.statistics().half_open_in_flight == min(limit, callers)
    assert all(exc.retry_after is None for exc in rejected)
    release.set()
    join_all(threads)
    assert running[1] == min(limit, callers)
    expected = BreakerState.CLOSED if callers >= limit else BreakerState.HALF_OPEN
    assert breaker.state is expected


@settings(max_examples=20, deadline=None)
@given(limit=st.integers(1, 6), callers=st.integers(1, 30))
def test_half_open_admits_at_most_its_limit_to_concurrent_tasks(limit: int, callers: int) -> None:
    async def main() -> None:
        clock = ManualClock()
        breaker = half_open(clock, limit)
        release = asyncio.Event()
        running = [0, 0]
        rejected = 0

        async def trial() -> None:
            running[0] += 1
            running[1] = max(running)
            await release.wait()
            running[0] -= 1

        async def caller() -> None:
            nonlocal rejected
            try:
                await breaker.acall(trial)
            except BreakerOpenError:
                rejected += 1

        tasks = [asyncio.create_task(caller()) for _ in range(callers)]
        for _ in range(callers + 1):  # each task runs up to its first await
            await asyncio.sleep(0)
        assert running[0] + rejected == callers
        assert running[0] == min(limit, callers)
        release.set()
        await asyncio.gather(*tasks)
        assert running[1] == min(limit, callers)

    asyncio.run(main())


def test_hammered_through_every_transition_it_stays_consistent() -> None:
    clock = ManualClock()
    limit = 3
    changes: list[StateChange] = []
    breaker = CircuitBreaker(
        "t",
        window=TimeWindow(2.0, 4),
        minimum_calls=5,
        wait_duration=0.5,
        half_open_max_calls=limit,
        half_open_successes=4,
        listeners=[changes.append],
        clock=clock,
    )
    stop = threading.Event()
    problems: list[str] = []
    lock = threading.Lock()
    attempts = itertools.count()

    def work(fail: bool) -> None:
        if fail:
            raise Boom

    def caller() -> None:
        while not stop.is_set():
            n = next(attempts)
            # Failing stretches, then healthy ones: it opens and closes again and again.
            fail = (n // 1500) % 3 == 0 and n % 4 != 0
            with contextlib.suppress(Boom, BreakerOpenError):
                breaker.call(work, fail)

    def watcher() -> None:
        while not stop.is_set():
            s = breaker.statistics()
            if not 0 <= s.half_open_in_flight <= limit:
                with lock:
                    problems.append(f"half_open_in_flight={s.half_open_in_flight}")

    def ticker() -> None:
        # 10 ms of clock per 50 attempts, whatever the threads' speed.
        for tick in range(1, 1200):
            wait_until(lambda target=tick * 50: count(attempts) >= target)
            clock.advance(0.01)

    threads = start_all([caller] * 6 + [watcher])
    join_all(start_all([ticker]))
    stop.set()
    join_all(threads)
    assert problems == []
    assert {c.new for c in changes} == {
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    }  # it went round the whole cycle
    for before, after in itertools.pairwise(changes):
        assert after.old is before.new  # delivered once each, in order
    assert breaker.statistics().half_open_in_flight in range(limit + 1)
