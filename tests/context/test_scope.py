"""Context.scope(): an asyncio block cancelled when its context ends."""

from __future__ import annotations

import asyncio
import threading

import pytest

from distsys.concurrency import Chan
from distsys.context import background, with_cancel, with_timeout
from distsys.errors import CanceledError, DeadlineExceededError, DistsysError
from distsys.testing import ManualClock


async def settle(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def test_deadline_cancels_the_block_and_raises_deadline_exceeded() -> None:
    clock = ManualClock()
    ctx, _ = with_timeout(background(clock=clock), 5.0)
    never: Chan[int] = Chan()
    reached: list[str] = []

    async def work() -> None:
        async with ctx.scope():
            await never.recv()
            reached.append("after recv")

    task = asyncio.create_task(work())
    await settle()
    clock.advance(4.9)
    await settle()
    assert not task.done()
    clock.advance(0.1)
    with pytest.raises(DeadlineExceededError) as info:
        await task
    assert isinstance(info.value, TimeoutError)
    assert reached == []
    assert never.statistics().receivers_waiting == 0


async def test_cancel_function_cancels_the_block_with_canceled_error() -> None:
    ctx, cancel = with_cancel(background())
    started = asyncio.Event()

    async def work() -> None:
        async with ctx.scope():
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(work())
    await started.wait()
    cause = RuntimeError("user pressed stop")
    cancel(cause)
    with pytest.raises(CanceledError) as info:
        await task
    assert info.value.cause is cause


async def test_raise_error_false_leaves_the_block_quietly() -> None:
    ctx, cancel = with_cancel(background())
    after: list[str] = []

    async def work() -> bool:
        async with ctx.scope(raise_error=False) as scope:
            await asyncio.Event().wait()
        after.append("continued")
        return scope.cancelled_caught

    task = asyncio.create_task(work())
    await settle()
    cancel()
    assert await task is True
    assert after == ["continued"]


async def test_an_outside_cancellation_passes_through_untouched() -> None:
    ctx, cancel = with_cancel(background())

    async def work() -> None:
        async with ctx.scope():
            await asyncio.Event().wait()

    task = asyncio.create_task(work())
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ctx.err() is None
    cancel()


async def test_outside_and_context_cancellation_together_stay_a_cancellation() -> None:
    ctx, cancel = with_cancel(background())

    async def work() -> None:
        async with ctx.scope():
            await asyncio.Event().wait()

    task = asyncio.create_task(work())
    await settle()
    cancel()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_already_ended_context_cancels_at_the_first_await() -> None:
    ctx, cancel = with_cancel(background())
    cancel()
    steps: list[str] = []

    async def work() -> None:
        async with ctx.scope():
            steps.append("entered")
            await asyncio.sleep(0)
            steps.append("not reached")

    with pytest.raises(CanceledError):
        await work()
    assert steps == ["entered"]


async def test_a_block_that_ends_first_is_not_cancelled_later() -> None:
    ctx, cancel = with_cancel(background())
    async with ctx.scope():
        cancel()  # requested while the task runs: would land at the next await
    # Leaving the scope absorbed it: the code after the block runs on normally.
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_a_block_that_completes_leaves_no_timer_behind() -> None:
    clock = ManualClock()
    ctx, _ = with_timeout(background(clock=clock), 10)
    async with ctx.scope():
        await asyncio.sleep(0)
    assert clock.pending() == 0
    clock.advance(20)
    await asyncio.sleep(0)  # nothing is cancelled after the block


async def test_cancel_from_another_thread_cancels_the_block() -> None:
    ctx, cancel = with_cancel(background())
    started = asyncio.Event()

    async def work() -> None:
        async with ctx.scope():
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(work())
    await started.wait()
    threading.Thread(target=cancel).start()
    with pytest.raises(CanceledError):
        await asyncio.wait_for(task, 10)


async def test_nested_scopes_report_the_inner_context() -> None:
    clock = ManualClock()
    outer, _ = with_timeout(background(clock=clock), 10)
    inner, _ = with_timeout(outer, 1)
    outcome: list[str] = []

    async def work() -> None:
        async with outer.scope():
            try:
                async with inner.scope():
                    await asyncio.Event().wait()
            except DeadlineExceededError:
                outcome.append("inner expired")
            await asyncio.sleep(0)
            outcome.append("outer still running")

    task = asyncio.create_task(work())
    await settle()
    clock.advance(1)
    await task
    assert outcome == ["inner expired", "outer still running"]


async def test_a_scope_is_entered_once() -> None:
    scope = background().scope()
    async with scope:
        pass
    with pytest.raises(DistsysError, match="only once"):
        await scope.__aenter__()
