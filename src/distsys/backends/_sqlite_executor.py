"""Where a ``sqlite://`` backend's SQLite calls run: inline on the event loop, or on a worker.

SQLite calls block — on the disk, and on another connection's write lock for up to
``busy_timeout`` — so every ``sqlite://`` client owns a worker thread with a connection
of its own (:class:`Worker`: a bare queue and thread that hands each result straight to a
callback on the caller's loop). But a hop to that thread and back costs tens of
microseconds, up to a millisecond on a loaded machine: more than a short transaction
itself. So an :class:`Executor` runs short work *inline*, on the event loop's thread,
under rules that keep the loop from ever waiting on a lock:

1. The loop has a connection of its own, opened with ``busy_timeout=0`` and
   ``wal_autocheckpoint=0``, and only after the worker has opened the file (so creating
   the schema and any repair after a reboot, which wait for locks, happen on the worker).
2. A short write (for the queue: a publish, a batch of at most :data:`INLINE_WEIGHT`
   rows, a claim, acks, a nack) begins with ``BEGIN IMMEDIATE``. If another connection
   holds the write lock, SQLite answers SQLITE_BUSY at once instead of waiting; the
   transaction is rolled back (nothing of it was written) and the same work is handed to
   the worker, which waits for the lock for up to ``busy_timeout`` (trying again every
   50 µs to 1 ms: :func:`~distsys.backends._sqlite_file.patiently`).
3. Checkpoints run only on the worker. After inline writes have added about
   :data:`CHECKPOINT_PAGES` pages to the WAL (an estimate from the rows written, scaled
   by the WAL size each checkpoint reports), ``PRAGMA wal_checkpoint(PASSIVE)`` is
   queued on the worker; until it is done, inline work goes to the worker too (behind
   the checkpoint), so the next write finds the WAL copied back and can restart it
   instead of growing.
4. Work that may be slow — reads that count or scan, opening the file, an operation
   heavier than :data:`INLINE_WEIGHT` — always runs on the worker.
5. The inline connection is used only by the thread that first used it (the event loop's);
   work from any other thread goes to the worker.

What the loop may still spend time on is the transaction itself: SQLite's own work, and
writing pages to the WAL — with ``synchronous=NORMAL`` a commit does not fsync (only a
checkpoint does, on the worker), so that is a copy into the OS page cache. Durability is
unchanged: an inline commit is the same SQLite commit as one on the worker.

Errors: SQLite's errors become :class:`~distsys.errors.BackendUnavailableError` with a
reason in words (:func:`~distsys.backends._sqlite_file.reason`), on either path. A client
used in a process other than the one that created it (after ``fork``) refuses to work:
its connections and thread belong to the parent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from distsys.backends._sqlite_file import is_busy, patiently, reason
from distsys.errors import BackendUnavailableError

__all__ = [
    "BUSY",
    "CHECKPOINT_PAGES",
    "INLINE_WEIGHT",
    "Executor",
    "ExecutorStatistics",
    "Store",
    "Worker",
]

log = logging.getLogger("distsys.backends.sqlite")

INLINE_WEIGHT: Final = 2048
"""The most rows (or 128-byte units of payload) one inline transaction may write."""
CHECKPOINT_PAGES: Final = 3000
"""WAL pages written inline between two checkpoints (estimated; calibrated by each one).

