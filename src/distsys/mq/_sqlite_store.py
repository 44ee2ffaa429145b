"""The synchronous half of the ``sqlite://`` broker: each operation as one transaction.

A :class:`~distsys.mq._sqlite.SQLiteBroker` has two of these stores, each with its own
connection: the worker thread's, and the event loop's for short work that never waits
on a lock (the rules are in :mod:`distsys.backends._sqlite_executor`, which also turns
SQLite's errors into words). Nothing here is thread-safe on its own. The tables are
described in :mod:`distsys.mq._sqlite_schema`.

Writes (publishes, acks, nacks) come in batches from the broker's group commit: one
``BEGIN IMMEDIATE`` transaction applies every operation queued meanwhile, so concurrent
callers share one commit; a batch of one publish of one message is a single ``INSERT``
in autocommit mode (:data:`~distsys.mq._sqlite_sql.INSERT_ONE`), its own transaction.
Values are bound as Python's sqlite3 binds fastest (see
:data:`~distsys.mq._sqlite_sql.INSERT_NEW`). A fetch claims up to
``limit`` messages in one transaction, with set-based statements (one ``UPDATE ...
RETURNING`` for redeliveries, one range ``SELECT`` and one ``INSERT ... SELECT`` for new
messages), so the per-message cost is a few B-tree steps inside SQLite.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Final

from distsys.backends._sqlite_file import begin_immediate, open_file
from distsys.clock import Clock
from distsys.errors import BackendUnavailableError
from distsys.mq import _sqlite_sql as sql
from distsys.mq._message import HEADER_ERROR, Depth, RawDelivery
from distsys.mq._sqlite_records import (
    AckOp,
    Claim,
    PublishOp,
    WriteOp,
    decode_headers,
    decode_positions,
    encode_positions,
)
from distsys.mq._sqlite_schema import NUMBER_BITS, SCHEMA

__all__ = ["NUMBER_LIMIT", "QueueStore"]

NUMBER_LIMIT: Final = 1 << NUMBER_BITS
TOPIC_LIMIT: Final = 1 << (63 - NUMBER_BITS)
CLOCK_SLACK: Final = 1.0
"""Seconds the stored clock mark may lie ahead of the clock before we call it a reboot."""
CLOCK_MARK_STEP: Final = 1.0
"""The clock mark is rewritten once it is this many seconds behind (not on every write)."""


def _earliest(*times: float | None) -> float | None:
    return min((t for t in times if t is not None), default=None)


class QueueStore:
    """One connection to a distsys queue file, and the operations as transactions.

    Not thread-safe: one thread at a time makes the calls.

    Args:
        path: the absolute path of the database file.
        url: the redacted URL, for error messages.
        clock: the clock that deadlines and delays are read from.
        busy_timeout: seconds to wait for another process's write lock.
        inline: the event loop's store (see :func:`~distsys.backends._sqlite_file.open_file`);
            it leaves the repair after a reboot to the worker's, which opens the file first.
    """

    def __init__(
        self, path: str, url: str, clock: Clock, *, busy_timeout: float, inline: bool = False
    ) -> None:
        self.path = path
        self.url = url
        self.busy_timeout = busy_timeout
        self._clock = clock
        self._inline = inline
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._topics: dict[str, int] = {}  # committed ids only: topics are never deleted
        self._data_version: int | None = None

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
                    self._rebase_after_reboot(conn)
                    # Read before any claim, so that every later commit by another process
                    # shows up as a change to the poller. (The inline store opens later:
                    # its first answer is "changed", so that nothing is missed meanwhile.)
                    (self._data_version,) = conn.execute("PRAGMA data_version").fetchone()
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _rebase_after_reboot(self, conn: sqlite3.Connection) -> None:
        """Move stored times onto a clock that restarted (a reboot) since they were written.

        In-flight deliveries become due at once (their consumers died with the old boot);
        nack delays and delayed messages keep what remained of their delay.
        """
        now = self._clock.now()
        ((mark,),) = conn.execute("SELECT clock FROM meta").fetchall()
        if mark <= now + CLOCK_SLACK:
            return
        with self._write(conn):
            ((mark,),) = conn.execute("SELECT clock FROM meta").fetchall()
            if mark <= now + CLOCK_SLACK:
                return  # another process did it meanwhile
            shift = now - mark
            conn.execute("UPDATE pending SET due = ? WHERE token IS NOT NULL", (now,))
            conn.execute("UPDATE pending SET due = due + ? WHERE token IS NULL", (shift,))
            conn.execute("UPDATE delayed SET due = due + ?", (shift,))
            conn.execute("UPDATE meta SET clock = ? WHERE id = 0", (now,))

    def close(self) -> None:
        """Close the connection; later calls raise BackendUnavailableError. Idempotent."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    @contextmanager
    def _write(self, conn: sqlite3.Connection) -> Iterator[None]:
        begin_immediate(conn, self.busy_timeout)
        known = len(self._topics)
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if len(self._topics) != known:
                self._topics.clear()  # a topic created by the rolled-back transaction
            raise

    def _mark(self, conn: sqlite3.Connection, now: float) -> None:
        """Keep the clock mark close to ``now`` (rewritten at most once a second)."""
        conn.execute(sql.MARK, (now, now - CLOCK_MARK_STEP))

    def _topic(self, conn: sqlite3.Connection, name: str, *, create: bool) -> int | None:
        topic = self._topics.get(name)
        if topic is not None:
            return topic
        row = conn.execute("SELECT id FROM topics WHERE name = ?", (name,)).fetchone()
        if row is None:
            if not create:
                return None
            row = conn.execute(
                "INSERT INTO topics (name) VALUES (?) RETURNING id", (name,)
            ).fetchone()
            if row[0] >= TOPIC_LIMIT:
                raise BackendUnavailableError(
                    self.url, f"the file holds the most topics it can ({TOPIC_LIMIT - 1})"
                )
        self._topics[name] = topic = int(row[0])
        return topic

    def _numbers(
        self, conn: sqlite3.Connection, topic: int, name: str, count: int, *, reserve: bool
    ) -> int:
        """Return the first of ``count`` free numbers of ``topic``.

        Numbers that will take positions now need no record; with ``reserve`` (numbers of
        delayed messages, which take no position yet) the floor is raised past them.
        """
        base = topic << NUMBER_BITS
        params = {"base": base, "end": base + NUMBER_LIMIT, "topic": topic}
        ((first,),) = conn.execute(sql.NEXT_NUMBER, params).fetchall()
        if first + count > NUMBER_LIMIT:
            raise BackendUnavailableError(
                self.url, f"topic {name!r} has used all its {NUMBER_LIMIT - 1} message numbers"
            )
        if reserve:
            conn.execute("UPDATE topics SET number_floor = ? WHERE id = ?", (first + count, topic))
        return int(first)

    # ---------------------------------------------------------------- operations

    def ping(self) -> None:
        """Open the file if needed and read from it."""
        self.connection().execute("SELECT clock FROM meta").fetchone()

    def changed(self) -> bool:
        """Tell whether another connection committed since the last call (or the opening)."""
        (version,) = self.connection().execute("PRAGMA data_version").fetchone()
        if version == self._data_version:
            return False
        self._data_version = int(version)
        return True

    def open_group(self, topic_name: str, group: str) -> tuple[int, int]:
        """Create ``group`` on the topic if it is new, starting at the oldest message kept.

        Returns:
            The topic's id and the group's id.
        """
        conn = self.connection()
        topic = self._topics.get(topic_name)
        if topic is not None:
            row = conn.execute(sql.GROUP, (topic, group)).fetchone()
            if row is not None:
                return topic, int(row[0])
        with self._write(conn):
            topic = self._topic(conn, topic_name, create=True)
            assert topic is not None
            row = conn.execute(sql.GROUP, (topic, group)).fetchone()
            if row is not None:
                return topic, int(row[0])
            base = topic << NUMBER_BITS
            ((oldest,),) = conn.execute(sql.OLDEST, (base, base + NUMBER_LIMIT)).fetchall()
            cursor = oldest
            if cursor is None:
                cursor = base + self._numbers(conn, topic, topic_name, 0, reserve=False)
            ((grp,),) = conn.execute(sql.NEW_GROUP, (topic, group, cursor)).fetchall()
            conn.execute(sql.COUNT_GROUP, (topic,))
        return topic, int(grp)

    def depth(self, topic_name: str, group: str, now: float) -> Depth:
        """Count what waits, is in flight and is delayed for ``group``, in one snapshot."""
        conn = self.connection()
        conn.execute("BEGIN")
        try:
            topic = self._topic(conn, topic_name, create=False)
            if topic is None:
                return Depth(0, 0, 0)
            base = topic << NUMBER_BITS
            row = conn.execute(sql.GROUP_CURSOR, (topic, group)).fetchone()
            grp, cursor = (None, base) if row is None else row
            params = {"cursor": cursor, "end": base + NUMBER_LIMIT, "now": now}
            ((fresh, due, flying, resting, ready, later),) = conn.execute(
                sql.DEPTH, {**params, "grp": grp, "topic": topic}
            ).fetchall()
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")  # a read: nothing to write
        return Depth(
            waiting=int(fresh + due + ready), in_flight=int(flying), delayed=int(resting + later)
        )

    def claim(
        self,
        grp: int,
        topic: int,
        topic_name: str,
        limit: int,
        ack_wait: float,
        now: float,
        probe: bool,
    ) -> Claim:
        """Lease up to ``limit`` messages to one consumer of ``grp``, in one transaction.

        Overdue and handed-back messages come first (oldest due first), then new ones in
        order. With ``probe``, a read without the write lock first checks that there is
        anything to claim (a busy consumer skips it).
        """
        conn = self.connection()
        base = topic << NUMBER_BITS
        end = base + NUMBER_LIMIT
        if probe:
            ((cursor,),) = conn.execute(
                "SELECT cursor FROM consumer_groups WHERE id = ?", (grp,)
            ).fetchall()
            params = {"grp": grp, "now": now, "cursor": cursor, "end": end, "topic": topic}
            ((ready, pending_due, delayed_due),) = conn.execute(sql.PROBE, params).fetchall()
            if not ready:
                return Claim([], _earliest(pending_due, delayed_due))
        token = int.from_bytes(os.urandom(8), "little") >> 1
        deadline = now + ack_wait
        with self._write(conn):
            self._mark(conn, now)
            if conn.execute(
                "SELECT 1 FROM delayed WHERE topic = ? AND due <= ? LIMIT 1", (topic, now)
            ).fetchone():
                self._promote(conn, topic, topic_name, now)
            again = conn.execute(
                sql.REDELIVER,
                {"deadline": deadline, "token": token, "grp": grp, "now": now, "limit": limit},
            ).fetchall()
            rows = []
            if len(again) < limit:
                ((cursor,),) = conn.execute(
                    "SELECT cursor FROM consumer_groups WHERE id = ?", (grp,)
                ).fetchall()
                rows = conn.execute(sql.FRESH, (cursor, end, limit - len(again))).fetchall()
                if rows:
                    last = rows[-1][0]
                    conn.execute(sql.LEASE_FRESH, (grp, deadline, token, cursor, last))
                    conn.execute(
                        "UPDATE consumer_groups SET cursor = ? WHERE id = ?", (last + 1, grp)
                    )
            if again:
                rows[:0] = self._redeliveries(conn, grp, sorted(again))
            if not rows:
                params = {"grp": grp, "topic": topic}
                ((pending_due, delayed_due),) = conn.execute(sql.NEXT_DUE, params).fetchall()
                return Claim([], _earliest(pending_due, delayed_due))
        return Claim(self._deliveries(rows, topic_name, deadline, token))

    @staticmethod
    def _redeliveries(conn: sqlite3.Connection, grp: int, again: list[Any]) -> list[Any]:
        """Return the message rows of redelivered positions, with attempt and error."""
        listed = encode_positions([position for position, _, _ in again])
        found = {row[0]: row for row in conn.execute(sql.BY_POSITION, (listed,))}
        rows = []
        for position, attempt, error in again:
            row = found.get(position)
            if row is None:  # cannot happen while group_count is right; never loop on it
                conn.execute("DELETE FROM pending WHERE grp = ? AND position = ?", (grp, position))
                continue
            rows.append((*row, attempt, error))
        return rows

    @staticmethod
    def _deliveries(
        rows: list[Any], topic_name: str, deadline: float, token: int
    ) -> list[RawDelivery]:
        mask = NUMBER_LIMIT - 1
        deliveries = []
        for position, number, payload, headers, key, published_at, attempt, error in rows:
            decoded = decode_headers(headers) if headers is not None else {}
            if error is not None:
                decoded[HEADER_ERROR] = error
            deliveries.append(
                RawDelivery(
                    str(position & mask if number is None else number),
                    topic_name,
                    payload,
                    decoded,
                    key,
                    attempt,
                    published_at,
                    (position, deadline, token),
                )
            )
        return deliveries

    def _promote(self, conn: sqlite3.Connection, topic: int, topic_name: str, now: float) -> None:
        """Move the delayed messages of ``topic`` that are due to its end, in due order."""
        due = sorted(conn.execute(sql.PROMOTE, (topic, now)).fetchall())
        if not due:
            return
        first = self._numbers(conn, topic, topic_name, len(due), reserve=False)
        base = (topic << NUMBER_BITS) + first
        conn.executemany(
            sql.INSERT,
            [
                (base + i, payload, headers, key, published_at, number)
                for i, (_, number, payload, headers, key, published_at) in enumerate(due)
            ],
        )

    def apply(self, ops: Sequence[WriteOp]) -> list[object]:
        """Apply a group commit's operations in one transaction; return their results."""
        if len(ops) == 1:
            op = ops[0]
            if type(op) is PublishOp and len(op.rows) == 1 and not op.rows[0][3]:
                topic = self._topics.get(op.topic)
                if topic is not None:
                    return [self._publish_one(topic, op)]
        conn = self.connection()
        results: list[object] = []
        with self._write(conn):
            for op in ops:
                if isinstance(op, AckOp):
                    results.append(self._ack(conn, op))
                elif isinstance(op, PublishOp):
                    results.append(self._publish(conn, op))
                else:
                    self._mark(conn, op.now)
                    cursor = conn.execute(
                        sql.NACK, (op.due, op.error, op.grp, op.lease[0], op.position, op.lease[1])
                    )
                    results.append(cursor.rowcount == 1)
        return results

    def _publish_one(self, topic: int, op: PublishOp) -> list[str]:
        """Store one message due now on a known topic: one statement, its own transaction.

        The common write, made lean: the statement numbers the message itself and takes
        the write lock before it reads (a lock held elsewhere fails it at once, or makes
        the worker wait, as ``BEGIN IMMEDIATE`` would), and it commits on its own.
        """
        payload, headers, key, _ = op.rows[0]
        base = topic << NUMBER_BITS
        cursor = self.connection().execute(
            sql.INSERT_ONE,
            (
                base,
                base + NUMBER_LIMIT,
                bytearray(payload),
                bytearray(headers or b""),
                key or "",
                op.published_at,
                topic,
                NUMBER_LIMIT,
            ),
        )
        position = cursor.lastrowid
        if cursor.rowcount != 1 or position is None:
            raise BackendUnavailableError(
                self.url, f"topic {op.topic!r} has used all its {NUMBER_LIMIT - 1} message numbers"
            )
        return [str(position - base)]

    def _publish(self, conn: sqlite3.Connection, op: PublishOp) -> list[str]:
        topic = self._topic(conn, op.topic, create=True)
        assert topic is not None
        delays = any(row[3] for row in op.rows)
        first = self._numbers(conn, topic, op.topic, len(op.rows), reserve=delays)
        base = topic << NUMBER_BITS
        when = op.published_at
        # Bound as sql.INSERT_NEW explains: no None, no bytes.
        if not delays:
            start = base + first
            rows = [
                (start + i, bytearray(blob), bytearray(more or b""), name or "", when)
                for i, (blob, more, name, _) in enumerate(op.rows)
            ]
            conn.executemany(sql.INSERT_NEW, rows)
        else:
            self._mark(conn, op.now)
            now_rows, later_rows = [], []
            for i, (payload, headers, key, delay) in enumerate(op.rows):
                blob, more, name = bytearray(payload), bytearray(headers or b""), key or ""
                if delay > 0:
                    due = op.now + delay
                    later_rows.append((topic, first + i, due, blob, more, name, when))
                else:
                    now_rows.append((base + first + i, blob, more, name, when))
            conn.executemany(sql.INSERT_NEW, now_rows)
            conn.executemany(sql.INSERT_DELAYED, later_rows)
        return [str(first + i) for i in range(len(op.rows))]

    def _ack(self, conn: sqlite3.Connection, op: AckOp) -> set[tuple[int, int]]:
        stale: set[tuple[int, int]] = set()
        positions: list[int] = []
        for (due, token), wanted in op.leases.items():
            listed = encode_positions(wanted)
            # Acks are rarely stale (the caller drops those whose deadline has passed), so
            # delete first; only if some lease was missing, undo that and look at which.
            conn.execute("SAVEPOINT ack")
            deleted = conn.execute(sql.ACK, (op.grp, due, token, listed)).rowcount
            if deleted == len(wanted):
                conn.execute("RELEASE ack")
                found: list[int] = wanted
            else:
                conn.execute("ROLLBACK TO ack")
                conn.execute("RELEASE ack")
                ((leased,),) = conn.execute(sql.LEASED, (op.grp, due, token, listed)).fetchall()
                found = decode_positions(leased)
                stale.update((token, position) for position in set(wanted).difference(found))
                if not found:
                    continue
                conn.execute(sql.ACK, (op.grp, due, token, leased))
            positions.extend(found)
        if positions:
            ((groups,),) = conn.execute(
                "SELECT group_count FROM topics WHERE id = ?", (op.topic,)
            ).fetchall()
            listed = encode_positions(positions)
            if groups <= 1:  # the common case: the only group is done with them
                conn.execute(sql.DELETE_ACKED, (listed, 0))
            else:
                conn.execute(sql.COUNT_ACKS, (listed,))
                conn.execute(sql.DELETE_ACKED, (listed, groups))
            # If that deleted the topic's last message, keep its number from being reused.
            base = op.topic << NUMBER_BITS
            floor = max(positions) - base + 1
            params = {"floor": floor, "topic": op.topic, "base": base, "end": base + NUMBER_LIMIT}
            conn.execute(sql.RAISE_FLOOR, params)
        return stale
