"""The ``sqlite://`` queue file: its tables, as a :class:`~distsys.backends._sqlite_file.Schema`.

Schema version 1 (in ``PRAGMA user_version``; ``PRAGMA application_id`` marks the file
as a distsys queue, so a file of another application — or a distsys KV file — is refused
instead of modified; :mod:`distsys.backends._sqlite_file` makes the checks)::

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

from typing import Final

from distsys.backends._sqlite_file import QUEUE_APPLICATION_ID, Schema

__all__ = ["APPLICATION_ID", "NUMBER_BITS", "SCHEMA", "SCHEMA_VERSION"]

SCHEMA_VERSION: Final = 1
APPLICATION_ID: Final = QUEUE_APPLICATION_ID
NUMBER_BITS: Final = 40
"""Bits of a position that number the messages of one topic (the rest name the topic)."""

SCHEMA: Final = Schema(
    application_id=APPLICATION_ID,
    version=SCHEMA_VERSION,
    label="queue",
    min_sqlite=(3, 35, 0),
    needs="RETURNING",
    ddl=(
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
    ),
)
"""The queue file (opened with :func:`distsys.backends._sqlite_file.open_file`)."""
