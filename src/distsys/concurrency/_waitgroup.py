"""WaitGroup: wait for a collection of tasks and threads to finish."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from distsys.clock import Clock
from distsys.concurrency._chan import Chan
from distsys.concurrency._go import go
from distsys.errors import ArgumentTypeError, ChannelClosedError, InvalidArgumentError

__all__ = ["WaitGroup", "WaitGroupStatistics"]

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class WaitGroupStatistics:
    """A snapshot of a WaitGroup: its counter and how many are waiting for zero."""

    count: int
    waiters: int


class WaitGroup:
    """Go's ``sync.WaitGroup``: a counter of outstanding work and a wait for zero.

    ``add(n)`` before starting work, ``done()`` when each piece finishes, and ``wait()``
    (``await``) or ``wait_blocking()`` (threads) until the counter is zero. ``go(fn)``
    does all three steps for one function. The counter never goes below zero: a ``done()``
    too many raises at once instead of corrupting the count. A WaitGroup may be reused once
    it reached zero.

    Thread-safe; tasks of any event loop and threads may share one.

    Args:
        clock: time source for the ``timeout`` arguments (default: the monotonic clock).
    """

    __slots__ = ("_clock", "_count", "_lock", "_tasks", "_zero")

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._zero: Chan[None] | None = None  # closed when the counter reaches zero
        self._clock = clock
        self._tasks: set[asyncio.Task[Any]] = set()  # asyncio keeps only weak references

    @property
    def count(self) -> int:
        """The current counter."""
        return self._count

    def add(self, delta: int = 1) -> None:
        """Add ``delta`` (may be negative) to the counter; at zero, release every waiter.

        Raises:
            InvalidArgumentError: the counter would go below zero.
            ArgumentTypeError: ``delta`` is not an int.
        """
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise ArgumentTypeError("delta", delta, "an int")
        with self._lock:
            count = self._count + delta
            if count < 0:
                raise InvalidArgumentError(
                    "delta",
                    delta,
                    f"a change that keeps the WaitGroup counter >= 0 (it is {self._count})",
                    detail="done() was called more times than add() counted",
                )
            self._count = count
            zero = self._zero if count == 0 else None
            if zero is not None:
                self._zero = None
        if zero is not None:
            zero.close()

    def done(self) -> None:
        """Count one piece of work as finished (``add(-1)``)."""
        self.add(-1)

    def _zero_chan(self) -> Chan[None] | None:
        with self._lock:
            if self._count == 0:
                return None
            if self._zero is None:
                self._zero = Chan(clock=self._clock)
            return self._zero

    async def wait(self, *, timeout: float | None = None) -> None:
        """Wait until the counter is zero.

        Raises:
            DeadlineExceededError: ``timeout`` seconds passed first.
        """
        zero = self._zero_chan()
        if zero is not None:
            try:
                await zero.recv(timeout=timeout)
            except ChannelClosedError:
                return

    def wait_blocking(self, *, timeout: float | None = None) -> None:
        """Block the calling thread until the counter is zero; see :meth:`wait`."""
        zero = self._zero_chan()
        if zero is not None:
            try:
                zero.recv_blocking(timeout=timeout)
            except ChannelClosedError:
                return

    @overload
    def go(  # type: ignore[overload-overlap]
        self, fn: Callable[..., Coroutine[Any, Any, R]], *args: Any
    ) -> asyncio.Task[R]: ...

    @overload
    def go(self, fn: Callable[..., R], *args: Any) -> concurrent.futures.Future[R]: ...

    def go(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Count one more piece of work, run ``fn(*args)`` with :func:`go`, count it done.

        The WaitGroup keeps a reference to each task it starts until the task ends, so a
        task that waits on something only it can reach is not garbage-collected.

        Returns:
            What :func:`go` returns: an ``asyncio.Task`` for a coroutine function, a
            ``concurrent.futures.Future`` for a plain function (run in a new thread).
        """
        self.add(1)
        try:
            handle = go(fn, *args, on_exit=self.done)
        except BaseException:
            self.done()
            raise
        if isinstance(handle, asyncio.Task):
            self._tasks.add(handle)
            handle.add_done_callback(self._tasks.discard)
        return handle

    def statistics(self) -> WaitGroupStatistics:
        """Return the counter and the number of parked waiters."""
        with self._lock:
            zero = self._zero
            waiters = zero.statistics().receivers_waiting if zero is not None else 0
            return WaitGroupStatistics(count=self._count, waiters=waiters)

    def __repr__(self) -> str:
        return f"<WaitGroup count={self._count}>"
