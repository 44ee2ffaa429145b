"""Time as an injected dependency.

Every time-aware object in distsys takes ``clock=`` and asks it for the time and for
timers, so tests can drive time by hand (:class:`distsys.testing.ManualClock`) instead of
sleeping. :class:`MonotonicClock` is the default and reads :func:`time.monotonic`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "MonotonicClock", "TimerHandle", "sleep"]


class TimerHandle(Protocol):
    """A scheduled callback that can still be called off."""

    def cancel(self) -> None:
        """Stop the callback from running; a no-op once it has run."""


@runtime_checkable
class Clock(Protocol):
    """A source of monotonic time and timers.

    ``now()`` returns seconds on an arbitrary, never-decreasing scale: only differences
    mean anything. ``call_later`` runs ``callback`` once ``delay`` seconds have passed
    *on this clock*; the callback may run on any thread, so it must be quick and
    thread-safe.
    """

    def now(self) -> float:
        """Return the current time in seconds."""
        ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback`` after ``delay`` seconds; return a handle that cancels it."""
        ...


class MonotonicClock:
    """The real clock: :func:`time.monotonic` and real timers.

    Timers scheduled from a thread that runs an asyncio event loop use that loop (no extra
    thread); timers scheduled from any other thread use a :class:`threading.Timer`.
    Stateless, so one instance or many behave the same; thread-safe.
    """

    __slots__ = ()

    def now(self) -> float:
        """Return :func:`time.monotonic`."""
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback`` after ``delay`` real seconds."""
        loop = asyncio._get_running_loop()
        if loop is not None:
            return loop.call_later(max(delay, 0.0), callback)
        timer = threading.Timer(max(delay, 0.0), callback)
        timer.daemon = True
        timer.start()
        return timer

    def __repr__(self) -> str:
        return "MonotonicClock()"


async def sleep(seconds: float, clock: Clock | None = None) -> None:
    """Sleep ``seconds`` on ``clock`` (asyncio); with a ManualClock, until it is advanced.

    Cancellation-safe: a cancelled sleep leaves no timer behind.
    """
    if clock is None or type(clock) is MonotonicClock:
        await asyncio.sleep(seconds)
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    thread = threading.get_ident()

    def resolve() -> None:
        if not done.done():
            done.set_result(None)

    def wake() -> None:
        if threading.get_ident() == thread:
            resolve()
        else:
            loop.call_soon_threadsafe(resolve)

    timer = clock.call_later(seconds, wake)
    try:
        await done
    finally:
        timer.cancel()
