"""``sqlite:///path``: a KV store in one SQLite file, shared by the processes of one machine.

Features: everything in :class:`~distsys.backends.KV`, correct while several processes
use the file at once. Each operation is one SQLite transaction (``BEGIN IMMEDIATE`` for
writes, so compare-and-set is atomic across processes). Leases expire on the injected
clock; any writer, and every watch's poller, purges expired leases, so watchers hear of an
expiry without other traffic. Watches poll a change log that every write appends to in its
own transaction; a watcher that falls behind the log's trimmed end gets a new RESET
snapshot, never a gap. The file and its directory are created on first use; a file that is
not a distsys database, or was written by a newer distsys, is refused and left untouched.

Connection string::

    sqlite:///relative/path.db       relative to the working directory at construction
    sqlite:////absolute/path.db      absolute
    sqlite:///.distsys/registry.db?poll_interval=0.05&busy_timeout=10&history=10000

Options, as query parameters or as keyword arguments of :class:`SQLiteKV` (a keyword
argument wins over the URL):

- ``poll_interval`` (default 0.02): seconds between two polls of the change log by a watch.
- ``busy_timeout`` (default 5.0): seconds to wait for another process's write lock before
  an operation raises :class:`~distsys.errors.BackendUnavailableError`.
- ``history`` (default 10000): change-log rows kept for watchers that fall behind (when
  processes sharing a file disagree, the smallest setting wins).

Durability: WAL mode with ``synchronous=NORMAL``. Transactions are atomic, a crash of any
process (even SIGKILL mid-write) loses no committed operation, and no crash or power loss
corrupts the file; but a power loss or OS crash may undo the operations committed since
the WAL was last synced (at a checkpoint). The file must be on a local file system (WAL
shares memory between the processes; network file systems do not support it).

Time: a lease's expiry is stored as a reading of the injected clock, so every process
sharing a file must read the same scale. The default :class:`~distsys.clock.MonotonicClock`
(``time.monotonic``: CLOCK_MONOTONIC on Linux) is system-wide on Linux, macOS and Windows,
so the processes of one machine agree. After a reboot that clock starts again; the first
process to open the file then drops the leases whose last renewal lies in the future
(their holders died with the previous boot).

Threading: each store has a worker thread with a connection of its own, which runs the
reads, the watches' polls and everything that may wait on a lock; short writes (put,
compare-and-set, delete, grant, keep-alive, revoke) run inline on the event loop's thread,
on a second connection that never waits: if another process holds the write lock, the
write goes to the worker instead (the rules, and why the loop never waits on a lock, are
in :mod:`distsys.backends._sqlite_executor`). A read costs a thread round trip (tens of
microseconds); an inline write costs its transaction only.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from contextlib import suppress
from types import MappingProxyType
from typing import Final

from distsys.backends._kv import EventType, KVBase, KVEntry, KVEvent
from distsys.backends._sqlite_executor import Executor
from distsys.backends._sqlite_file import file_url, storable
from distsys.backends._sqlite_store import Batch, SQLiteStore, prefix_end
from distsys.backends._url import BackendURL, int_option, seconds_option
from distsys.clock import Clock, MonotonicClock
from distsys.errors import BackendUnavailableError

__all__ = ["SQLiteKV"]

DEFAULTS: Final = MappingProxyType({"poll_interval": 0.02, "busy_timeout": 5.0, "history": 10_000})
"""The options and their defaults (see the module docs)."""
POLL_BATCH: Final = 512
"""Change-log rows one poll reads at most; a full batch is followed by another poll at once."""


def _storable(text: str, field: str) -> str:
    return storable(text, field, "a str without NUL characters or lone surrogates")


def _weight(value: bytes) -> int:
    """A write's weight for the inline path (a row, and its value in 128-byte units)."""
    return 1 + len(value) // 128


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class SQLiteKV(KVBase):
    """A KV store in a SQLite file that the processes of one machine share.

    Thread-safe: short writes made on the thread that made the first one run inline, on
    its connection; everything else runs on the store's worker thread, so tasks of any
    event loop may share a store. Not fork-safe: open one store in each
    process (a store used in a process other than the one that opened it raises
    BackendUnavailableError). The file is opened on first use, so a path that cannot be
    opened is reported by the first operation (``await kv.ping()`` checks it).

    As with any backend, an operation whose task is cancelled may still take effect. A
    watch raises BackendUnavailableError if the file becomes unreadable, and ends quietly
    when the store is closed.

    Args:
        url: ``sqlite:///path.db`` (see the module docs for its options).
        clock: the clock leases expire on (default: the monotonic clock); every process
            sharing the file must read the same scale.
        poll_interval: seconds between two polls of the change log by a watch (0.02).
        busy_timeout: seconds to wait for another process's write lock (5.0).
        history: change-log rows kept for watchers that fall behind (10000).

    Raises:
        InvalidArgumentError: the URL is not a ``sqlite://`` file URL, it carries an unknown
            option, or an option is out of range.
    """

    path: str
    """The database file's absolute path."""

    def __init__(
        self,
        url: str | BackendURL,
        *,
        clock: Clock | None = None,
        poll_interval: float | None = None,
        busy_timeout: float | None = None,
        history: int | None = None,
    ) -> None:
        given = {"poll_interval": poll_interval, "busy_timeout": busy_timeout, "history": history}
        parsed, self.path, options = file_url(url, DEFAULTS, given, noun="store")
        super().__init__(parsed)
        self._poll_interval = seconds_option("poll_interval", options["poll_interval"], zero=False)
        timeout = seconds_option("busy_timeout", options["busy_timeout"], zero=True)
        keep = int_option("history", options["history"])
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        redacted = parsed.redacted()
        self._store = SQLiteStore(
            self.path, redacted, self._clock, busy_timeout=timeout, history=keep
        )
        inline = SQLiteStore(
            self.path, redacted, self._clock, busy_timeout=0, history=keep, inline=True
        )
        self._executor = Executor(
            redacted,
            owner="store",
            thread_name="distsys-sqlite",
            busy_timeout=timeout,
            worker_store=self._store,
            inline_store=inline,
        )
        self._lock = threading.Lock()
        self._naps: set[asyncio.Future[None]] = set()

    # ------------------------------------------------------------------ plumbing

    async def _nap(self) -> None:
        """Sleep one poll interval of real time (I/O pacing), or until aclose()."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(self._poll_interval, _wake, waiter)
        with self._lock:
            if self._closed:
                timer.cancel()
                return
            self._naps.add(waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            with self._lock:
                self._naps.discard(waiter)

    # ------------------------------------------------------------------ the hooks

    async def _ping(self) -> None:
        await self._executor.run(SQLiteStore.ping)

    async def _get(self, key: str) -> KVEntry | None:
        return await self._executor.run(SQLiteStore.get, _storable(key, "key"))

    async def _list(self, prefix: str) -> list[KVEntry]:
        prefix = _storable(prefix, "prefix")
        return await self._executor.run(SQLiteStore.list, prefix, prefix_end(prefix))

    async def _put(self, key: str, value: bytes, lease: int | None) -> KVEntry:
        key = _storable(key, "key")
        return await self._executor.short(SQLiteStore.put, key, value, lease, weight=_weight(value))

    async def _compare_and_set(
        self, key: str, value: bytes, version: int, lease: int | None
    ) -> KVEntry | None:
        key = _storable(key, "key")
        return await self._executor.short(
            SQLiteStore.compare_and_set, key, value, version, lease, weight=_weight(value)
        )

    async def _delete(self, key: str) -> bool:
        return await self._executor.short(SQLiteStore.delete, _storable(key, "key"), weight=1)

    async def _grant(self, ttl: float) -> int:
        return await self._executor.short(SQLiteStore.grant, ttl, weight=1)

    async def _keep_alive(self, lease: int) -> bool:
        return await self._executor.short(SQLiteStore.keep_alive, lease, weight=1)

    async def _revoke(self, lease: int) -> bool:
        return await self._executor.short(SQLiteStore.revoke, lease, weight=1)

    def _watch(self, prefix: str) -> AsyncGenerator[KVEvent, None]:
        return self._events(_storable(prefix, "prefix"))

    async def _events(self, prefix: str) -> AsyncGenerator[KVEvent, None]:
        end = prefix_end(prefix)
        try:
            rev, snapshot = await self._executor.run(SQLiteStore.snapshot, prefix, end)
        except BackendUnavailableError:
            if self._closed:
                return
            raise
        yield KVEvent(EventType.RESET, snapshot=snapshot)
        while not self._closed:
            try:
                batch: Batch = await self._executor.run(
                    SQLiteStore.changes, prefix, end, rev, POLL_BATCH
                )
            except BackendUnavailableError:
                if self._closed:
                    return
                raise
            rev = batch.rev
            for event in batch.events:
                yield event
            if not batch.more:
                await self._nap()

    async def _aclose(self) -> None:
        with self._lock:
            naps, self._naps = self._naps, set()
        for waiter in naps:
            with suppress(RuntimeError):  # its loop is already closed: nothing waits on it
                waiter.get_loop().call_soon_threadsafe(_wake, waiter)
        await self._executor.aclose()  # in a forked copy, nothing: the parent's to close
