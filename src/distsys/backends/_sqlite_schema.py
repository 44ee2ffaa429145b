"""Opening a ``sqlite://`` file: the schema, the checks before it, and SQLite's errors in words.

Schema version 1 (in ``PRAGMA user_version``; ``PRAGMA application_id`` marks the file
as distsys's, so a file of another application is refused instead of modified)::

    kv      (key TEXT PRIMARY KEY, value BLOB, version INTEGER, lease INTEGER NULL)
    leases  (id INTEGER PRIMARY KEY AUTOINCREMENT, ttl REAL, expires REAL)
    changes (rev INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT, type INTEGER,
             value BLOB NULL, version INTEGER NULL, lease INTEGER NULL)
    meta    (compacted INTEGER)      every rev <= compacted may have been trimmed

``rev`` never goes back (AUTOINCREMENT), so a watcher's position stays meaningful after
the log is trimmed; lease ids are never reused, by any process. A file is written to only
after it has been read and found empty or a distsys database of this schema version.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import suppress
from typing import Final

from distsys.errors import BackendUnavailableError

__all__ = [
    "APPLICATION_ID",
    "DELETE",
    "PUT",
    "SCHEMA_VERSION",
    "is_busy",
    "open_database",
    "reason",
]

SCHEMA_VERSION: Final = 1
APPLICATION_ID: Final = 0x64737973  # b"dsys"
PUT: Final = 1
"""``changes.type`` of a put."""
DELETE: Final = 2
"""``changes.type`` of a delete, including one by a lease's end."""

_SCHEMA: Final = (
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
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
# One statement, so one snapshot: another process may be creating the schema meanwhile.
_IDENTITY: Final = """
    SELECT (SELECT application_id FROM pragma_application_id),
           (SELECT user_version FROM pragma_user_version),
           EXISTS (SELECT 1 FROM sqlite_master)
"""


def reason(exc: sqlite3.Error, busy_timeout: float) -> str:
    """Say what went wrong, in words a user can act on."""
    code = getattr(exc, "sqlite_errorname", "") or ""
    if code == "SQLITE_NOTADB":
        return f"the file is not a SQLite database ({exc}); it was left untouched"
    if code.startswith("SQLITE_CORRUPT"):
        return f"the database file is corrupt ({exc}); restore it or remove it"
    if is_busy(exc):
        return (
            f"another connection held the database locked for longer than "
            f"busy_timeout={busy_timeout}s ({exc})"
        )
    if code.startswith("SQLITE_CANTOPEN"):
        return f"cannot open the file or create it in its directory ({exc})"
    if code.startswith("SQLITE_READONLY"):
        return f"the file or its directory is read-only ({exc})"
    if code == "SQLITE_FULL":
        return f"the disk is full ({exc})"
    return f"SQLite error: {exc}"


def is_busy(exc: sqlite3.Error) -> bool:
    """Tell whether ``exc`` means that another connection holds a lock."""
    code = getattr(exc, "sqlite_errorname", "") or ""
    return code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def open_database(path: str, url: str, *, busy_timeout: float) -> sqlite3.Connection:
    """Open (creating if needed) the distsys database at ``path`` in WAL mode.

    The connection is in autocommit mode (callers issue ``BEGIN``) and belongs to the
    calling thread.

    Raises:
        BackendUnavailableError: the path cannot be opened or created, or the file is not
            an empty file or a distsys database of this schema version (it is then left
            untouched).
        sqlite3.DatabaseError: SQLite failed otherwise (the caller words it with
            :func:`reason`).
    """
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
    """Raise unless the file is a distsys database of this schema, or empty."""
    if app == APPLICATION_ID:
        if version == SCHEMA_VERSION:
            return
        why = (
            f"it was written by a newer distsys (schema version {version}; this one reads "
            f"{SCHEMA_VERSION}); upgrade distsys"
            if version > SCHEMA_VERSION
            else f"its schema version {version} is unknown (this distsys reads "
            f"{SCHEMA_VERSION}); left untouched"
        )
    elif app != 0:
        why = f"it is not a distsys database (application_id {app:#x}); left untouched"
    elif version != 0 or tables:
        why = "it is a SQLite database of another application; left untouched"
    else:
        return  # empty: ours to create
    raise BackendUnavailableError(url, why)
