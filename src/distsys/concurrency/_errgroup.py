"""ErrGroup: run functions together; the first error cancels the rest and is re-raised."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from distsys.concurrency._chan import Chan
from distsys.concurrency._go import is_async_callable
from distsys.concurrency._waitgroup import WaitGroup
from distsys.context import Context, background, with_cancel
from distsys.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["ErrGroup", "ErrGroupStatistics"]


@dataclass(frozen=True, slots=True)
class ErrGroupStatistics:
    """A snapshot of an ErrGroup."""

    running: int
    started: int
    failed: bool


class ErrGroup:
    """Go's ``errgroup.Group``: run functions concurrently, fail fast on the first error.

    ``go(fn, *args)`` starts ``fn`` (a coroutine function as a task, a plain function in a
    thread). The first exception cancels :attr:`context`, which cancels the sibling tasks
    (each runs under ``context.scope()``) and tells sibling threads to stop (they check
    ``group.context.err()`` or wait on ``group.context.done``). ``wait()`` waits for all of
    them, ends the context, and re-raises that first exception; errors that follow from
    the cancellation are dropped, as in Go.

    Use it as ``async with ErrGroup(ctx) as g:`` (waits on exit) or call ``await
    g.wait()`` / ``g.wait_blocking()``. Thread-safe.

    Args:
        parent: the context to derive :attr:`context` from (default: ``background()``).
        limit: at most this many functions run at once; the others wait their turn.
    """

    __slots__ = ("_cancel", "_ctx", "_error", "_lock", "_slots", "_started", "_wg")

    def __init__(self, parent: Context | None = None, *, limit: int | None = None) -> None:
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise ArgumentTypeError("limit", limit, "None or an int >= 1")
            if limit < 1:
                raise InvalidArgumentError("limit", limit, "None or an int >= 1")
        self._ctx, self._cancel = with_cancel(parent if parent is not None else background())
        self._slots: Chan[None] | None = Chan(limit) if limit is not None else None
        self._wg = WaitGroup()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._started = 0

    @property
    def context(self) -> Context:
        """The group's context: ended by the first error, or when ``wait`` returns."""
        return self._ctx

    def go(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Start ``fn(*args)`` in the group.

        Returns:
            An ``asyncio.Task`` (coroutine function) or a ``concurrent.futures.Future``
            (plain function). The group keeps its own reference, so it may be ignored.
        """
        with self._lock:
            self._started += 1
        if is_async_callable(fn):
            return self._wg.go(self._run_async, fn, args)
        return self._wg.go(self._run_thread, fn, args)

    async def _run_async(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        slots = self._slots
        try:
            if slots is not None:
                await slots.send(None)
            try:
                async with self._ctx.scope():
                    return await fn(*args)
            finally:
                if slots is not None:
                    slots.recv_nowait()
        except Exception as exc:
            self._fail(exc)
            return None

    def _run_thread(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        slots = self._slots
        try:
            if slots is not None:
                slots.send_blocking(None)
            try:
                return fn(*args)
            finally:
                if slots is not None:
                    slots.recv_nowait()
        except Exception as exc:
            self._fail(exc)
            return None

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            first = self._error is None
            if first:
                self._error = exc
        if first:
            self._cancel(exc)

    def _finish(self) -> None:
        self._cancel()
        if self._error is not None:
            raise self._error

    async def wait(self) -> None:
        """Wait for every function, end the context, re-raise the first error if any."""
        await self._wg.wait()
        self._finish()

    def wait_blocking(self) -> None:
        """Blocking form of :meth:`wait`, for threads."""
        self._wg.wait_blocking()
        self._finish()

    def statistics(self) -> ErrGroupStatistics:
        """Return how many functions run now, were started, and whether one failed."""
        return ErrGroupStatistics(
            running=self._wg.count, started=self._started, failed=self._error is not None
        )

    async def __aenter__(self) -> ErrGroup:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._fail(exc)  # the body failed: stop the members, then report the body's error
        try:
            await self._wg.wait()
        finally:
            self._cancel()
        if exc is None and self._error is not None:
            raise self._error

    def __enter__(self) -> ErrGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._fail(exc)
        try:
            self._wg.wait_blocking()
        finally:
            self._cancel()
        if exc is None and self._error is not None:
            raise self._error
