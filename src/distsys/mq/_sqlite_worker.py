"""One worker thread per ``sqlite://`` broker, and group commit of the writes sent to it.

SQLite calls block (on the disk, and on another process's write lock for up to
``busy_timeout``), so they run on a thread of their own and the event loop only waits
for a future. A hop to a thread and back costs tens of microseconds, more than a small
SQLite transaction, so the broker makes few of them: :class:`Worker` is a bare queue and
thread (no executor machinery) that hands each result straight to a callback on the
caller's loop, and :class:`GroupCommit` folds every write queued while one transaction
runs into the next transaction — many tasks publishing or acking one message at a time
share one round trip and one commit.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any, Final, Generic, TypeVar

__all__ = ["GroupCommit", "Worker"]

T = TypeVar("T")
Op = TypeVar("Op")

MAX_BATCH: Final = 1024
"""Operations written in one transaction at most (a bound on how long it holds the lock)."""

Done = Callable[[Any, BaseException | None], object]
_Job = tuple[Callable[..., Any], tuple[Any, ...], Done, asyncio.AbstractEventLoop]


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return  # the caller was cancelled; the operation may still have taken effect
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class Worker:
    """A thread that runs jobs one at a time, in submission order.

    Thread-safe. The thread starts with the first job and ends after :meth:`stop`.

    Args:
        name: the thread's name.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def call(self, function: Callable[..., Any], args: tuple[Any, ...], done: Done) -> None:
        """Run ``function(*args)`` on the thread, then ``done(result, error)`` on this loop.

        Raises:
            RuntimeError: the worker was stopped.
        """
        loop = asyncio.get_running_loop()
        if self._thread is None:
            self._start()
        if self._stopped:
            raise RuntimeError("the worker was stopped")
        self._jobs.put((function, args, done, loop))

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` on the thread and return its result."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.call(function, args, lambda result, error: _resolve(future, result, error))
        return await future

    def stop(self) -> None:
        """End the thread once the jobs already submitted have run. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            if self._thread is not None:
                self._jobs.put(None)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        jobs = self._jobs
        while (job := jobs.get()) is not None:
            function, args, done, loop = job
            error: BaseException | None = None
            result = None
            try:
                result = function(*args)
            except Exception as exc:
                error = exc
            with suppress(RuntimeError):  # that loop is closed: nobody waits for the result
                loop.call_soon_threadsafe(done, result, error)
            del job, function, args, done, loop, result, error


class GroupCommit(Generic[Op]):
    """Write operations in batches: what queues while one batch is written goes next.

    A caller alone gets its own transaction at once (no added latency); callers that
    arrive while a transaction runs share the next one. If a transaction fails, every
    operation in it fails with the same error (nothing of it was written).

    Safe within one event loop.

    Args:
        worker: the thread that runs ``apply``.
        apply: writes a batch in one transaction and returns one result per operation.
        committed: called on the loop with each batch once it is committed.
    """

    def __init__(
        self,
        worker: Worker,
        apply: Callable[[Sequence[Op]], list[Any]],
        committed: Callable[[Sequence[Op]], object],
    ) -> None:
        self._worker = worker
        self._apply = apply
        self._committed = committed
        self._queue: list[tuple[Op, asyncio.Future[Any]]] = []
        self._busy = False

    async def write(self, op: Op) -> Any:
        """Queue ``op`` for the next transaction; return its result once committed."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future))
        if not self._busy:
            self._flush()
        return await future

    def _flush(self) -> None:
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        ops = [op for op, _ in batch]
        try:
            self._worker.call(
                self._apply, (ops,), lambda result, error: self._finished(batch, result, error)
            )
        except RuntimeError as exc:
            for _, future in batch:
                _resolve(future, None, exc)
            return
        self._busy = True

    def _finished(
        self,
        batch: list[tuple[Op, asyncio.Future[Any]]],
        results: list[Any] | None,
        error: BaseException | None,
    ) -> None:
        self._busy = False
        if error is None:
            assert results is not None
            self._committed([op for op, _ in batch])
            for (_, future), result in zip(batch, results, strict=True):
                _resolve(future, result, None)
        else:
            for _, future in batch:
                _resolve(future, None, error)
        if self._queue:
            self._flush()
