"""Guard: a request's tie to its Context — fail what it waits on when the context ends.

One guard lives per request whose context can end (a deadline, or a cancel function).
It arms the context's deadline timer (on the context's own clock) and registers for the
context's end; when that comes, it fails whatever the request waits on at that moment —
a place in the pool's queue, a connection being opened, or the exchange on a connection,
which is then aborted and never reused. The response's completion disarms it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

from distsys.clock import MonotonicClock
from distsys.errors import CanceledError, DeadlineExceededError

if TYPE_CHECKING:
    from distsys.clock import TimerHandle
    from distsys.context import Context
    from distsys.http._connection import Connection

__all__ = ["Guard", "context_error"]


def context_error(ctx: Context, address: str) -> DeadlineExceededError | CanceledError:
    """Return the error to raise for a request to ``address`` whose ``ctx`` has ended."""
    err = ctx.err()
    if isinstance(err, CanceledError):
        return CanceledError(f"context canceled during a request to {address}", cause=err.cause)
    return DeadlineExceededError(f"deadline exceeded during a request to {address}")


class Guard:
    """Fail the waiting part of one request when its context ends; see the module docstring.

    Created and disarmed on the loop's thread; the context may end on any thread.
    """

    __slots__ = ("_ctx", "_key", "_loop", "_thread", "_timer", "address", "conn", "fired", "waiter")

    def __init__(self, ctx: Context, loop: asyncio.AbstractEventLoop, address: str) -> None:
        self._ctx = ctx
        self._loop = loop
        self._thread = threading.get_ident()
        self.address = address
        self.conn: Connection | None = None
        self.waiter: asyncio.Future[Any] | None = None
        self.fired = False
        node = ctx._node
        deadline = node.deadline
        self._timer: TimerHandle | None
        if deadline is not None and type(node.clock) is MonotonicClock:
            # The real clock: a loop timer of our own (node.arm() would do the same, slower).
            self._timer = loop.call_later(deadline - time.monotonic(), node._on_deadline)
        else:
            self._timer = node.arm()  # ends the node at its deadline, on its own clock
        self._key = node.on_end(self._on_end)  # runs _on_end at once if it has ended

    def error(self) -> DeadlineExceededError | CanceledError:
        """Return the error the request fails with."""
        return context_error(self._ctx, self.address)

    def _on_end(self) -> None:
        if threading.get_ident() == self._thread:
            self._fire()
        else:
            with contextlib.suppress(RuntimeError):  # a closed loop has nothing to fail
                self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        if self.fired:
            return
        self.fired = True
        conn = self.conn
        if conn is not None:
            conn.fail(self.error())
            return
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self.error())

    def close(self) -> None:
        """Disarm: the request no longer waits on anything (idempotent)."""
        self.conn = None
        self.waiter = None
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()
        key = self._key
        if key is not None:
            self._key = None
            self._ctx._node.remove_callback(key)
