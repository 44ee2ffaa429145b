"""WaitGroup: counting, waiting from tasks and threads, misuse caught at once."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from distsys.concurrency import Chan, WaitGroup, WaitGroupStatistics
from distsys.errors import ArgumentTypeError, DeadlineExceededError, InvalidArgumentError
from distsys.testing import ManualClock
from tests.conftest import wait_until


async def test_wait_returns_once_every_piece_is_done() -> None:
    wg = WaitGroup()
    wg.add(3)
    waiter = asyncio.create_task(wg.wait())
    for _ in range(2):
        wg.done()
        await asyncio.sleep(0)
        assert not waiter.done()
    wg.done()
    await waiter
    assert wg.count == 0


async def test_wait_at_zero_returns_at_once() -> None:
    wg = WaitGroup()
    await wg.wait()
    wg.wait_blocking()


def test_done_below_zero_raises_and_keeps_the_counter() -> None:
    wg = WaitGroup()
    wg.add(1)
    wg.done()
    with pytest.raises(InvalidArgumentError, match=r"delta=-1 .*counter >= 0") as info:
        wg.done()
    assert "done() was called more times" in str(info.value)
    assert wg.count == 0
    with pytest.raises(InvalidArgumentError):
        wg.add(-5)
    assert wg.count == 0


@pytest.mark.parametrize("delta", [1.0, "1", None, True])
def test_add_needs_an_int(delta: object) -> None:
    with pytest.raises(ArgumentTypeError, match="delta"):
        WaitGroup().add(delta)  # type: ignore[arg-type]


async def test_go_counts_tasks_and_threads() -> None:
    wg = WaitGroup()
    results: list[str] = []
    release = threading.Event()

    async def task_work() -> None:
        await asyncio.sleep(0)
        results.append("task")

    def thread_work() -> None:
        release.wait(10)
        results.append("thread")

    wg.go(task_work)
    wg.go(thread_work)
    assert wg.count == 2
    waiter = asyncio.create_task(wg.wait())
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(waiter, 10)
    assert sorted(results) == ["task", "thread"]


def test_threads_wait_for_tasks_of_another_loop() -> None:
    wg = WaitGroup()
    wg.add(1)
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: (wg.wait_blocking(), woke.append(True)))
    waiter.start()
    wait_until(lambda: wg.statistics().waiters == 1)

    async def finish() -> None:
        wg.done()

    asyncio.run(finish())
    waiter.join(5)
    assert woke == [True]


async def test_wait_timeout_on_a_manual_clock() -> None:
    clock = ManualClock()
    wg = WaitGroup(clock=clock)
    wg.add(1)
    waiter = asyncio.create_task(wg.wait(timeout=2))
    await asyncio.sleep(0)
    clock.advance(2)
    with pytest.raises(DeadlineExceededError):
        await waiter
    wg.done()


async def test_a_wait_group_can_be_reused() -> None:
    wg = WaitGroup()
    for _ in range(3):
        wg.add(2)
        waiter = asyncio.create_task(wg.wait())
        wg.done()
        wg.done()
        await waiter
    assert wg.statistics() == WaitGroupStatistics(count=0, waiters=0)
    assert "count=0" in repr(wg)


async def test_tasks_started_by_go_are_kept_alive_until_they_finish() -> None:
    wg = WaitGroup()
    outcome: list[str] = []

    async def worker() -> None:
        inbox: Chan[int] = Chan()  # only this task can reach it
        try:
            await inbox.recv()
        except asyncio.CancelledError:
            outcome.append("cancelled, not collected")
            raise

    wg.go(worker)  # the handle is dropped on purpose
    await asyncio.sleep(0)
    gc.collect()
    assert wg.count == 1
    (task,) = asyncio.all_tasks() - {asyncio.current_task()}
    task.cancel()
    await wg.wait()
    assert outcome == ["cancelled, not collected"]
