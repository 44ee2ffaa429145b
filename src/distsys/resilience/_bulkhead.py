"""Bulkhead: at most N calls at once, at most M waiting for a place, the rest refused.

A bulkhead keeps one slow dependency from taking every thread, connection or task of a
service (resilience4j's ``Bulkhead``: ``maxConcurrentCalls``, ``maxWaitDuration``). The
slots are counted under one lock, so threads and asyncio tasks (of any loop) share one
limit. A released slot is handed straight to the oldest waiter, never to a newcomer: the
waiters are served first come, first served, and ``try_acquire`` cannot barge in.

What a caller gets when there is no free slot:

* ``max_waiting`` callers already waiting (or ``max_waiting=0``, or a timeout of 0):
  :class:`~distsys.errors.BulkheadFullError` at once;
* a wait longer than ``timeout`` (or the bulkhead's ``max_wait``): ``BulkheadFullError``;
* its context ended before or during the wait: the context's error (``ctx.err()``, a
  :class:`~distsys.errors.DeadlineExceededError` once the deadline passes);
* its task was cancelled while waiting: ``asyncio.CancelledError``.

A waiter that leaves (cancelled, timed out, interrupted) leaves no slot behind, even when
a slot was handed to it in the same instant: it passes that slot on.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from distsys.clock import Clock
from distsys.concurrency._chan import reject_blocking_in_loop
from distsys.context import Context
from distsys.errors import BulkheadFullError, DeadlineExceededError
from distsys.resilience._bulkhead_slot import BulkheadSlot
from distsys.resilience._retry_checks import (
    check_clock,
    check_context,
    check_count,
    check_name,
    check_timeout,
)
from distsys.resilience._retry_wait import TaskSignal, ThreadSignal

__all__ = ["Bulkhead", "BulkheadStatistics"]

T = TypeVar("T")
S = TypeVar("S", ThreadSignal, TaskSignal)


@dataclass(frozen=True, slots=True)
class BulkheadStatistics:
    """A snapshot of a :class:`Bulkhead`.

    Attributes:
        name: the bulkhead's name.
        max_concurrent: the most calls at once.
        max_waiting: the most callers waiting for a slot.
        in_use: slots held now.
        waiting: callers waiting now.
        peak_in_use: the most slots ever held at once.
        peak_waiting: the most callers ever waiting at once.
        acquired: slots acquired since creation (at once or after waiting).
        rejected: callers refused (no place to wait, or their wait timed out).
        abandoned: waiters that left because their context ended or they were cancelled.
    """

    name: str
    max_concurrent: int
    max_waiting: int
    in_use: int
    waiting: int
    peak_in_use: int
    peak_waiting: int
    acquired: int
    rejected: int
    abandoned: int


class _Waiter(Generic[S]):
    """A caller waiting for a slot; ``granted`` is set, under the lock, by the releaser."""

    __slots__ = ("granted", "signal")

    def __init__(self, signal: S) -> None:
        self.signal: S = signal
        self.granted = False


class Bulkhead:
    """Limit the calls in progress to ``max_concurrent``, with up to ``max_waiting`` queued.

    Use it as ``with bulkhead:`` / ``async with bulkhead:`` (waiting at most
    ``max_wait``), as ``with bulkhead.slot(ctx=ctx):`` / ``async with
    bulkhead.slot(ctx=ctx):`` to bound the wait by a context, or as
    ``bulkhead.call(fn, ...)`` / ``await bulkhead.acall(fn, ...)``. See the module
    docstring for what is raised when there is no room.

    Thread-safe: threads and tasks of any event loop share one limit.

    Args:
        name: the bulkhead's name, carried by its ``BulkheadFullError``.
        max_concurrent: the most calls at once (>= 1).
        max_waiting: the most callers that may wait for a slot (>= 0; 0: never wait).
        max_wait: the most seconds a caller waits when it gives no ``timeout`` (None: no
            limit but the caller's context).
        clock: the clock timeouts are measured on (default: the monotonic clock).

    Raises:
        InvalidArgumentError: a value is out of range (naming the field).
        ArgumentTypeError: a value is of the wrong kind.
    """

    __slots__ = (
        "_abandoned",
        "_acquired",
        "_clock",
        "_in_use",
        "_lock",
        "_max_wait",
        "_peak_in_use",
        "_peak_waiting",
        "_rejected",
        "_waiters",
        "max_concurrent",
        "max_waiting",
        "name",
    )

    def __init__(
        self,
        name: str,
        *,
        max_concurrent: int,
        max_waiting: int = 0,
        max_wait: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = check_name(name)
        self.max_concurrent = check_count("max_concurrent", max_concurrent, 1)
        self.max_waiting = check_count("max_waiting", max_waiting, 0)
        self._max_wait = check_timeout(max_wait, "max_wait")
        self._clock = check_clock(clock)
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter[Any]] = deque()
        self._in_use = 0
        self._peak_in_use = self._peak_waiting = 0
        self._acquired = self._rejected = self._abandoned = 0

    # ------------------------------------------------------------ the core

    def _full(self, reason: str) -> BulkheadFullError:
        self._rejected += 1
        return BulkheadFullError(self.name, self.max_concurrent, reason)

    def _take_locked(self) -> bool:
        if self._in_use < self.max_concurrent and not self._waiters:
            self._in_use += 1
            self._acquired += 1
            self._peak_in_use = max(self._peak_in_use, self._in_use)
            return True
        return False

    def _enter(
        self, ctx: Context | None, timeout: float | None, make: Callable[[], S]
    ) -> tuple[_Waiter[S] | None, float]:
        """Take a free slot (None), or queue a waiter; raise when neither is allowed.

        Returns:
            ``(waiter, limit)``: the queued waiter (None: a slot was free) and the most
            seconds it may wait.
        """
        limit = self._max_wait if timeout is None else check_timeout(timeout)
        if ctx is not None:
            err = ctx.err()
            if err is not None:
                raise err
        with self._lock:
            if self._take_locked():
                return None, limit
            if len(self._waiters) >= self.max_waiting:
                raise self._full(
                    f"{self.max_concurrent} calls in progress and "
                    f"{len(self._waiters)} of {self.max_waiting} waiting places taken"
                )
            if limit <= 0:
                raise self._full(f"{self.max_concurrent} calls in progress and timeout=0")
            waiter = _Waiter(make())
            self._waiters.append(waiter)
            self._peak_waiting = max(self._peak_waiting, len(self._waiters))
        return waiter, limit

    def _leave(self, waiter: _Waiter[Any]) -> bool:
        """End a wait: True if the waiter holds a slot, else withdraw it from the queue."""
        with self._lock:
            if waiter.granted:
                return True
            self._waiters.remove(waiter)
            return False

    def _abandon(self, waiter: _Waiter[Any]) -> None:
        """Withdraw a waiter whose wait raised; pass on a slot handed to it meanwhile."""
        if self._leave(waiter):
            self.release()
        with self._lock:
            self._abandoned += 1

    def _timed_out(self, ctx: Context | None, limit: float, started: float) -> BaseException:
        """Say why a wait ended without a slot: its context ended, or its timeout passed.

        A wait bounded by the context's deadline (it was nearer than the timeout) that
        ends without a slot ended at that deadline, even if the clock reads a hair short.
        """
        if ctx is not None:
            err = ctx.err()
            deadline = ctx.deadline()
            if err is not None or (deadline is not None and deadline - started < limit):
                with self._lock:
                    self._abandoned += 1
                return err if err is not None else DeadlineExceededError()
        with self._lock:
            return self._full(f"no slot was freed within {limit:.3f}s")

    # ------------------------------------------------------------ acquire and release

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is waiting; never wait."""
        with self._lock:
            if self._take_locked():
                return True
            self._rejected += 1
            return False

    def acquire(self, *, ctx: Context | None = None, timeout: float | None = None) -> None:
        """Take a slot, blocking this thread while waiting for one; pair with :meth:`release`.

        Args:
            ctx: the caller's context: the wait ends when it ends.
            timeout: the most seconds to wait (None: the bulkhead's ``max_wait``).

        Raises:
            BulkheadFullError: no place to wait, or no slot was freed within the timeout.
            ContextError: ``ctx`` had ended, or ended while waiting.
            BlockingCallInLoopError: called on an event loop's thread and a wait was
                needed (use :meth:`aacquire` there).
        """
        ctx = check_context(ctx)

        def make() -> ThreadSignal:
            reject_blocking_in_loop("Bulkhead.acquire")
            return ThreadSignal()

        waiter, limit = self._enter(ctx, timeout, make)
        if waiter is None:
            return
        started = ctx.clock.now() if ctx is not None else 0.0
        try:
            waiter.signal.wait(limit, self._clock, ctx)
        except BaseException:
            self._abandon(waiter)
            raise
        if not self._leave(waiter):
            raise self._timed_out(ctx, limit, started)

    async def aacquire(self, *, ctx: Context | None = None, timeout: float | None = None) -> None:
        """Take a slot, sleeping this task while waiting for one; see :meth:`acquire`.

        Raises:
            asyncio.CancelledError: the task was cancelled while waiting (no slot is kept).
        """
        ctx = check_context(ctx)
        waiter, limit = self._enter(ctx, timeout, TaskSignal)
        if waiter is None:
            return
        started = ctx.clock.now() if ctx is not None else 0.0
        try:
            await waiter.signal.wait(limit, self._clock, ctx)
        except BaseException:
            self._abandon(waiter)
            raise
        if not self._leave(waiter):
            raise self._timed_out(ctx, limit, started)

    def release(self) -> None:
        """Give a slot back: to the oldest waiter if there is one.

        Raises:
            RuntimeError: no slot is held (more releases than acquires).
        """
        with self._lock:
            if not self._waiters:
                if self._in_use <= 0:
                    raise RuntimeError(f"bulkhead {self.name!r}: release() without acquire()")
                self._in_use -= 1
                return
            waiter = self._waiters.popleft()
            waiter.granted = True  # the slot changes hands: in_use stays the same
            self._acquired += 1
        waiter.signal.set()

    # ------------------------------------------------------------ conveniences

    def slot(self, *, ctx: Context | None = None, timeout: float | None = None) -> BulkheadSlot:
        """Return a context manager (``with`` or ``async with``) that holds a slot."""
        return BulkheadSlot(self, ctx, timeout)

    def __enter__(self) -> Bulkhead:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    async def __aenter__(self) -> Bulkhead:
        await self.aacquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def call(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        ctx: Context | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> T:
        """Call ``fn(*args, **kwargs)`` holding a slot; see :meth:`acquire` for ``ctx``."""
        self.acquire(ctx=ctx, timeout=timeout)
        try:
            return fn(*args, **kwargs)
        finally:
            self.release()

    async def acall(
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        ctx: Context | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> T:
        """Await ``fn(*args, **kwargs)`` holding a slot; see :meth:`aacquire`."""
        await self.aacquire(ctx=ctx, timeout=timeout)
        try:
            return await fn(*args, **kwargs)
        finally:
            self.release()

    def statistics(self) -> BulkheadStatistics:
        """Return the slots in use and waiters now, and the counts since creation."""
        with self._lock:
            return BulkheadStatistics(
                name=self.name,
                max_concurrent=self.max_concurrent,
                max_waiting=self.max_waiting,
                in_use=self._in_use,
                waiting=len(self._waiters),
                peak_in_use=self._peak_in_use,
                peak_waiting=self._peak_waiting,
                acquired=self._acquired,
                rejected=self._rejected,
                abandoned=self._abandoned,
            )

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"Bulkhead({self.name!r}, in_use={stats.in_use}/{self.max_concurrent}, "
            f"waiting={stats.waiting}/{self.max_waiting})"
        )
