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

Threading: each store has one worker thread that owns its one connection and runs every
SQLite call in order, so the event loop never waits on a lock or on the disk. One
operation costs a thread round trip (tens of microseconds).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from types import MappingProxyType
from typing import Any, Final, TypeVar

from distsys.backends._kv import EventType, KVBase, KVEntry, KVEvent
from distsys.backends._sqlite_store import Batch, SQLiteStore, prefix_end
from distsys.backends._url import BackendURL, parse_url
from distsys.clock import Clock, MonotonicClock
from distsys.errors import ArgumentTypeError, BackendUnavailableError, InvalidArgumentError

__all__ = ["SQLiteKV"]

DEFAULTS: Final = MappingProxyType({"poll_interval": 0.02, "busy_timeout": 5.0, "history": 10_000})
"""The options and their defaults (see the module docs)."""
POLL_BATCH: Final = 512
"""Change-log rows one poll reads at most; a full batch is followed by another poll at once."""

_URL_ACCEPTED: Final = (
    "a sqlite:///path.db URL, with optional query options poll_interval, busy_timeout, history"
)

T = TypeVar("T")


def _seconds(field: str, value: object, *, zero: bool) -> float:
    accepted = f"a finite number of seconds {'>= 0' if zero else '> 0'}"
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidArgumentError(field, value, accepted) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentTypeError(field, value, accepted)
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise InvalidArgumentError(field, value, accepted)
    return float(value)


def _count(field: str, value: object) -> int:
    accepted = "an int >= 1"
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise InvalidArgumentError(field, value, accepted) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(field, value, accepted)
    if value < 1:
        raise InvalidArgumentError(field, value, accepted)
    return value


def _storable(text: str, field: str) -> str:
    """Refuse what SQLite cannot store as TEXT (a str with lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(
            field, text, "a str without NUL characters or lone surrogates"
        ) from None
    return text


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class SQLiteKV(KVBase):
    """A KV store in a SQLite file that the processes of one machine share.

    Thread-safe: every database call runs, in order, on the store's one worker thread, so
    tasks of any event loop may share a store. Not fork-safe: open one store in each
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
        parsed = parse_url(url) if isinstance(url, str) else url
        super().__init__(parsed)
        if parsed.scheme != "sqlite":
            raise InvalidArgumentError("url", parsed.redacted(), _URL_ACCEPTED)
        unknown = sorted(set(parsed.query) - DEFAULTS.keys())
        if unknown:
            raise InvalidArgumentError(
                "url", parsed.redacted(), _URL_ACCEPTED, detail=f"unknown option {unknown[0]!r}"
            )
        if parsed.path == ":memory:" or parsed.path.startswith("file:"):
            raise InvalidArgumentError(
                "url",
                parsed.redacted(),
                _URL_ACCEPTED,
                detail="use memory:// for a store in memory",
            )
        given = {"poll_interval": poll_interval, "busy_timeout": busy_timeout, "history": history}
        options: dict[str, object] = {**DEFAULTS, **parsed.query}
        options.update({name: value for name, value in given.items() if value is not None})
        self._poll_interval = _seconds("poll_interval", options["poll_interval"], zero=False)
        timeout = _seconds("busy_timeout", options["busy_timeout"], zero=True)
        keep = _count("history", options["history"])
        self.path = os.path.abspath(parsed.path)
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._store = SQLiteStore(
            self.path, parsed.redacted(), self._clock, busy_timeout=timeout, history=keep
        )
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._naps: set[asyncio.Future[None]] = set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="distsys-sqlite")

    # ------------------------------------------------------------------ plumbing

    def _unavailable(self, reason: str) -> BackendUnavailableError:
        return BackendUnavailableError(self.url.redacted(), reason)

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` on the worker thread and wait for it without blocking."""
        if os.getpid() != self._pid:
            raise self._unavailable(
                f"this store was opened by process {self._pid}; open a new one in each process"
            )
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, function, *args)
        except RuntimeError:  # the executor was shut down by aclose()
            raise self._unavailable("this client has been closed") from None
        return await future

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
        await self._call(self._store.ping)

    async def _get(self, key: str) -> KVEntry | None:
        return await self._call(self._store.get, _storable(key, "key"))

    async def _list(self, prefix: str) -> list[KVEntry]:
        prefix = _storable(prefix, "prefix")
        return await self._call(self._store.list, prefix, prefix_end(prefix))

    async def _put(self, key: str, value: bytes, lease: int | None) -> KVEntry:
        return await self._call(self._store.put, _storable(key, "key"), value, lease)

    async def _compare_and_set(
        self, key: str, value: bytes, version: int, lease: int | None
    ) -> KVEntry | None:
        return await self._call(
            self._store.compare_and_set, _storable(key, "key"), value, version, lease
        )

    async def _delete(self, key: str) -> bool:
        return await self._call(self._store.delete, _storable(key, "key"))

    async def _grant(self, ttl: float) -> int:
        return await self._call(self._store.grant, ttl)

    async def _keep_alive(self, lease: int) -> bool:
        return await self._call(self._store.keep_alive, lease)

    async def _revoke(self, lease: int) -> bool:
        return await self._call(self._store.revoke, lease)

    def _watch(self, prefix: str) -> AsyncGenerator[KVEvent, None]:
        return self._events(_storable(prefix, "prefix"))

    async def _events(self, prefix: str) -> AsyncGenerator[KVEvent, None]:
        end = prefix_end(prefix)
        try:
            rev, snapshot = await self._call(self._store.snapshot, prefix, end)
        except BackendUnavailableError:
            if self._closed:
                return
            raise
        yield KVEvent(EventType.RESET, snapshot=snapshot)
        while not self._closed:
            try:
                batch: Batch = await self._call(self._store.changes, prefix, end, rev, POLL_BATCH)
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
        if os.getpid() != self._pid:
            return  # a forked copy: the connection and the worker belong to the parent
        try:
            await self._call(self._store.close)
        finally:
            self._executor.shutdown(wait=False)
