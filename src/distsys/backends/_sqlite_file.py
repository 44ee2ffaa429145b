"""Opening a distsys SQLite file: the checks before writing to it, its pragmas, errors in words.

Every ``sqlite://`` backend (the KV store, the queue) keeps its data in a file of its own
*kind*, marked by ``PRAGMA application_id`` and versioned by ``PRAGMA user_version``. A
file is written to only after it has been read and found empty (the schema is then
created) or of the expected kind and version; anything else — another application's
database, garbage, the other distsys kind, a newer distsys — is refused with a reason a
user can act on, and left untouched. The backends describe their file with a
:class:`Schema` and open it with :func:`open_file`; the URL and option helpers below parse
their constructors' arguments alike.

Every connection runs in WAL mode with ``synchronous=NORMAL`` (a commit survives any
process crash; a power loss may undo the transactions since the last checkpoint), in
autocommit mode (callers issue ``BEGIN``). Waiting for another connection's lock is done
here, not by SQLite: its busy handler sleeps 1, 2, 5, 10... ms between attempts, while a
write transaction in WAL mode holds the lock for well under a millisecond, so
:func:`patiently` tries again after 50 µs, doubling the pause up to 1 ms, until
``busy_timeout`` seconds have passed. Connections are opened with SQLite's busy timeout
at 0, so a lock held elsewhere is reported at once to whoever may not wait — the event
loop's *inline* connection (see :mod:`distsys.backends._sqlite_executor`), which also
never checkpoints.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, TypeVar

from distsys.backends._url import BackendURL, parse_url
from distsys.errors import BackendUnavailableError, InvalidArgumentError

__all__ = [
    "KINDS",
    "KV_APPLICATION_ID",
    "QUEUE_APPLICATION_ID",
    "Schema",
    "begin_immediate",
    "file_url",
    "is_busy",
    "open_file",
    "patiently",
    "reason",
    "storable",
]

FIRST_PAUSE: Final = 0.00005
"""Seconds before the second attempt to take a lock (the pause then doubles)."""
LAST_PAUSE: Final = 0.001
"""The longest pause between two attempts to take a lock."""

KV_APPLICATION_ID: Final = 0x64737973  # b"dsys"
QUEUE_APPLICATION_ID: Final = 0x64736D71  # b"dsmq"
KINDS: Final = MappingProxyType(
    {KV_APPLICATION_ID: "KV/registry database", QUEUE_APPLICATION_ID: "queue file"}
)
"""What each distsys ``application_id`` marks, as refusals name it."""

# One statement, so one snapshot: another process may be creating the schema meanwhile.
T = TypeVar("T")

_IDENTITY: Final = """
    SELECT (SELECT application_id FROM pragma_application_id),
           (SELECT user_version FROM pragma_user_version),
           EXISTS (SELECT 1 FROM sqlite_master)
"""


@dataclass(frozen=True, slots=True)
class Schema:
    """One kind of distsys SQLite file.

    Attributes:
        application_id: the kind's mark (a key of :data:`KINDS`).
        version: the schema version this distsys reads and writes.
        label: the kind in a version message ("KV", "queue").
        ddl: the statements that create the tables in an empty file.
        min_sqlite: the oldest SQLite library the statements run on.
        needs: what needs ``min_sqlite``, for the refusal ("RETURNING").
    """

    application_id: int
    version: int
    label: str
    ddl: tuple[str, ...]
    min_sqlite: tuple[int, int, int] = (3, 7, 0)
    needs: str = ""

    @property
    def noun(self) -> str:
        """What a file of this kind is called."""
        return KINDS[self.application_id]


def open_file(
    path: str, url: str, schema: Schema, *, busy_timeout: float, inline: bool = False
) -> sqlite3.Connection:
    """Open (creating if needed) the distsys file of ``schema``'s kind at ``path``.

    Args:
        path: the absolute path of the file.
        url: the redacted URL, for error messages.
        schema: the kind of file expected.
        busy_timeout: seconds to wait for another connection's lock to create the schema
            (the caller retries a whole opening that meets a lock with :func:`patiently`).
        inline: open the event loop's connection: it may be used and closed by other
            threads than the one opening it (the caller keeps it to one at a time), and
            it never checkpoints the WAL (``wal_autocheckpoint=0``).

    Raises:
        BackendUnavailableError: the path cannot be opened or created, SQLite is too old,
            or the file is not an empty file or a file of this kind and schema version (it
            is then left untouched).
        sqlite3.DatabaseError: SQLite failed otherwise (word it with :func:`reason`).
    """
    if sqlite3.sqlite_version_info < schema.min_sqlite:
        raise BackendUnavailableError(
            url,
            f"SQLite {sqlite3.sqlite_version} is too old; the {schema.label} needs "
            f"{'.'.join(map(str, schema.min_sqlite))} or newer ({schema.needs})",
        )
    if os.path.isdir(path):
        raise BackendUnavailableError(url, f"{path} is a directory, not a file")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError as exc:
        raise BackendUnavailableError(url, f"cannot create the directory of {path}: {exc}") from exc
    conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=not inline)
    try:
        _prepare(conn, url, schema, busy_timeout)
        if inline:
            conn.execute("PRAGMA wal_autocheckpoint = 0")
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(conn: sqlite3.Connection, url: str, schema: Schema, busy_timeout: float) -> None:
    """Check the file is ours (reading only), create the schema if empty, set pragmas."""
    app, version, tables = _identity(conn)
    _refuse(url, schema, app, version, tables)
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if str(mode).lower() != "wal":
        raise BackendUnavailableError(url, f"cannot use WAL mode (SQLite chose {mode!r})")
    conn.execute("PRAGMA synchronous = NORMAL")
    if app == schema.application_id:
        return
    begin_immediate(conn, busy_timeout)
    try:
        app, version, tables = _identity(conn)  # another process may have created it
        _refuse(url, schema, app, version, tables)
        if app == 0:
            for statement in schema.ddl:
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {schema.application_id}")
            conn.execute(f"PRAGMA user_version = {schema.version}")
        conn.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _identity(conn: sqlite3.Connection) -> tuple[int, int, bool]:
    app, version, tables = conn.execute(_IDENTITY).fetchone()
    return int(app), int(version), bool(tables)


def _refuse(url: str, schema: Schema, app: int, version: int, tables: bool) -> None:
    """Raise unless the file is of ``schema``'s kind and version, or empty."""
    if app == schema.application_id:
        if version == schema.version:
            return
        why = (
            f"it was written by a newer distsys ({schema.label} schema version {version}; "
            f"this one reads {schema.version}); upgrade distsys"
            if version > schema.version
            else f"its {schema.label} schema version {version} is unknown (this distsys "
            f"reads {schema.version}); left untouched"
        )
    elif app in KINDS:
        why = f"this is a distsys {KINDS[app]}, not a {schema.noun}; left untouched"
    elif app != 0:
        why = f"it is not a distsys database (application_id {app:#x}); left untouched"
    elif version != 0 or tables:
        why = "it is a SQLite database of another application; left untouched"
    else:
        return  # empty: ours to create
    raise BackendUnavailableError(url, why)


