"""The pure half of a ``redis://`` watch: decode the change channel, keep the view.

:class:`WatchState` does no I/O; :mod:`distsys.backends._redis_watch` drives it with a
subscriber connection. The scheme it implements:

1. the driver subscribes first;
2. then runs the snapshot script, which reads the prefix *and publishes a marker* with a
   fresh token into the change channel, in one atomic step;
3. messages before the marker are already in the snapshot and are dropped; the marker
   yields RESET; every later change is applied in stream order.

The marker orders the snapshot against every message of the connection, expiry
notifications included (they carry no sequence number). Scripted changes carry one, so
a missing change is detected and answered with a new RESET.
"""

from __future__ import annotations

from dataclasses import dataclass

from distsys.backends._kv import EventType, KVEntry, KVEvent

__all__ = ["Change", "WatchState", "parse_change"]


@dataclass(frozen=True, slots=True)
class Change:
    """One message of the change channel (see :mod:`distsys.backends._redis_lua`)."""

    seq: int
    kind: bytes
    version: int
    lease: int | None
    key: str
    value: bytes


def parse_change(data: bytes) -> Change | None:
    """Decode a change-channel message; None if it is not one of ours."""
    parts = data.split(b"\0", 5)
    if len(parts) != 6:
        return None
    seq, kind, version, lease, key, value = parts
    try:
        return Change(
            int(seq), kind, int(version) if version else 0, int(lease) if lease else None,
            key.decode(), value,
        )  # fmt: skip
    except (ValueError, UnicodeDecodeError):
        return None


@dataclass(frozen=True, slots=True)
class _Pending:
    token: str
    seq: int
    snapshot: tuple[KVEntry, ...]
    reset: bool


class WatchState:
    """Turn one namespace's change stream into one watch's events (no I/O).

    The driver calls :meth:`expect` with a snapshot whose marker is on its way, then feeds
    every message in stream order. A *reset* snapshot replaces the view: changes before
    its marker are dropped and the marker yields RESET. A *check* snapshot (used when
    keyspace notifications are off) lets changes flow and, at its marker, reports the
    keys the view still holds but Redis has expired as DELETE.

    Not thread-safe; one per watch session.
    """

    def __init__(self, prefix: str, hash_prefix: bytes) -> None:
        self.prefix = prefix
        self._hash_prefix = hash_prefix
        self._view: dict[str, KVEntry] = {}
        self._seq: int | None = None  # None: no valid view (before a RESET, after a gap)
        self._pending: _Pending | None = None

    @property
    def pending(self) -> bool:
        """True while a snapshot's marker has not arrived yet."""
        return self._pending is not None

    def expect(self, token: str, seq: int, snapshot: tuple[KVEntry, ...], *, reset: bool) -> None:
        """Announce a snapshot taken at ``seq`` whose marker carries ``token``."""
        if self._pending is not None and self._pending.reset:
            reset = True  # a later check must not cancel a RESET still owed
        self._pending = _Pending(token, seq, snapshot, reset)

    def on_change(self, data: bytes) -> tuple[list[KVEvent], bool]:
        """Feed a change-channel message; return its events and whether to resync."""
        change = parse_change(data)
        if change is None:
            return [], False
        if change.kind == b"M":
            return self._on_marker(change.key), False
        if self._seq is None or (self._pending is not None and self._pending.reset):
            return [], False
        if change.seq != self._seq + 1:
            self._seq = None  # a gap: nothing is trustworthy until a new snapshot
            return [], True
        self._seq = change.seq
        if not change.key.startswith(self.prefix):
            return [], False
        if change.kind == b"P":
            entry = KVEntry(change.key, change.value, change.version, change.lease)
            self._view[change.key] = entry
            return [KVEvent(EventType.PUT, change.key, entry)], False
        if change.kind == b"D" and self._view.pop(change.key, None) is not None:
            return [KVEvent(EventType.DELETE, change.key)], False
        return [], False

    def on_expired(self, name: bytes) -> KVEvent | None:
        """Feed an expiry notification (a Redis key name); return its DELETE, if any."""
        if self._seq is None or (self._pending is not None and self._pending.reset):
            return None
        if not name.startswith(self._hash_prefix):
            return None
        try:
            key = name[len(self._hash_prefix) :].decode()
        except UnicodeDecodeError:
            return None
        if self._view.pop(key, None) is None:
            return None
        return KVEvent(EventType.DELETE, key)

    def _on_marker(self, token: str) -> list[KVEvent]:
        pending = self._pending
        if pending is None or token != pending.token:
            return []  # another watcher's marker
        self._pending = None
        fresh = {entry.key: entry for entry in pending.snapshot}
        if (
            not pending.reset
            and self._seq == pending.seq
            and all(self._view.get(key) == entry for key, entry in fresh.items())
        ):
            # only expiries are missing from the view: report them, keep the stream
            gone = sorted(key for key in self._view if key not in fresh)
            for key in gone:
                del self._view[key]
            return [KVEvent(EventType.DELETE, key) for key in gone]
        self._view = fresh
        self._seq = pending.seq
        return [KVEvent(EventType.RESET, snapshot=pending.snapshot)]
