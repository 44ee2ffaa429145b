"""A request's Context bounds it: deadlines and cancellation fail it and drop its connection.

Time is a ManualClock: the tests move it; nothing sleeps until a timeout passes.
"""

from __future__ import annotations

import asyncio

import pytest

from distsys.context import background, with_cancel, with_timeout
from distsys.errors import CanceledError, DeadlineExceededError
from distsys.http import ConnectionPool, Response
from distsys.testing import ManualClock
from tests.http.conftest import eventually
from tests.http.server import TestServer


async def test_hanging_server_fails_with_deadline_exceeded(
    pool: ConnectionPool, server: TestServer
) -> None:
    clock = ManualClock()
    ctx, cancel = with_timeout(background(clock=clock), 2.0)
    task = asyncio.create_task(pool.request("GET", "/hang", ctx=ctx))
    await eventually(lambda: len(server.requests) == 1)
    clock.advance(1.9)
    assert not task.done()
    clock.advance(0.1)
    with pytest.raises(DeadlineExceededError, match=pool.address) as caught:
        async with asyncio.timeout(5):
            await task
    assert isinstance(caught.value, TimeoutError)
    stats = pool.statistics()
    assert (stats.connections, stats.closed) == (0, 1)  # discarded, never reused
    await eventually(lambda: not server.open)
    cancel()


async def test_deadline_while_the_body_is_arriving(
    pool: ConnectionPool, server: TestServer
) -> None:
    clock = ManualClock()
    ctx, _ = with_timeout(background(clock=clock), 2.0)
    response = await pool.request("GET", "/stall", ctx=ctx)
    assert response.status == 200
    reading = asyncio.create_task(response.read())
    await asyncio.sleep(0.01)
    clock.advance(2.0)
    with pytest.raises(DeadlineExceededError):
        async with asyncio.timeout(5):
            await reading
    assert pool.statistics().connections == 0


async def test_completed_response_is_not_touched_by_a_later_deadline(
    pool: ConnectionPool,
) -> None:
    clock = ManualClock()
    ctx, _ = with_timeout(background(clock=clock), 2.0)
    response = await pool.request("GET", "/hello", ctx=ctx)
    clock.advance(5.0)
    assert await response.read() == b"hello from test"
    assert pool.statistics().idle == 1
    assert clock.pending() == 0  # the deadline's timer was disarmed


async def test_cancelled_context_fails_with_canceled_error(
    pool: ConnectionPool, server: TestServer
) -> None:
    ctx, cancel = with_cancel(background())
    task = asyncio.create_task(pool.request("GET", "/hang", ctx=ctx))
    await eventually(lambda: len(server.requests) == 1)
    cancel()
    with pytest.raises(CanceledError):
        async with asyncio.timeout(5):
            await task
    assert pool.statistics().connections == 0


async def test_context_ended_from_another_thread(pool: ConnectionPool, server: TestServer) -> None:
    ctx, cancel = with_cancel(background())
    task = asyncio.create_task(pool.request("GET", "/hang", ctx=ctx))
    await eventually(lambda: len(server.requests) == 1)
    await asyncio.to_thread(cancel)
    with pytest.raises(CanceledError):
        async with asyncio.timeout(5):
            await task


async def test_an_ended_context_sends_nothing(pool: ConnectionPool, server: TestServer) -> None:
    clock = ManualClock()
    ctx, _ = with_timeout(background(clock=clock), 1.0)
    clock.advance(1.0)
    with pytest.raises(DeadlineExceededError):
        await pool.request("GET", "/hello", ctx=ctx)
    assert server.connections == 0
    assert pool.statistics().requests == 0


async def test_deadline_while_queued_for_a_connection(server: TestServer) -> None:
    clock = ManualClock()
    async with ConnectionPool("127.0.0.1", server.port, max_connections=1) as pool:
        hanging = asyncio.create_task(pool.request("GET", "/hang"))
        await eventually(lambda: len(server.requests) == 1)
        ctx, _ = with_timeout(background(clock=clock), 1.0)
        queued = asyncio.create_task(pool.request("GET", "/hello", ctx=ctx))
        await eventually(lambda: pool.statistics().waiting == 1)
        clock.advance(1.0)
        with pytest.raises(DeadlineExceededError):
            async with asyncio.timeout(5):
                await queued
        assert pool.statistics().waiting == 0
        assert pool.statistics().connections == 1  # the hanging one is not affected
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hanging


async def test_cancelling_the_task_discards_the_connection(
    pool: ConnectionPool, server: TestServer
) -> None:
    task = asyncio.create_task(pool.request("GET", "/hang"))
    await eventually(lambda: len(server.requests) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.statistics().connections == 0
    response = await pool.request("GET", "/hello")  # the pool recovers
    assert await response.read() == b"hello from test"


async def test_a_deadline_in_the_future_lets_the_request_through(
    pool: ConnectionPool, server: TestServer
) -> None:
    ctx, cancel = with_timeout(background(), 30.0)
    response: Response = await pool.request("GET", "/hello", ctx=ctx)
    assert await response.read() == b"hello from test"
    cancel()
