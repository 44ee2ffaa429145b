"""ErrGroup: the first error cancels the siblings and is re-raised."""

from __future__ import annotations

import asyncio
import threading

import pytest

from distsys.concurrency import Chan, ErrGroup
from distsys.context import background, with_cancel, with_timeout
from distsys.errors import ArgumentTypeError, DeadlineExceededError, InvalidArgumentError
from distsys.testing import ManualClock


class Boom(Exception):
    pass


async def test_all_succeed() -> None:
    results: list[int] = []

    async def work(i: int) -> None:
        await asyncio.sleep(0)
        results.append(i)

    async with ErrGroup() as group:
        for i in range(5):
            group.go(work, i)
    assert sorted(results) == [0, 1, 2, 3, 4]
    assert group.context.err() is not None  # ended once the group finished
    assert group.statistics().started == 5


async def test_first_error_cancels_siblings_and_is_raised() -> None:
    never: Chan[int] = Chan()
    cancelled: list[str] = []

    async def sibling() -> None:
        try:
            await never.recv()
        except asyncio.CancelledError:
            cancelled.append("sibling")
            raise

    async def failing() -> None:
        await asyncio.sleep(0)
        raise Boom("first")

    async def failing_later() -> None:
        try:
            await never.recv()
        finally:
            raise Boom("second")

    group = ErrGroup()
    group.go(sibling)
    group.go(failing_later)
    group.go(failing)
    with pytest.raises(Boom, match="first"):
        await asyncio.wait_for(group.wait(), 10)
    assert cancelled == ["sibling"]
    assert group.statistics().failed
    assert never.statistics().receivers_waiting == 0


def test_threads_see_the_context_end_and_stop() -> None:
    stopped = threading.Event()

    def cooperative(group: ErrGroup) -> None:
        group.context.done.wait_blocking(30)
        stopped.set()

    def failing() -> None:
        raise Boom("thread failed")

    group = ErrGroup()
    group.go(cooperative, group)
    group.go(failing)
    with pytest.raises(Boom):
        group.wait_blocking()
    assert stopped.is_set()


async def test_a_parent_deadline_surfaces_as_deadline_exceeded() -> None:
    clock = ManualClock()
    ctx, _ = with_timeout(background(clock=clock), 1.0)
    group = ErrGroup(ctx)

    async def slow() -> None:
        await asyncio.Event().wait()

    group.go(slow)
    group.go(slow)
    waiter = asyncio.create_task(group.wait())
    await asyncio.sleep(0)
    clock.advance(1.0)
    with pytest.raises(DeadlineExceededError):
        await asyncio.wait_for(waiter, 10)


async def test_cancelling_the_parent_stops_the_group() -> None:
    parent, cancel = with_cancel(background())
    group = ErrGroup(parent)
    group.go(asyncio.Event().wait)
    await asyncio.sleep(0)
    cancel()
    with pytest.raises(Exception, match="canceled"):
        await asyncio.wait_for(group.wait(), 10)


async def test_limit_bounds_concurrency() -> None:
    running = 0
    peak = 0

    async def work() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        for _ in range(3):
            await asyncio.sleep(0)
        running -= 1

    async with ErrGroup(limit=2) as group:
        for _ in range(10):
            group.go(work)
    assert peak == 2


async def test_an_error_in_the_body_cancels_members_and_wins() -> None:
    stopped: list[bool] = []

    async def member() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.append(True)
            raise

    async def body() -> None:
        async with ErrGroup() as group:
            group.go(member)
            await asyncio.sleep(0)
            raise Boom("body")

    with pytest.raises(Boom, match="body"):
        await body()
    assert stopped == [True]


@pytest.mark.parametrize(("limit", "error"), [(0, InvalidArgumentError), (1.5, ArgumentTypeError)])
def test_bad_limit_is_refused(limit: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="limit"):
        ErrGroup(limit=limit)  # type: ignore[arg-type]
