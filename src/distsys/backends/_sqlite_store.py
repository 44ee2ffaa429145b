"""The synchronous half of ``sqlite://``: each operation as one transaction on the file.

A :class:`~distsys.backends._sqlite.SQLiteKV` has two of these stores, each with its own
connection: the worker thread's, and the event loop's for short writes that never wait
on a lock (the rules are in :mod:`distsys.backends._sqlite_executor`, which also turns
SQLite's errors into words). Nothing here is thread-safe on its own.

Every write runs in one ``BEGIN IMMEDIATE`` transaction that first purges the leases
that have expired (their keys deleted, a DELETE appended for each) and appends one
``changes`` row per key it changes, so the table and the log never disagree (the schema
is described in :mod:`distsys.backends._sqlite_schema`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Final

from distsys.backends._kv import EventType, KVEntry, KVEvent
from distsys.backends._sqlite_file import begin_immediate, is_busy, open_file
from distsys.backends._sqlite_schema import DELETE, PUT, SCHEMA
from distsys.clock import Clock
from distsys.errors import BackendUnavailableError, LeaseExpiredError

__all__ = ["Batch", "SQLiteStore", "prefix_end"]

CLOCK_SLACK: Final = 1.0
"""Seconds a lease's last renewal may lie in the future before we call it a clock reset."""
TRIM_STEP: Final = 1000
"""Change-log rows one write trims at most beyond ``history`` (a write stays short)."""

_DUE: Final = "SELECT 1 FROM leases WHERE expires <= ? LIMIT 1"
_LIST_RANGE: Final = (
    "SELECT key, value, version, lease FROM kv WHERE key >= ? AND key < ? ORDER BY key"
)
_LIST_FROM: Final = "SELECT key, value, version, lease FROM kv WHERE key >= ? ORDER BY key"
# The newest row comes back even outside the prefix, so that a watcher's position moves
# past changes it does not care about and the next poll starts where this one ended.
_POLL: Final = """
    SELECT rev, key, type, value, version, lease FROM changes
    WHERE rev > :after
      AND ((key >= :lo AND (:hi IS NULL OR key < :hi)) OR rev = (SELECT max(rev) FROM changes))
    ORDER BY rev LIMIT :limit
"""


def prefix_end(prefix: str) -> str | None:
    """Return the least string above every string starting with ``prefix`` (None: no bound).

    SQLite compares TEXT as UTF-8 bytes, which sort like code points, so
    ``prefix <= key < prefix_end(prefix)`` is an index range equal to ``startswith``.
    """
    while prefix:
        last = ord(prefix[-1]) + 1
        if last <= 0x10FFFF:
            if 0xD800 <= last <= 0xDFFF:  # surrogates cannot be stored; skip past them
                last = 0xE000
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return None


@dataclass(frozen=True, slots=True)
class Batch:
    """What one poll of the change log found for a watcher.

    Attributes:
        rev: the watcher's new position in the log.
        events: the events to yield, in order (one RESET if the watcher fell behind).
        more: the batch was full: poll again at once.
    """

    rev: int
    events: list[KVEvent] = field(default_factory=list)
    more: bool = False


