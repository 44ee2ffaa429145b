"""Opening a connection: bounded by the pool's connect timeout and the request's Context."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any

from distsys.http._errors import ConnectError

if TYPE_CHECKING:
    from distsys.clock import Clock
    from distsys.http._connection import Connection
    from distsys.http._guard import Guard

__all__ = ["open_connection"]


async def open_connection(
    loop: asyncio.AbstractEventLoop,
    conn: Connection,
    timeout: float,
    clock: Clock,
    guard: Guard | None,
) -> None:
    """Connect ``conn`` to its pool's upstream.

    The attempt runs as a task of its own while the request waits on a future that the
    first of three things settles: the attempt ends, ``timeout`` passes on ``clock``, or
    the request's Context ends (through ``guard``). A connection that opens after the
    request gave up is closed at once.

    Raises:
        ConnectError: refused, unreachable, unresolvable, or timed out.
        DeadlineExceededError / CanceledError: the request's Context ended first.
    """
    address = conn.address
    pool = conn._pool
    opening = loop.create_task(loop.create_connection(lambda: conn, pool.host, pool.port))
    waiter: asyncio.Future[None] = loop.create_future()

    def settle(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    def time_out() -> None:
        if not waiter.done():
            waiter.set_exception(ConnectError(address, f"connect timed out after {timeout:g}s"))

    opening.add_done_callback(settle)
    timer = clock.call_later(timeout, time_out)
    if guard is not None:
        guard.waiter = waiter
    try:
        await waiter
        opening.result()
    except BaseException as exc:
        if not opening.done():
            opening.cancel()
        opening.add_done_callback(_close_opened)
        if isinstance(exc, OSError) and not isinstance(exc, ConnectError):
            raise ConnectError(address, _describe(exc)) from exc
        raise
    finally:
        timer.cancel()
        if guard is not None:
            guard.waiter = None


def _close_opened(opening: asyncio.Task[Any]) -> None:
    """Close a connection that opened after its request gave up on it."""
    if not opening.cancelled() and opening.exception() is None:
        transport, _ = opening.result()
        transport.abort()


def _describe(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror or exc})"
    return f"cannot connect ({exc.strerror or exc})"
