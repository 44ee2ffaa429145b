"""DeadlineQueue: one timer per route; finished requests never expire; memory stays bounded."""

from __future__ import annotations

import asyncio
import time

from distsys.gateway._deadlines import DeadlineQueue
from tests.gateway.conftest import eventually


class Request:
    def __init__(self) -> None:
        self.finished = False
        self.expired = False

    def expire(self) -> None:
        self.expired = True


async def test_requests_expire_at_their_deadline_unless_finished() -> None:
    queue = DeadlineQueue(asyncio.get_running_loop())
    now = time.monotonic()
    first, second, third = Request(), Request(), Request()
    assert queue.add(now + 0.01, first) is None
    assert queue.add(now + 0.02, second) is None
    assert queue.add(now + 0.03, third) is None
    queue.finish(second)
    await eventually(lambda: third.expired)
    assert first.expired
    assert not second.expired
    assert len(queue) == 0


async def test_an_earlier_deadline_gets_its_own_timer() -> None:
    queue = DeadlineQueue(asyncio.get_running_loop())
    now = time.monotonic()
    late, early = Request(), Request()
    queue.add(now + 60, late)
    timer = queue.add(now + 0.01, early)
    assert timer is not None
    await eventually(lambda: early.expired)
    assert not late.expired
    queue.close()


async def test_finished_requests_leave_the_head_at_once() -> None:
    queue = DeadlineQueue(asyncio.get_running_loop())
    now = time.monotonic()
    requests = [Request() for _ in range(5000)]
    for request in requests:
        queue.add(now + 60, request)
        queue.finish(request)
    assert len(queue) == 0
    slow = Request()
    queue.add(now + 60, slow)  # one request stays in flight while many others finish
    for request in requests:
        request.finished = False
        queue.add(now + 60, request)
        queue.finish(request)
    assert len(queue) <= 2050  # swept whenever it doubles, not kept until the deadline
    queue.close()