class SQLiteStore:
    """One connection to a distsys SQLite file, and the operations as transactions.

    Not thread-safe: one thread at a time makes the calls.

    Args:
        path: the absolute path of the database file.
        url: the redacted URL, for error messages.
        clock: the clock that lease expiry times are read from.
        busy_timeout: seconds to wait for another process's write lock.
        history: change-log rows kept for watchers that fall behind.
        inline: the event loop's store (see :func:`~distsys.backends._sqlite_file.open_file`);
            it leaves the repair after a reboot to the worker's, which opens the file first.
    """

    def __init__(
        self,
        path: str,
        url: str,
        clock: Clock,
        *,
        busy_timeout: float,
        history: int,
        inline: bool = False,
    ) -> None:
        self.path = path
        self.url = url
        self.busy_timeout = busy_timeout
        self._clock = clock
        self._history = history
        self._trim_step = max(1, min(history // 10, TRIM_STEP))
        self._inline = inline
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._dirty = False  # the open write transaction appended to the log
        self._compacted = 0  # a lower bound of meta.compacted

    # ---------------------------------------------------------------- connection

    @property
    def opened(self) -> bool:
        """Whether the connection is open."""
        return self._conn is not None

    def connection(self) -> sqlite3.Connection:
        """Open the file if needed; return the connection."""
        if self._conn is None:
            if self._closed:
                raise BackendUnavailableError(self.url, "this client has been closed")
            conn = open_file(
                self.path, self.url, SCHEMA, busy_timeout=self.busy_timeout, inline=self._inline
            )
            try:
                if not self._inline:
                    self._drop_leases_from_another_boot(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _drop_leases_from_another_boot(self, conn: sqlite3.Connection) -> None:
        """Expire leases renewed "in the future": the clock restarted (a reboot)."""
        later = self._clock.now() + CLOCK_SLACK
        query = "SELECT id FROM leases WHERE expires - ttl > ? ORDER BY id"
        if conn.execute(query, (later,)).fetchone() is None:
            return
        with self._write(conn):
            for (lease,) in conn.execute(query, (later,)).fetchall():
                self._drop_lease(conn, lease)

    def close(self) -> None:
        """Close the connection; later calls raise BackendUnavailableError. Idempotent."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # -------------------------------------------------------------- transactions

    @contextmanager
    def _write(self, conn: sqlite3.Connection) -> Iterator[None]:
        """Run the body in a write transaction that purges expired leases first.

        LeaseExpiredError is raised before the body writes anything, so the purge that
        revealed it is committed rather than lost.
        """
        begin_immediate(conn, self.busy_timeout)
        self._dirty = False
        compacted = self._compacted
        try:
            now = self._clock.now()
            expired = conn.execute("SELECT id FROM leases WHERE expires <= ?", (now,))
            for lease in sorted(lease for (lease,) in expired):
                self._drop_lease(conn, lease)
            try:
                yield
            except LeaseExpiredError:
                conn.execute("COMMIT")  # the purge only: the body had not written yet
                raise
            if self._dirty:
                compacted = self._trim(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        self._compacted = compacted

    def _expire_if_due(self, conn: sqlite3.Connection) -> None:
        """Purge expired leases if there are any (readers and the poller call this)."""
        if conn.execute(_DUE, (self._clock.now(),)).fetchone() is None:
            return
        try:
            with self._write(conn):
                pass
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            # Another process is writing, and every writer purges first.

    def _append(
        self,
        conn: sqlite3.Connection,
        key: str,
        kind: int,
        value: bytes | None = None,
        version: int | None = None,
        lease: int | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO changes (key, type, value, version, lease) VALUES (?, ?, ?, ?, ?)",
            (key, kind, value, version, lease),
        )
        self._dirty = True

    def _drop_lease(self, conn: sqlite3.Connection, lease: int) -> None:
        """Delete ``lease`` and its keys, logging a DELETE per key in key order."""
        conn.execute(
            "INSERT INTO changes (key, type) SELECT key, ? FROM kv WHERE lease = ? ORDER BY key",
            (DELETE, lease),
        )
        conn.execute("DELETE FROM kv WHERE lease = ?", (lease,))
        conn.execute("DELETE FROM leases WHERE id = ?", (lease,))
        self._dirty = True

    def _trim(self, conn: sqlite3.Connection) -> int:
        """Keep the newest ``history`` log rows, deleting older ones in steps; return compacted."""
        (rev,) = conn.execute("SELECT max(rev) FROM changes").fetchone()
        rev = rev or 0
        if rev - self._compacted < self._history + self._trim_step:
            return self._compacted
        (compacted,) = conn.execute("SELECT compacted FROM meta").fetchone()
        if rev - compacted < self._history + self._trim_step:
            return int(compacted)
        horizon = rev - self._history
        conn.execute("DELETE FROM changes WHERE rev <= ?", (horizon,))
        conn.execute("UPDATE meta SET compacted = ? WHERE id = 0", (horizon,))
        return horizon

    def _set(
        self,
        conn: sqlite3.Connection,
        key: str,
        value: bytes,
        lease: int | None,
        expected: int | None,
    ) -> KVEntry | None:
        row = conn.execute("SELECT version FROM kv WHERE key = ?", (key,)).fetchone()
        current = 0 if row is None else int(row[0])
        if expected is not None and current != expected:
            return None
        if (
            lease is not None
            and not conn.execute("SELECT 1 FROM leases WHERE id = ?", (lease,)).fetchone()
        ):
            raise LeaseExpiredError(lease)
        version = current + 1
        if row is None:
            conn.execute(
                "INSERT INTO kv (key, value, version, lease) VALUES (?, ?, ?, ?)",
                (key, value, version, lease),
            )
        else:
            conn.execute(
                "UPDATE kv SET value = ?, version = ?, lease = ? WHERE key = ?",
                (value, version, lease, key),
            )
        self._append(conn, key, PUT, value, version, lease)
        return KVEntry(key, value, version, lease)

    def _select(self, conn: sqlite3.Connection, prefix: str, end: str | None) -> list[KVEntry]:
        if end is None:
            rows = conn.execute(_LIST_FROM, (prefix,)).fetchall()
        else:
            rows = conn.execute(_LIST_RANGE, (prefix, end)).fetchall()
        return [KVEntry(key, value, version, lease) for key, value, version, lease in rows]

    def _snapshot(
        self, conn: sqlite3.Connection, prefix: str, end: str | None
    ) -> tuple[int, tuple[KVEntry, ...]]:
        conn.execute("BEGIN")  # one read snapshot for the position and the entries
        try:
            (rev,) = conn.execute("SELECT max(rev) FROM changes").fetchone()
            entries = tuple(self._select(conn, prefix, end))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return rev or 0, entries

    # ---------------------------------------------------------------- operations

    def ping(self) -> None:
        """Open the file if needed and read from it."""
        self.connection().execute("SELECT compacted FROM meta").fetchone()

    def get(self, key: str) -> KVEntry | None:
        """Return ``key``'s entry, or None."""
        conn = self.connection()
        self._expire_if_due(conn)
        row = conn.execute("SELECT value, version, lease FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else KVEntry(key, row[0], row[1], row[2])

    def list(self, prefix: str, end: str | None) -> list[KVEntry]:
        """Return the entries in ``[prefix, end)``, sorted by key."""
        conn = self.connection()
        self._expire_if_due(conn)
        return self._select(conn, prefix, end)

    def put(self, key: str, value: bytes, lease: int | None) -> KVEntry:
        """Create or replace ``key``."""
        conn = self.connection()
        with self._write(conn):
            entry = self._set(conn, key, value, lease, None)
        assert entry is not None
        return entry

    def compare_and_set(
        self, key: str, value: bytes, version: int, lease: int | None
    ) -> KVEntry | None:
        """Write ``key`` if its version is ``version`` (0: absent); None if not."""
        conn = self.connection()
        with self._write(conn):
            return self._set(conn, key, value, lease, version)

    def delete(self, key: str) -> bool:
        """Delete ``key``; True if it existed."""
        conn = self.connection()
        with self._write(conn):
            if conn.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount == 0:
                return False
            self._append(conn, key, DELETE)
            return True

    def grant(self, ttl: float) -> int:
        """Create a lease expiring ``ttl`` seconds from now; return its id."""
        conn = self.connection()
        with self._write(conn):
            cursor = conn.execute(
                "INSERT INTO leases (ttl, expires) VALUES (?, ?)", (ttl, self._clock.now() + ttl)
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def keep_alive(self, lease: int) -> bool:
        """Restart ``lease``'s TTL; False if it is gone."""
        conn = self.connection()
        with self._write(conn):
            cursor = conn.execute(
                "UPDATE leases SET expires = ? + ttl WHERE id = ?", (self._clock.now(), lease)
            )
            return cursor.rowcount == 1

    def revoke(self, lease: int) -> bool:
        """End ``lease`` and delete its keys; False if it was gone."""
        conn = self.connection()
        with self._write(conn):
            if not conn.execute("SELECT 1 FROM leases WHERE id = ?", (lease,)).fetchone():
                return False
            self._drop_lease(conn, lease)
            return True

    def snapshot(self, prefix: str, end: str | None) -> tuple[int, tuple[KVEntry, ...]]:
        """Return the log position and the entries in ``[prefix, end)``, read together."""
        conn = self.connection()
        self._expire_if_due(conn)
        return self._snapshot(conn, prefix, end)

    def changes(self, prefix: str, end: str | None, after: int, limit: int) -> Batch:
        """Return the changes to ``[prefix, end)`` after log position ``after``.

        A watcher whose position has been trimmed away gets a RESET snapshot instead.
        """
        conn = self.connection()
        self._expire_if_due(conn)
        params = {"after": after, "lo": prefix, "hi": end, "limit": limit}
        rows = conn.execute(_POLL, params).fetchall()
        if not rows:
            return Batch(after)
        # Read after the rows: if nothing past `after` was trimmed by now, the rows are
        # complete (the horizon only moves forward).
        (compacted,) = conn.execute("SELECT compacted FROM meta").fetchone()
        if compacted > after:
            rev, entries = self._snapshot(conn, prefix, end)
            return Batch(rev, [KVEvent(EventType.RESET, snapshot=entries)])
        events = [
            KVEvent(EventType.PUT, key, KVEntry(key, value, version, lease))
            if kind == PUT
            else KVEvent(EventType.DELETE, key)
            for _, key, kind, value, version, lease in rows
            if key.startswith(prefix)
        ]
        return Batch(rows[-1][0], events, more=len(rows) == limit)
