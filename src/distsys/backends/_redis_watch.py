"""Driving a ``redis://`` watch: a subscriber connection, a reader task, reconnection.

Each watch has its own subscriber connection to the namespace's change channel (and,
when keyspace notifications are on, to ``__keyevent@<db>__:expired``), and a reader task
that moves messages into a bounded buffer for the :class:`WatchState` of
:mod:`distsys.backends._redis_stream` (which explains how snapshot and stream meet
without a gap). A dropped connection is retried with backoff up to :data:`MAX_BACKOFF`
and answered with a new RESET; so is a full buffer (a consumer too slow). Without
keyspace notifications, a periodic check snapshot finds keys that Redis expired and
reports them as DELETE.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Connection
from redis.exceptions import RedisError

from distsys.backends._kv import KVEntry, KVEvent
from distsys.backends._redis_stream import WatchState
from distsys.backends._url import BackendURL
from distsys.clock import Clock, TimerHandle

__all__ = ["MAX_BACKOFF", "RedisWatch", "WatchStats", "open_subscriber"]

INITIAL_BACKOFF: Final = 0.05
MAX_BACKOFF: Final = 1.0
"""The longest pause between two reconnection attempts of a watch, in seconds."""

RETRYABLE: Final = (RedisError, OSError)
"""What ends a watch's session and makes it reconnect (OSError covers TimeoutError)."""

Subscribe = Callable[[], Awaitable[tuple[Connection, bool]]]
Snapshot = Callable[[str, str], Awaitable[tuple[int, tuple[KVEntry, ...]]]]


async def open_subscriber(
    url: BackendURL,
    address: tuple[str, int, int],
    channels: list[str],
    *,
    timeout: float,
    name: str,
) -> Connection:
    """Connect to ``address`` (host, port, db) and subscribe to ``channels``.

    The subscription is confirmed before this returns, so a snapshot taken afterwards
    cannot miss a change. Raises what redis-py raises (or TimeoutError after ``timeout``).
    """
    host, port, db = address
    conn = Connection(
        host=host,
        port=port,
        db=db,
        username=url.username,
        password=url.password,
        socket_timeout=None,  # a subscriber waits for messages as long as it takes
        socket_connect_timeout=timeout,
        socket_keepalive=True,
        client_name=name,
        protocol=2,
    )
    try:
        async with asyncio.timeout(timeout):
            await conn.connect()  # type: ignore[no-untyped-call]
            await conn.send_command("SUBSCRIBE", *channels)
            for _ in channels:
                await conn.read_response()
    except BaseException:
        await conn.disconnect(nowait=True)
        raise
    return conn


@dataclass(slots=True)
class WatchStats:
    """Counters shared by the watches of one store."""

    reconnects: int = 0
    resyncs: int = 0
    keyspace_notifications: bool | None = None


@dataclass(frozen=True, slots=True)
class _Message:
    generation: int
    channel: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class _Lost:
    generation: int
    error: BaseException


@dataclass(frozen=True, slots=True)
class _Tick:
    timer: int


class _Close:
    pass


_CLOSE: Final = _Close()
_Item = _Message | _Lost | _Tick | _Close


class _SessionLostError(Exception):
    pass


