"""``memory://``: a KV store in this process's memory.

Features: everything in :class:`~distsys.backends.KV`; leases expire on the injected
clock (lazily on every operation, and by a timer so that watchers see expiry without
traffic). Connection string: ``memory://`` (nothing else). Two ``open_kv("memory://")``
calls give two separate stores: share one by passing the same object.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from distsys.backends._kv import EventType, KVBase, KVEntry, KVEvent
from distsys.backends._url import BackendURL, parse_url
from distsys.clock import Clock, MonotonicClock, TimerHandle
from distsys.concurrency import Chan
from distsys.errors import ChannelClosedError, LeaseExpiredError, WouldBlock

__all__ = ["MemoryKV"]

WATCH_BUFFER = 1024
"""Events a slow watcher may fall behind by before it is resynchronised with a RESET."""


@dataclass(slots=True)
class _Lease:
    ttl: float
    expires: float
    keys: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Watcher:
    prefix: str
    events: Chan[KVEvent]
    overflowed: bool = False


class MemoryKV(KVBase):
    """A KV store held in memory, for one process and for tests.

    Thread-safe: one lock guards the data; watchers are served through channels, so
    tasks of any event loop and threads may use one store at once.

    Args:
        url: ``memory://`` (optional).
        clock: the clock leases expire on (default: the monotonic clock).
    """

    def __init__(self, url: str | BackendURL = "memory://", *, clock: Clock | None = None) -> None:
        super().__init__(parse_url(url) if isinstance(url, str) else url)
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._lock = threading.Lock()
        self._data: dict[str, KVEntry] = {}
        self._leases: dict[int, _Lease] = {}
        self._ids = itertools.count(1)
        self._watchers: list[_Watcher] = []
        self._timer: TimerHandle | None = None
        self._timer_due: float | None = None

    # ------------------------------------------------------------ under the lock

    def _emit(self, event: KVEvent) -> None:
        for w in self._watchers:
            if w.overflowed or not event.key.startswith(w.prefix):
                continue
            try:
                w.events.send_nowait(event)
            except WouldBlock:
                w.overflowed = True  # it will get a fresh RESET instead of a gap

    def _remove(self, key: str) -> bool:
        entry = self._data.pop(key, None)
        if entry is None:
            return False
        if entry.lease is not None and entry.lease in self._leases:
            self._leases[entry.lease].keys.discard(key)
        self._emit(KVEvent(EventType.DELETE, key))
        return True

    def _expire(self) -> None:
        now = self._clock.now()
        for lease_id in [i for i, lease in self._leases.items() if lease.expires <= now]:
            for key in sorted(self._leases.pop(lease_id).keys):
                self._remove(key)
        self._arm()

    def _arm(self) -> None:
        """Keep one timer for the earliest lease expiry, so watchers hear of it."""
        due = min((lease.expires for lease in self._leases.values()), default=None)
        if due == self._timer_due:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_due = due
        if due is not None and not self._closed:
            self._timer = self._clock.call_later(due - self._clock.now(), self._on_timer)

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            self._timer_due = None
            self._expire()

    def _write(self, key: str, value: bytes, lease: int | None) -> KVEntry:
        if lease is not None and lease not in self._leases:
            raise LeaseExpiredError(lease)
        old = self._data.get(key)
        if old is not None and old.lease is not None and old.lease != lease:
            held = self._leases.get(old.lease)
            if held is not None:
                held.keys.discard(key)
        entry = KVEntry(key, value, old.version + 1 if old is not None else 1, lease)
        self._data[key] = entry
        if lease is not None:
            self._leases[lease].keys.add(key)
        self._emit(KVEvent(EventType.PUT, key, entry))
        return entry

    def _snapshot(self, prefix: str) -> tuple[KVEntry, ...]:
        return tuple(self._data[k] for k in sorted(self._data) if k.startswith(prefix))

    # ------------------------------------------------------------------ the hooks

    async def _ping(self) -> None:
        return None

    async def _get(self, key: str) -> KVEntry | None:
        with self._lock:
            self._expire()
            return self._data.get(key)

    async def _list(self, prefix: str) -> list[KVEntry]:
        with self._lock:
            self._expire()
            return list(self._snapshot(prefix))

    async def _put(self, key: str, value: bytes, lease: int | None) -> KVEntry:
        with self._lock:
            self._expire()
            return self._write(key, value, lease)

    async def _compare_and_set(
        self, key: str, value: bytes, version: int, lease: int | None
    ) -> KVEntry | None:
        with self._lock:
            self._expire()
            current = self._data.get(key)
            if (current.version if current is not None else 0) != version:
                return None
            return self._write(key, value, lease)

    async def _delete(self, key: str) -> bool:
        with self._lock:
            self._expire()
            return self._remove(key)

    async def _grant(self, ttl: float) -> int:
        with self._lock:
            self._expire()
            lease_id = next(self._ids)
            self._leases[lease_id] = _Lease(ttl, self._clock.now() + ttl)
            self._arm()
            return lease_id

    async def _keep_alive(self, lease: int) -> bool:
        with self._lock:
            self._expire()
            held = self._leases.get(lease)
            if held is None:
                return False
            held.expires = self._clock.now() + held.ttl
            self._arm()
            return True

    async def _revoke(self, lease: int) -> bool:
        with self._lock:
            self._expire()
            held = self._leases.pop(lease, None)
            if held is None:
                return False
            for key in sorted(held.keys):
                self._remove(key)
            self._arm()
            return True

    async def _watch(self, prefix: str) -> AsyncGenerator[KVEvent, None]:
        watcher = _Watcher(prefix, Chan(WATCH_BUFFER))
        with self._lock:
            self._expire()
            snapshot = self._snapshot(prefix)
            self._watchers.append(watcher)
        try:
            yield KVEvent(EventType.RESET, snapshot=snapshot)
            while True:
                if watcher.overflowed:
                    with self._lock:
                        while len(watcher.events):
                            watcher.events.recv_nowait()
                        watcher.overflowed = False
                        snapshot = self._snapshot(prefix)
                    yield KVEvent(EventType.RESET, snapshot=snapshot)
                    continue
                try:
                    event = await watcher.events.recv()
                except ChannelClosedError:
                    return
                yield event
        finally:
            with self._lock:
                if watcher in self._watchers:
                    self._watchers.remove(watcher)

    async def _aclose(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            watcher.events.close()
