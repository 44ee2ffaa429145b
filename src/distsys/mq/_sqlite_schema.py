"""Opening a ``sqlite://`` queue file: the schema, and the checks made before writing to it.

Schema version 1 (in ``PRAGMA user_version``; ``PRAGMA application_id`` marks the file
as a distsys queue, so a file of another application — or a distsys KV file — is refused
instead of modified)::

    meta            (clock)                   the highest clock reading written (reboots)
    topics          (id, name, number_floor, group_count)
    consumer_groups (id, topic, name, cursor) cursor: the next position to hand out
    messages        (position PK, payload, headers, key, published_at, acks, number)
    delayed         (topic, number, due, payload, headers, key, published_at)
    pending         (grp, due, position, token, attempt, error)  PK (grp, due, position)

A message's *position* is ``topic id << 40 | number``: one rowid range per topic, so a
topic is read in order without a second index, and a group's cursor is one integer.
``number`` is the id the publisher got (per topic, never reused); it is stored only when
it differs from the position's low bits (a delayed message gets its position when due).
The next number is the larger of ``number_floor`` and one past the topic's last kept
message, so a publish writes no counter: the floor is raised only by an ack that deletes
the topic's last message and by a delayed publish (whose number takes no position).
``acks`` counts the groups that acked a message: it is deleted once that reaches the
topic's ``group_count``. A ``pending`` row is a group's claim on one message: in flight
(``token`` set, ``due`` its ack deadline), handed back by a nack (``token`` NULL, ``due``
when it may go out again), or overdue (``due`` passed: deliverable to any consumer).
Keying it by ``due`` makes "what is due" a range scan and an ack one primary-key lookup.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import suppress
from typing import Final

from distsys.backends._sqlite_schema import APPLICATION_ID as KV_APPLICATION_ID
from distsys.errors import BackendUnavailableError

__all__ = [
    "APPLICATION_ID",
    "NUMBER_BITS",
    "SCHEMA_VERSION",
    "open_queue_database",
]

SCHEMA_VERSION: Final = 1
APPLICATION_ID: Final = 0x64736D71  # b"dsmq"
NUMBER_BITS: Final = 40
"""Bits of a position that number the messages of one topic (the rest name the topic)."""
MIN_SQLITE: Final = (3, 35, 0)
"""UPDATE/DELETE ... RETURNING."""

_SCHEMA: Final = (
    "CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 0), clock REAL NOT NULL)",
    "INSERT INTO meta (id, clock) VALUES (0, 0.0)",
    """CREATE TABLE topics (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        number_floor INTEGER NOT NULL DEFAULT 1,
        group_count INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE consumer_groups (
        id     INTEGER PRIMARY KEY,
        topic  INTEGER NOT NULL,
        name   TEXT NOT NULL,
        cursor INTEGER NOT NULL,
        UNIQUE (topic, name)
    )""",
    """CREATE TABLE messages (
        position     INTEGER PRIMARY KEY,
        payload      BLOB NOT NULL,
        headers      BLOB,
        key          TEXT,
        published_at REAL NOT NULL,
        acks         INTEGER NOT NULL DEFAULT 0,
        number       INTEGER
    )""",
    """CREATE TABLE delayed (
        topic        INTEGER NOT NULL,
        number       INTEGER NOT NULL,
        due          REAL NOT NULL,
        payload      BLOB NOT NULL,
        headers      BLOB,
        key          TEXT,
        published_at REAL NOT NULL
    )""",
    "CREATE INDEX delayed_due ON delayed (topic, due, number)",
    """CREATE TABLE pending (
        grp      INTEGER NOT NULL,
        due      REAL NOT NULL,
        position INTEGER NOT NULL,
        token    INTEGER,
        attempt  INTEGER NOT NULL,
        error    TEXT,
        PRIMARY KEY (grp, due, position)
    ) WITHOUT ROWID""",
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
# One statement, so one snapshot: another process may be creating the schema meanwhile.
_IDENTITY: Final = """
    SELECT (SELECT application_id FROM pragma_application_id),
           (SELECT user_version FROM pragma_user_version),
           EXISTS (SELECT 1 FROM sqlite_master)
"""


def open_queue_database(path: str, url: str, *, busy_timeout: float) -> sqlite3.Connection:
    """Open (creating if needed) the distsys queue database at ``path`` in WAL mode.

    The connection is in autocommit mode (callers issue ``BEGIN``) and belongs to the
    calling thread.

    Raises:
        BackendUnavailableError: the path cannot be opened or created, SQLite is too old,
            or the file is not an empty file or a distsys queue of this schema version
            (it is then left untouched).
        sqlite3.DatabaseError: SQLite failed otherwise (the caller words it with
            :func:`distsys.backends._sqlite_schema.reason`).
    """
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise BackendUnavailableError(
            url,
            f"SQLite {sqlite3.sqlite_version} is too old; the queue needs "
            f"{'.'.join(map(str, MIN_SQLITE))} or newer (RETURNING)",
        )
    if os.path.isdir(path):
        raise BackendUnavailableError(url, f"{path} is a directory, not a file")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError as exc:
        raise BackendUnavailableError(url, f"cannot create the directory of {path}: {exc}") from exc
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        _prepare(conn, url)
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(conn: sqlite3.Connection, url: str) -> None:
    """Check the file is ours (reading only), create the schema if empty, set pragmas."""
    app, version, tables = _identity(conn)
    _refuse(url, app, version, tables)
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if str(mode).lower() != "wal":
        raise BackendUnavailableError(url, f"cannot use WAL mode (SQLite chose {mode!r})")
    conn.execute("PRAGMA synchronous = NORMAL")
    if app == APPLICATION_ID:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        app, version, tables = _identity(conn)  # another process may have created it
        _refuse(url, app, version, tables)
        if app == 0:
            for statement in _SCHEMA:
                conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _identity(conn: sqlite3.Connection) -> tuple[int, int, bool]:
    app, version, tables = conn.execute(_IDENTITY).fetchone()
    return int(app), int(version), bool(tables)


def _refuse(url: str, app: int, version: int, tables: bool) -> None:
    """Raise unless the file is a distsys queue of this schema, or empty."""
    if app == APPLICATION_ID:
        if version == SCHEMA_VERSION:
            return
        why = (
            f"it was written by a newer distsys (queue schema version {version}; this one "
            f"reads {SCHEMA_VERSION}); upgrade distsys"
            if version > SCHEMA_VERSION
            else f"its queue schema version {version} is unknown (this distsys reads "
            f"{SCHEMA_VERSION}); left untouched"
        )
    elif app == KV_APPLICATION_ID:
        why = "it is a distsys KV/registry database, not a queue; left untouched"
    elif app != 0:
        why = f"it is not a distsys database (application_id {app:#x}); left untouched"
    elif version != 0 or tables:
        why = "it is a SQLite database of another application; left untouched"
    else:
        return  # empty: ours to create
    raise BackendUnavailableError(url, why)