More than SQLite's default of 1000, since each checkpoint costs two fsyncs, and less than
the 4096 frames one block of the WAL index maps (lookups slow down past it)."""
REOPEN_PAUSE: Final = 1.0
"""Seconds before the inline connection is tried again after it failed to open."""

T = TypeVar("T")
S = TypeVar("S", bound="Store")

Done = Callable[[Any, BaseException | None], object]
_Job = tuple[Callable[..., Any], tuple[Any, ...], Done, asyncio.AbstractEventLoop]


class _Busy:
    __slots__ = ()

    def __repr__(self) -> str:
        return "BUSY"


BUSY: Final = _Busy()
"""What :meth:`Executor.try_inline` returns when the work must go to the worker."""


class Store(Protocol):
    """One connection to a distsys file, and the operations on it (not thread-safe)."""

    @property
    def opened(self) -> bool:
        """Whether the connection is open."""
        ...

    def connection(self) -> sqlite3.Connection:
        """Open the file if needed; return the connection."""
        ...

    def close(self) -> None:
        """Close the connection; later calls raise BackendUnavailableError."""
        ...


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


@dataclass(frozen=True, slots=True)
class ExecutorStatistics:
    """Where a client's SQLite work ran.

    Attributes:
        inline: operations run on the event loop's thread.
        worker: operations run on the worker thread.
        busy: inline attempts that found the file locked and went to the worker.
        checkpoints: WAL checkpoints run for the inline writes.
    """

    inline: int
    worker: int
    busy: int
    checkpoints: int


class Executor(Generic[S]):
    """Run a store's operations inline when they cannot wait on a lock, else on a worker.

    Operations are a store class's methods, passed unbound (``QueueStore.claim``) and
    called with the store of the path taken. Safe within one event loop; :meth:`run`
    (the worker only) may be called from any thread that runs an event loop.

    Args:
        url: the redacted URL, for error messages.
        owner: what the caller is called in the fork refusal ("store", "broker").
        thread_name: the worker thread's name.
        busy_timeout: the worker's wait for a lock, for error messages.
        worker_store: the worker's store (opened on the worker thread).
        inline_store: the loop's store (opened with ``inline=True``), or None for none.
    """

    def __init__(
        self,
        url: str,
        *,
        owner: str,
        thread_name: str,
        busy_timeout: float,
        worker_store: S,
        inline_store: S | None = None,
    ) -> None:
        self._url = url
        self._owner = owner
        self._busy_timeout = busy_timeout
        self._store = worker_store
        self._inline = inline_store
        self._worker = Worker(thread_name)
        self._pid = os.getpid()
        self._thread: int | None = None  # the thread that runs inline work
        self._lock = threading.Lock()
        self._reopen_at = 0.0
        self._pages = 0  # estimated WAL pages written inline since the last checkpoint
        self._scale = 1.0  # WAL frames per estimated page, as the last checkpoint found
        self._checkpointing = False
        self._closed = False
        self._counts = dict.fromkeys(ExecutorStatistics.__slots__, 0)

    # ------------------------------------------------------------------ guards

    def check_process(self) -> None:
        """Refuse to work in a process other than the one that opened the client."""
        if os.getpid() != self._pid:
            raise BackendUnavailableError(
                self._url,
                f"this {self._owner} was opened by process {self._pid}; "
                "open a new one in each process",
            )

    def _error(self, exc: sqlite3.Error) -> BackendUnavailableError:
        return BackendUnavailableError(self._url, reason(exc, self._busy_timeout))

    def _closed_error(self) -> BackendUnavailableError:
        return BackendUnavailableError(self._url, "this client has been closed")

    # ------------------------------------------------------------------ worker

    def _on_worker(self, method: Callable[..., T], args: tuple[Any, ...]) -> T:
        store = self._store
        try:
            return patiently(
                lambda: method(store, *args), self._busy_timeout, since=time.monotonic()
            )
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from exc

    def submit(self, method: Callable[..., Any], args: tuple[Any, ...], done: Done) -> None:
        """Run ``method(worker_store, *args)`` on the worker; ``done(result, error)`` after.

        Raises:
            BackendUnavailableError: another process's client, or the client was closed.
        """
        self.check_process()
        try:
            self._worker.call(self._on_worker, (method, args), done)
        except RuntimeError:
            raise self._closed_error() from None
        self._counts["worker"] += 1

    async def run(self, method: Callable[..., T], *args: Any) -> T:
        """Run ``method(worker_store, *args)`` on the worker and return its result."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.submit(method, args, lambda result, error: _resolve(future, result, error))
        return await future

    # ------------------------------------------------------------------ inline

    def try_inline(self, method: Callable[..., T], args: tuple[Any, ...], weight: int) -> T | _Busy:
        """Run ``method(inline_store, *args)`` now if it needs no wait; else return BUSY.

        Args:
            method: the operation; a write must begin with ``BEGIN IMMEDIATE``.
            args: its arguments.
            weight: the rows it writes (0: a read), for the size limit and checkpoints.

        Raises:
            BackendUnavailableError: SQLite failed otherwise than on a lock.
        """
        self.check_process()
        store = self._inline
        if (
            store is None
            or self._checkpointing
            or weight > INLINE_WEIGHT
            or not self._store.opened  # the worker opens the file first
        ):
            return BUSY
        thread = threading.get_ident()
        if self._thread != thread:
            with self._lock:
                if self._thread is None:
                    self._thread = thread
            if self._thread != thread:
                return BUSY
        if not store.opened:
            if self._closed or time.monotonic() < self._reopen_at:
                return BUSY
            try:
                store.connection()
            except (sqlite3.Error, BackendUnavailableError) as exc:
                log.debug("%s: no inline connection (%s); using the worker", self._url, exc)
                self._reopen_at = time.monotonic() + REOPEN_PAUSE
                return BUSY
        try:
            result = method(store, *args)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise self._error(exc) from exc
            self._counts["busy"] += 1
            return BUSY
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from exc
        self._counts["inline"] += 1
        if weight:
            self._wrote(weight)
        return result

    async def short(self, method: Callable[..., T], *args: Any, weight: int = 0) -> T:
        """Run a short operation inline if it needs no wait, else on the worker."""
        result = self.try_inline(method, args, weight)
        if result is BUSY:
            return await self.run(method, *args)
        return result  # type: ignore[return-value]

    def _wrote(self, weight: int) -> None:
        """Count the pages an inline write added to the WAL; checkpoint when due."""
        self._pages += 2 + weight // 32
        if self._pages * self._scale < CHECKPOINT_PAGES or self._checkpointing:
            return
        try:
            self._worker.call(self._checkpoint, (self._pages,), self._checkpointed)
        except RuntimeError:
            return  # closed
        self._pages = 0
        self._checkpointing = True

    def _checkpoint(self, estimated: int) -> tuple[int, int]:
        """Copy the WAL back into the file, without waiting for readers or writers."""
        _, frames, _ = self._store.connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return estimated, int(frames)

    def _checkpointed(self, result: Any, error: BaseException | None) -> None:
        self._checkpointing = False
        if error is not None:
            log.debug("%s: checkpoint failed: %s", self._url, error)
            return
        self._counts["checkpoints"] += 1
        estimated, frames = result
        if estimated > 0 and frames > 0:  # the WAL's real size calibrates the estimate
            self._scale = min(max(frames / estimated, 0.1), 10.0)

    # ------------------------------------------------------------------ the rest

    def statistics(self) -> ExecutorStatistics:
        """Return where the work ran so far."""
        return ExecutorStatistics(**self._counts)

    async def aclose(self) -> None:
        """Close both connections and end the worker; idempotent.

        In a forked child it does nothing: the connections and thread are the parent's.
        """
        if os.getpid() != self._pid or self._closed:
            return
        self._closed = True
        try:
            if self._inline is not None:
                self._inline.close()  # first, so that the worker's is the last to close
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            try:
                self._worker.call(
                    self._store.close, (), lambda result, error: _resolve(future, result, error)
                )
            except RuntimeError:  # already stopped
                return
            await future
        finally:
            self._worker.stop()
