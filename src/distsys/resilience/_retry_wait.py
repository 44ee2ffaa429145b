"""Clock-aware waits that a Context cuts short: the sleeping part of the guards' drivers.

The retry driver sleeps between attempts, the rate limiter until the tokens it reserved
are due, and the bulkhead until a slot is handed to its waiter. Every such wait ends at
the first of three things: its signal is set (a slot was handed over), its timeout passes
on the guard's clock, or the caller's Context ends (cancelled, or its deadline passed on
the context's own clock). The caller then looks at its own state to learn which.

With the real clock a thread waits on a :class:`threading.Event` with a timeout and a
task on a future with a loop timer, so no timer thread is started; with any other clock
(``ManualClock`` in tests) the timeout is a timer of that clock, which a test fires by
advancing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading

from distsys.clock import Clock, MonotonicClock, TimerHandle
from distsys.context import Context
from distsys.context._context import _Node

__all__ = ["TaskSignal", "ThreadSignal", "sleep_async", "sleep_blocking"]


def _same_time(a: Clock, b: Clock) -> bool:
    return a is b or (type(a) is MonotonicClock and type(b) is MonotonicClock)


class _Hooks:
    """The timers and context callback that one wait arms, and their removal."""

    __slots__ = ("handles", "key", "limit", "node")

    def __init__(self, wake: object, timeout: float, clock: Clock, ctx: Context | None) -> None:
        self.handles: list[TimerHandle] = []
        self.node: _Node | None = None
        self.key: int | None = None
        self.limit = timeout
        if ctx is None:
            return
        node = self.node = ctx._node
        self.key = node.on_end(wake)  # type: ignore[arg-type]
        if node.deadline is None:
            return
        if _same_time(node.clock, clock):
            self.limit = min(timeout, node.deadline - clock.now())
        else:
            timer = node.arm()  # ends the context at its deadline, on its own clock
            if timer is not None:
                self.handles.append(timer)

    def remove(self) -> None:
        for handle in self.handles:
            handle.cancel()
        if self.node is not None:
            self.node.remove_callback(self.key)


class ThreadSignal:
    """A one-shot wake-up for a thread. Thread-safe: any thread may :meth:`set` it."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        """Wake the waiting thread (idempotent)."""
        self._event.set()

    def is_set(self) -> bool:
        """Return whether :meth:`set` was called."""
        return self._event.is_set()

    def wait(self, timeout: float, clock: Clock, ctx: Context | None) -> None:
        """Block until set, ``timeout`` seconds (``math.inf``: none) pass, or ``ctx`` ends."""
        event = self._event
        hooks = _Hooks(event.set, timeout, clock, ctx)
        try:
            limit = hooks.limit
            if event.is_set() or limit <= 0:
                return
            if type(clock) is MonotonicClock:
                event.wait(None if limit == math.inf else limit)
                return
            if limit != math.inf:
                hooks.handles.append(clock.call_later(limit, event.set))
            event.wait()
        finally:
            hooks.remove()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class TaskSignal:
    """A one-shot wake-up for a task; any thread may :meth:`set` it (thread-safe).

    Create it inside the task that will wait (it binds the running loop).
    """

    __slots__ = ("_fut", "_loop", "_thread")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._fut: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.get_ident()

    def set(self) -> None:
        """Wake the waiting task (idempotent; a no-op once its loop is closed)."""
        if threading.get_ident() == self._thread:
            _resolve(self._fut)
        else:
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody to wake
                self._loop.call_soon_threadsafe(_resolve, self._fut)

    async def wait(self, timeout: float, clock: Clock, ctx: Context | None) -> None:
        """Wait until set, ``timeout`` seconds (``math.inf``: none) pass, or ``ctx`` ends.

        Raises:
            asyncio.CancelledError: the waiting task was cancelled (nothing is left armed).
        """
        hooks = _Hooks(self.set, timeout, clock, ctx)
        try:
            limit = hooks.limit
            if self._fut.done() or limit <= 0:
                return
            if limit != math.inf:
                hooks.handles.append(clock.call_later(limit, self.set))
            await self._fut
        finally:
            hooks.remove()


def sleep_blocking(delay: float, clock: Clock, ctx: Context | None) -> bool:
    """Block the thread ``delay`` seconds on ``clock``, or until ``ctx`` ends.

    Returns:
        True if the whole delay passed with ``ctx`` still live, False if ``ctx`` ended.
    """
    ThreadSignal().wait(delay, clock, ctx)
    return ctx is None or ctx.err() is None


async def sleep_async(delay: float, clock: Clock, ctx: Context | None) -> bool:
    """Sleep ``delay`` seconds on ``clock``, or until ``ctx`` ends (asyncio).

    Returns:
        True if the whole delay passed with ``ctx`` still live, False if ``ctx`` ended.
    """
    await TaskSignal().wait(delay, clock, ctx)
    return ctx is None or ctx.err() is None
