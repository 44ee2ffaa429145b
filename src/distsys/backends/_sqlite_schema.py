"""The ``sqlite://`` KV file: its tables, as a :class:`~distsys.backends._sqlite_file.Schema`.

Schema version 1 (in ``PRAGMA user_version``; ``PRAGMA application_id`` marks the file
as a distsys KV file, so a file of another application — or a distsys queue file — is
refused instead of modified; :mod:`distsys.backends._sqlite_file` makes the checks)::

    kv      (key TEXT PRIMARY KEY, value BLOB, version INTEGER, lease INTEGER NULL)
    leases  (id INTEGER PRIMARY KEY AUTOINCREMENT, ttl REAL, expires REAL)
    changes (rev INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT, type INTEGER,
             value BLOB NULL, version INTEGER NULL, lease INTEGER NULL)
    meta    (compacted INTEGER)      every rev <= compacted may have been trimmed

``rev`` never goes back (AUTOINCREMENT), so a watcher's position stays meaningful after
the log is trimmed; lease ids are never reused, by any process.
"""

from __future__ import annotations

from typing import Final

from distsys.backends._sqlite_file import KV_APPLICATION_ID, Schema

__all__ = ["APPLICATION_ID", "DELETE", "PUT", "SCHEMA", "SCHEMA_VERSION"]

SCHEMA_VERSION: Final = 1
APPLICATION_ID: Final = KV_APPLICATION_ID
PUT: Final = 1
"""``changes.type`` of a put."""
DELETE: Final = 2
"""``changes.type`` of a delete, including one by a lease's end."""

SCHEMA: Final = Schema(
    application_id=APPLICATION_ID,
    version=SCHEMA_VERSION,
    label="KV",
    ddl=(
        """CREATE TABLE kv (
            key     TEXT PRIMARY KEY,
            value   BLOB NOT NULL,
            version INTEGER NOT NULL,
            lease   INTEGER
        )""",
        "CREATE INDEX kv_lease ON kv (lease, key) WHERE lease IS NOT NULL",
        """CREATE TABLE leases (
            id      INTEGER PRIMARY KEY AUTOINCREMENT,
            ttl     REAL NOT NULL,
            expires REAL NOT NULL
        )""",
        "CREATE INDEX leases_expires ON leases (expires)",
        """CREATE TABLE changes (
            rev     INTEGER PRIMARY KEY AUTOINCREMENT,
            key     TEXT NOT NULL,
            type    INTEGER NOT NULL,
            value   BLOB,
            version INTEGER,
            lease   INTEGER
        )""",
        "CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 0), compacted INTEGER NOT NULL)",
        "INSERT INTO meta (id, compacted) VALUES (0, 0)",
    ),
)
"""The KV file (opened with :func:`distsys.backends._sqlite_file.open_file`)."""