# ----------------------------------------------------------------------- locks


def patiently(attempt: Callable[[], T], busy_timeout: float, *, since: float | None = None) -> T:
    """Call ``attempt`` until it does not fail on a lock, for up to ``busy_timeout`` seconds.

    Args:
        attempt: what to do; it must have done nothing when it fails on a lock (a
            transaction that fails is rolled back).
        busy_timeout: how long to keep trying (0: once).
        since: when the wait began (``time.monotonic()``; default: at the first failure),
            so that nested waits share one budget.

    Raises:
        sqlite3.OperationalError: the last failure, once the time is up; any other error
            at once.
    """
    pause = FIRST_PAUSE
    while True:
        try:
            return attempt()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            now = time.monotonic()
            if since is None:
                since = now
            left = since + busy_timeout - now
            if left <= 0:
                raise
        time.sleep(min(pause, left))
        pause = min(pause * 2, LAST_PAUSE)


def begin_immediate(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Begin a write transaction, waiting up to ``busy_timeout`` seconds for the lock."""
    patiently(lambda: conn.execute("BEGIN IMMEDIATE"), busy_timeout)


# ---------------------------------------------------------------------- errors


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


# --------------------------------------------------------------------- options


def file_url(
    url: str | BackendURL,
    defaults: Mapping[str, object],
    given: Mapping[str, object | None],
    *,
    noun: str,
) -> tuple[BackendURL, str, dict[str, object]]:
    """Parse a ``sqlite:///path`` URL and merge its options.

    Args:
        url: the URL, as given to the backend.
        defaults: every option the backend knows, with its default.
        given: the options passed as keyword arguments (None: not given); they win over
            the URL's query.
        noun: what the backend holds ("store", "queue"), for the in-memory refusal.

    Returns:
        The parsed URL, the file's absolute path (relative paths are fixed now), and
        every option's raw value (to be checked by the caller).

    Raises:
        InvalidArgumentError: not a ``sqlite://`` file URL, or an unknown option.
    """
    parsed = parse_url(url) if isinstance(url, str) else url
    accepted = f"a sqlite:///path.db URL, with optional query options {', '.join(defaults)}"
    if parsed.scheme != "sqlite":
        raise InvalidArgumentError("url", parsed.redacted(), accepted)
    unknown = sorted(set(parsed.query) - defaults.keys())
    if unknown:
        raise InvalidArgumentError(
            "url", parsed.redacted(), accepted, detail=f"unknown option {unknown[0]!r}"
        )
    if parsed.path == ":memory:" or parsed.path.startswith("file:"):
        raise InvalidArgumentError(
            "url", parsed.redacted(), accepted, detail=f"use memory:// for a {noun} in memory"
        )
    options: dict[str, object] = {**defaults, **parsed.query}
    options.update({name: value for name, value in given.items() if value is not None})
    return parsed, os.path.abspath(parsed.path), options


def storable(text: str, field: str, accepted: str) -> str:
    """Refuse what SQLite cannot store as TEXT (a str with lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(field, text, accepted) from None
    return text