class RedisWatch:
    """One ``watch(prefix)``: a subscriber connection, its reader, and reconnection.

    Safe within one event loop: :meth:`events` is iterated by one task, :meth:`close`
    may be called from another.

    Args:
        prefix: the watched key prefix.
        subscribe: opens a subscriber connection; returns it and whether it also
            receives expiry notifications.
        snapshot: ``(prefix, token)`` -> ``(seq, entries)``, publishing the marker.
        channel: the change channel's name.
        hash_prefix: the Redis key name prefix of key hashes (``{ns}k:``).
        unavailable: turns the first connection's failure into the error to raise.
        clock: paces pings, checks and reconnection pauses.
        check_interval: seconds between liveness pings (and, without keyspace
            notifications, expiry checks).
        buffer: messages held for a slow consumer before it is resynchronised.
        stats: counters to update.
        registry: the store's set of open watches (the watch adds and removes itself).
    """

    def __init__(
        self,
        prefix: str,
        *,
        subscribe: Subscribe,
        snapshot: Snapshot,
        channel: bytes,
        hash_prefix: bytes,
        unavailable: Callable[[BaseException], Exception],
        clock: Clock,
        check_interval: float,
        buffer: int,
        stats: WatchStats,
        registry: set[RedisWatch],
    ) -> None:
        self._prefix = prefix
        self._subscribe = subscribe
        self._snapshot = snapshot
        self._channel = channel
        self._hash_prefix = hash_prefix
        self._unavailable = unavailable
        self._clock = clock
        self._check_interval = check_interval
        self._buffer = buffer
        self._stats = stats
        self._registry = registry
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._closed = False
        self._conn: Connection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._generation = 0
        self._timer: TimerHandle | None = None
        self._timer_id = 0
        self._overflowed = False
        self._heard = True
        self._pinged = False

    async def events(self) -> AsyncGenerator[KVEvent, None]:
        """Yield a RESET, then changes; reconnect with a RESET after any interruption.

        Raises:
            Exception: from ``unavailable`` when the first connection attempt fails.
        """
        self._registry.add(self)
        delay = 0.0
        connected = False
        try:
            while not self._closed:
                try:
                    async with aclosing(self._session()) as session:
                        async for event in session:
                            connected = True
                            delay = 0.0
                            yield event
                except (*RETRYABLE, _SessionLostError) as exc:
                    if self._closed:
                        return
                    if not connected:
                        raise self._unavailable(exc) from exc
                finally:
                    await self._teardown()
                if self._closed:
                    return
                self._stats.reconnects += 1
                await self._pause(delay)
                delay = min(max(delay * 2, INITIAL_BACKOFF), MAX_BACKOFF)
        finally:
            self._closed = True
            self._registry.discard(self)
            await self._teardown()

    async def close(self) -> None:
        """End the watch: its iterator stops; idempotent."""
        if not self._closed:
            self._closed = True
            await self._teardown()
            self._queue.put_nowait(_CLOSE)  # wakes the iterating task, wherever it waits

    # ------------------------------------------------------------------ session

    async def _session(self) -> AsyncGenerator[KVEvent, None]:
        while not self._queue.empty():  # what is left belongs to an ended session
            self._queue.get_nowait()
        conn, notifications = await self._subscribe()
        self._stats.keyspace_notifications = notifications
        if self._closed:
            await conn.disconnect(nowait=True)
            return
        self._conn = conn
        self._generation += 1
        generation = self._generation
        self._overflowed, self._heard, self._pinged = False, True, False
        self._reader = asyncio.create_task(self._read(conn, generation))
        state = WatchState(self._prefix, self._hash_prefix)
        await self._request(state, reset=True)
        self._arm(self._check_interval)
        while True:
            item = await self._queue.get()
            if isinstance(item, _Close) or self._closed:
                return
            if isinstance(item, _Tick):
                if item.timer == self._timer_id:
                    await self._on_tick(conn, state, notifications)
                    self._arm(self._check_interval)
            elif item.generation != generation:
                continue
            elif isinstance(item, _Lost):
                raise _SessionLostError(str(item.error)) from item.error
            elif self._overflowed:
                self._overflowed = False
                self._drop_messages()
                self._stats.resyncs += 1
                await self._request(state, reset=True)
            elif item.channel == self._channel:
                events, resync = state.on_change(item.data)
                for event in events:
                    yield event
                if resync:
                    self._stats.resyncs += 1
                    await self._request(state, reset=True)
            else:
                expired = state.on_expired(item.data)
                if expired is not None:
                    yield expired

    async def _request(self, state: WatchState, *, reset: bool) -> None:
        token = secrets.token_hex(8)
        seq, snapshot = await self._snapshot(self._prefix, token)
        state.expect(token, seq, snapshot, reset=reset)

    async def _on_tick(self, conn: Connection, state: WatchState, notifications: bool) -> None:
        if self._pinged and not self._heard:
            raise _SessionLostError("the subscriber connection stopped answering PING")
        self._heard, self._pinged = False, True
        await conn.send_command("PING", check_health=False)
        if not notifications and not state.pending:
            await self._request(state, reset=False)

    async def _read(self, conn: Connection, generation: int) -> None:
        try:
            while True:
                reply = await conn.read_response(disconnect_on_error=False)  # no timeout
                self._heard = True
                if type(reply) is list and len(reply) == 3 and reply[0] == b"message":
                    if self._queue.qsize() >= self._buffer:
                        self._overflowed = True  # the consumer gets a RESET instead
                    else:
                        self._queue.put_nowait(_Message(generation, reply[1], reply[2]))
        except Exception as exc:  # any failure ends the session; the driver reconnects
            self._queue.put_nowait(_Lost(generation, exc))

    # ------------------------------------------------------------------ plumbing

    def _arm(self, delay: float) -> None:
        self._cancel_timer()
        self._timer_id += 1
        tick = _Tick(self._timer_id)
        loop = asyncio.get_running_loop()
        # The clock may call back on another thread (a ManualClock advanced elsewhere).
        self._timer = self._clock.call_later(
            delay, lambda: loop.call_soon_threadsafe(self._queue.put_nowait, tick)
        )

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _pause(self, delay: float) -> None:
        if delay <= 0 or self._closed:
            return
        self._arm(delay)
        while not self._closed:
            item = await self._queue.get()
            if isinstance(item, _Close) or (
                isinstance(item, _Tick) and item.timer == self._timer_id
            ):
                return

    def _drop_messages(self) -> None:
        """Empty the buffer of messages, keeping ticks, losses and the close."""
        keep = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not isinstance(item, _Message):
                keep.append(item)
        for item in keep:
            self._queue.put_nowait(item)

    async def _teardown(self) -> None:
        self._cancel_timer()
        reader, self._reader = self._reader, None
        conn, self._conn = self._conn, None
        if reader is not None:
            reader.cancel()
            await asyncio.wait([reader])
        if conn is not None:
            await conn.disconnect(nowait=True)
