"""go(): coroutine functions become tasks, plain functions run in threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading

import pytest

from distsys.concurrency import go
from distsys.errors import ArgumentTypeError, DistsysError


async def test_a_coroutine_function_becomes_a_task() -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    task = go(double, 21)
    assert isinstance(task, asyncio.Task)
    assert await task == 42


async def test_a_partial_of_a_coroutine_function_is_recognised() -> None:
    async def add(a: int, b: int) -> int:
        return a + b

    task = go(functools.partial(add, 1), 2)
    assert isinstance(task, asyncio.Task)
    assert await task == 3


def test_a_plain_function_runs_in_its_own_daemon_thread() -> None:
    seen: list[threading.Thread] = []

    def work(x: int) -> int:
        seen.append(threading.current_thread())
        return x + 1

    future = go(work, 1)
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=10) == 2
    assert seen[0] is not threading.main_thread()
    assert seen[0].daemon


def test_a_thread_exception_is_kept_in_the_future() -> None:
    def boom() -> None:
        raise ValueError("nope")

    with pytest.raises(ValueError, match="nope"):
        go(boom).result(timeout=10)


def test_a_coroutine_function_needs_a_running_loop() -> None:
    async def work() -> None:
        pass

    with pytest.raises(DistsysError, match="running event loop"):
        go(work)


def test_a_non_callable_is_refused() -> None:
    with pytest.raises(ArgumentTypeError, match="fn"):
        go(42)  # type: ignore[call-overload]
