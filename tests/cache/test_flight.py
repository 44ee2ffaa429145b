"""Single flight: concurrent misses for one key run the function once, whoever they are.

Concurrency here is real and deterministic: the leading call blocks on an event until the
test has seen every other caller join its flight (``statistics().waiting``), and only
then lets it finish.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from distsys.cache import FlightStatistics, LRUCache, ThreadSafeLRUCache, cached
from distsys.cache._flight import MISSING, FlightGroup
from tests.conftest import wait_until

CALLERS = 6


class Abort(BaseException):
    """Stands for KeyboardInterrupt: not an Exception, so it is not shared."""


def run_threads(
    target: Callable[[], Any], n: int
) -> tuple[list[Any], list[BaseException], list[threading.Thread]]:
    """Start ``n`` threads that call ``target`` together; return where their outcomes go."""
    results: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def call() -> None:
        start.wait()
        try:
            results.append(target())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(n)]
    for thread in threads:
        thread.start()
    return results, errors, threads


async def until(predicate: Callable[[], bool]) -> None:
    """Let other tasks run until ``predicate()`` holds (no wall-clock involved)."""
    for _ in range(100_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


# -- threads ------------------------------------------------------------------------


def test_concurrent_thread_misses_run_the_function_once() -> None:
    gate = threading.Event()
    calls = []

    @cached(ThreadSafeLRUCache(10))
    def square(n: int) -> int:
        calls.append(n)
        gate.wait()
        return n * n

    results, errors, threads = run_threads(lambda: square(7), CALLERS)
    wait_until(lambda: square.statistics().waiting == CALLERS - 1)
    gate.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == [49] * CALLERS
    assert calls == [7]
    assert square.statistics() == FlightStatistics(
        running=0, waiting=0, calls=1, shared=CALLERS - 1, abandoned=0
    )
    assert square(7) == 49  # now a hit
    assert calls == [7]


def test_an_exception_reaches_every_waiter_and_is_not_cached() -> None:
    gate = threading.Event()
    calls = []

    @cached(ThreadSafeLRUCache(10))
    def fail(n: int) -> int:
        calls.append(n)
        gate.wait()
        raise ValueError(f"no {n}")

    results, errors, threads = run_threads(lambda: fail(3), CALLERS)
    wait_until(lambda: fail.statistics().waiting == CALLERS - 1)
    gate.set()
    for thread in threads:
        thread.join()
    assert results == []
    assert len(errors) == CALLERS
    assert all(error is errors[0] for error in errors)  # the same exception, shared
    assert isinstance(errors[0], ValueError)
    assert calls == [3]
    with pytest.raises(ValueError, match="no 3"):
        fail(3)  # not cached: it runs again
    assert calls == [3, 3]


def test_an_interrupted_leader_hands_the_flight_to_a_waiter() -> None:
    gate = threading.Event()
    calls = []

    @cached(ThreadSafeLRUCache(10))
    def slow(n: int) -> int:
        calls.append(n)
        if len(calls) == 1:
            gate.wait()
            raise Abort  # the leader is interrupted: only it sees that
        return n + 1

    results, errors, threads = run_threads(lambda: slow(1), CALLERS)
    wait_until(lambda: slow.statistics().waiting == CALLERS - 1)
    gate.set()
    for thread in threads:
        thread.join()
    assert [type(error) for error in errors] == [Abort]
    assert results == [2] * (CALLERS - 1)
    assert calls == [1, 1]  # one waiter took over; the others joined it or found its value
    stats = slow.statistics()
    assert (stats.calls, stats.abandoned, stats.running, stats.waiting) == (2, 1, 0, 0)


def test_different_keys_fly_separately() -> None:
    gate = threading.Event()

    @cached(ThreadSafeLRUCache(10))
    def ident(n: int) -> int:
        gate.wait()
        return n

    workers = [threading.Thread(target=ident, args=(n,)) for n in range(3)]
    for worker in workers:
        worker.start()
    wait_until(lambda: ident.statistics().running == 3)
    assert ident.statistics().waiting == 0
    gate.set()
    for worker in workers:
        worker.join()
    assert ident.cache.statistics().size == 3


def test_a_function_calling_itself_with_the_same_key_does_not_wait_for_itself() -> None:
    depth = []

    @cached(LRUCache(10))
    def countdown(n: int) -> int:
        depth.append(n)
        return n if len(depth) > 1 else countdown(n) + 1

    assert countdown(5) == 6
    assert depth == [5, 5]


# -- asyncio ------------------------------------------------------------------------


async def test_concurrent_task_misses_await_the_coroutine_once() -> None:
    gate = asyncio.Event()
    calls = []

    @cached(LRUCache(10))
    async def fetch(key: str) -> str:
        calls.append(key)
        await gate.wait()
        return key.upper()

    tasks = [asyncio.create_task(fetch("a")) for _ in range(CALLERS)]
    await until(lambda: fetch.statistics().waiting == CALLERS - 1)
    gate.set()
    assert await asyncio.gather(*tasks) == ["A"] * CALLERS
    assert calls == ["a"]
    assert await fetch("a") == "A"
    assert fetch.cache.peek(("a",)) == "A"  # the result, never a coroutine object


async def test_a_task_exception_reaches_every_waiter_and_is_not_cached() -> None:
    gate = asyncio.Event()
    calls = []

    @cached(LRUCache(10))
    async def fail(key: str) -> str:
        calls.append(key)
        await gate.wait()
        raise LookupError(key)

    tasks = [asyncio.create_task(fail("k")) for _ in range(CALLERS)]
    await until(lambda: fail.statistics().waiting == CALLERS - 1)
    gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, LookupError) for o in outcomes)
    assert all(o is outcomes[0] for o in outcomes)
    assert calls == ["k"]
    with pytest.raises(LookupError):
        await fail("k")
    assert calls == ["k", "k"]
    assert fail.cache.statistics().size == 0


async def test_cancelling_the_leader_hands_the_flight_to_a_waiter() -> None:
    gates = [asyncio.Event(), asyncio.Event()]
    calls = []

    @cached(LRUCache(10))
    async def fetch(key: str) -> str:
        gate = gates[len(calls)]
        calls.append(key)
        await gate.wait()
        return f"{key}{len(calls)}"

    leader = asyncio.create_task(fetch("x"))
    await until(lambda: len(calls) == 1)
    waiters = [asyncio.create_task(fetch("x")) for _ in range(3)]
    await until(lambda: fetch.statistics().waiting == 3)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    await until(lambda: len(calls) == 2)  # a waiter took over: the function runs again
    await until(lambda: fetch.statistics().waiting == 2)  # and the others joined it
    gates[1].set()
    assert await asyncio.gather(*waiters) == ["x2"] * 3
    stats = fetch.statistics()
    assert (stats.calls, stats.abandoned, stats.shared, stats.running) == (2, 1, 2, 0)


async def test_a_cancelled_waiter_leaves_the_others_waiting() -> None:
    gate = asyncio.Event()

    @cached(LRUCache(10))
    async def fetch(key: str) -> str:
        await gate.wait()
        return key

    leader = asyncio.create_task(fetch("y"))
    waiters = [asyncio.create_task(fetch("y")) for _ in range(2)]
    await until(lambda: fetch.statistics().waiting == 2)
    waiters[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiters[0]
    assert fetch.statistics().waiting == 1
    gate.set()
    assert await leader == await waiters[1] == "y"
    assert fetch.statistics().waiting == 0


async def test_a_coroutine_calling_itself_with_the_same_key_does_not_wait_for_itself() -> None:
    depth = []

    @cached(LRUCache(10))
    async def countdown(n: int) -> int:
        depth.append(n)
        return n if len(depth) > 1 else await countdown(n) + 1

    assert await countdown(5) == 6


def test_tasks_on_event_loops_in_different_threads_share_one_flight() -> None:
    gate = threading.Event()
    calls = []

    @cached(ThreadSafeLRUCache(10))
    async def fetch(key: str) -> str:
        calls.append(key)
        await asyncio.get_running_loop().run_in_executor(None, gate.wait)
        return key * 2

    results: list[str] = []

    def on_its_own_loop() -> None:
        results.append(asyncio.run(fetch("z")))

    threads = [threading.Thread(target=on_its_own_loop) for _ in range(3)]
    threads[0].start()
    wait_until(lambda: fetch.statistics().running == 1)
    for thread in threads[1:]:
        thread.start()
    wait_until(lambda: fetch.statistics().waiting == 2)
    gate.set()
    for thread in threads:
        thread.join()
    assert results == ["zz"] * 3
    assert calls == ["z"]


# -- the group itself -----------------------------------------------------------------


def test_a_new_leader_looks_in_the_cache_once_more_before_running() -> None:
    group = FlightGroup()
    ran = []
    value = group.call(
        "k", lambda: ran.append(1), (), {}, lambda key, missing: "stored meanwhile", print
    )
    assert value == "stored meanwhile"
    assert ran == []
    stored: dict[Any, Any] = {}
    value = group.call("j", lambda: 42, (), {}, lambda key, missing: MISSING, stored.__setitem__)
    assert (value, stored) == (42, {"j": 42})
