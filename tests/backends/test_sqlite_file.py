"""Opening distsys SQLite files: the checks, the refusals in words, locks, URL options."""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from distsys.backends._sqlite_file import (
    KINDS,
    KV_APPLICATION_ID,
    QUEUE_APPLICATION_ID,
    Schema,
    begin_immediate,
    file_url,
    is_busy,
    open_file,
    patiently,
    reason,
    storable,
)
from distsys.backends._sqlite_schema import SCHEMA as KV_SCHEMA
from distsys.backends._url import int_option, seconds_option
from distsys.errors import ArgumentTypeError, BackendUnavailableError, InvalidArgumentError
from distsys.mq._sqlite_schema import SCHEMA as QUEUE_SCHEMA

URL = "sqlite:///test.db"


def pragma(path: Path, name: str) -> object:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


def refusal(path: Path, schema: Schema) -> str:
    with pytest.raises(BackendUnavailableError) as info:
        open_file(str(path), URL, schema, busy_timeout=0)
    assert info.value.url == URL
    return str(info.value)


# ------------------------------------------------------------------ opening


@pytest.mark.parametrize("schema", [KV_SCHEMA, QUEUE_SCHEMA], ids=["kv", "queue"])
def test_an_empty_path_gets_the_schema_marked_as_its_kind(tmp_path: Path, schema: Schema) -> None:
    path = tmp_path / "deep" / "file.db"
    with closing(open_file(str(path), URL, schema, busy_timeout=1)) as conn:
        assert conn.isolation_level is None  # autocommit: callers issue BEGIN
        assert conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)
    assert pragma(path, "journal_mode") == "wal"
    assert pragma(path, "application_id") == schema.application_id
    assert pragma(path, "user_version") == schema.version
    with closing(open_file(str(path), URL, schema, busy_timeout=1)):  # again: as it is
        pass


def test_the_two_kinds_refuse_each_other_by_name(tmp_path: Path) -> None:
    kv, queue = tmp_path / "kv.db", tmp_path / "mq.db"
    open_file(str(kv), URL, KV_SCHEMA, busy_timeout=1).close()
    open_file(str(queue), URL, QUEUE_SCHEMA, busy_timeout=1).close()
    assert "this is a distsys queue file, not a KV/registry database" in refusal(queue, KV_SCHEMA)
    assert "this is a distsys KV/registry database, not a queue file" in refusal(kv, QUEUE_SCHEMA)
    assert set(KINDS) == {KV_APPLICATION_ID, QUEUE_APPLICATION_ID}


def test_foreign_and_newer_files_are_refused_and_left_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    with closing(sqlite3.connect(foreign)) as conn:
        conn.execute("PRAGMA application_id = 42")
    assert "not a distsys database (application_id 0x2a)" in refusal(foreign, KV_SCHEMA)
    tables = tmp_path / "tables.db"
    with closing(sqlite3.connect(tables)) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    assert "SQLite database of another application" in refusal(tables, QUEUE_SCHEMA)
    assert pragma(tables, "journal_mode") == "delete"
    for version, words in [
        (2, "written by a newer distsys (KV schema version 2; this one reads 1)"),
        (0, "its KV schema version 0 is unknown"),
    ]:
        path = tmp_path / f"v{version}.db"
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE kv (key TEXT)")
            conn.execute(f"PRAGMA application_id = {KV_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {version}")
        assert words in refusal(path, KV_SCHEMA)


def test_a_sqlite_too_old_for_the_schema_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    message = refusal(tmp_path / "mq.db", QUEUE_SCHEMA)
    assert "SQLite 3.31.1 is too old; the queue needs 3.35.0 or newer (RETURNING)" in message
    assert not (tmp_path / "mq.db").exists()


def test_an_inline_connection_never_checkpoints_and_may_change_threads(tmp_path: Path) -> None:
    path = str(tmp_path / "kv.db")
    open_file(path, URL, KV_SCHEMA, busy_timeout=1).close()
    conn = open_file(path, URL, KV_SCHEMA, busy_timeout=0, inline=True)
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    used: list[object] = []
    thread = threading.Thread(target=lambda: used.append(conn.execute("SELECT 1").fetchone()))
    thread.start()
    thread.join()
    assert used == [(1,)]
    conn.close()


# -------------------------------------------------------------------- locks


def test_a_connection_does_not_wait_inside_sqlite(tmp_path: Path) -> None:
    path = str(tmp_path / "kv.db")
    open_file(path, URL, KV_SCHEMA, busy_timeout=1).close()
    with (
        closing(sqlite3.connect(path, isolation_level=None)) as other,
        closing(open_file(path, URL, KV_SCHEMA, busy_timeout=5)) as conn,
    ):
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError) as info:
            conn.execute("BEGIN IMMEDIATE")
        assert is_busy(info.value)
        assert time.monotonic() - started < 1.0  # answered at once, not after 5 s
        other.execute("ROLLBACK")


def test_begin_immediate_waits_for_the_lock_until_busy_timeout(tmp_path: Path) -> None:
    path = str(tmp_path / "kv.db")
    open_file(path, URL, KV_SCHEMA, busy_timeout=1).close()
    with (
        closing(sqlite3.connect(path, isolation_level=None, check_same_thread=False)) as other,
        closing(open_file(path, URL, KV_SCHEMA, busy_timeout=0)) as conn,
    ):
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as info:
            begin_immediate(conn, 0.05)
        assert is_busy(info.value)
        release = threading.Timer(0.05, lambda: other.execute("ROLLBACK"))
        release.start()
        begin_immediate(conn, 30)  # waits until the other connection lets go
        release.join()
        conn.execute("ROLLBACK")


def test_patiently_retries_only_failures_on_a_lock() -> None:
    attempts: list[int] = []

    def busy_twice() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "done"

    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorname = "SQLITE_BUSY"  # type: ignore[attr-defined]

    def locked() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise busy
        return "done"

    assert patiently(locked, 10) == "done"
    assert len(attempts) == 3
    attempts.clear()
    with pytest.raises(sqlite3.OperationalError):  # not a lock (no error name): at once
        patiently(busy_twice, 10)
    assert len(attempts) == 1
    attempts.clear()
    with pytest.raises(sqlite3.OperationalError):  # no time to wait: one attempt
        patiently(locked, 0)
    assert len(attempts) == 1
    attempts.clear()
    with pytest.raises(sqlite3.OperationalError):  # the budget was spent before
        patiently(locked, 10, since=time.monotonic() - 11)
    assert len(attempts) == 1


def test_reasons_name_what_to_do() -> None:
    def error(name: str) -> sqlite3.Error:
        exc = sqlite3.OperationalError("boom")
        exc.sqlite_errorname = name  # type: ignore[attr-defined]
        return exc

    assert "not a SQLite database" in reason(error("SQLITE_NOTADB"), 1)
    assert "corrupt" in reason(error("SQLITE_CORRUPT_INDEX"), 1)
    assert "busy_timeout=2.5s" in reason(error("SQLITE_BUSY_SNAPSHOT"), 2.5)
    assert "cannot open" in reason(error("SQLITE_CANTOPEN"), 1)
    assert "read-only" in reason(error("SQLITE_READONLY_DIRECTORY"), 1)
    assert "disk is full" in reason(error("SQLITE_FULL"), 1)
    assert reason(error("SQLITE_IOERR"), 1) == "SQLite error: boom"


# ------------------------------------------------------------------ options


def test_file_url_merges_options_and_fixes_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    defaults = {"poll_interval": 0.01, "busy_timeout": 5.0}
    parsed, path, options = file_url(
        "sqlite:///data/q.db?poll_interval=0.5&busy_timeout=2",
        defaults,
        {"busy_timeout": 3.0, "poll_interval": None},
        noun="queue",
    )
    assert path == str(tmp_path / "data" / "q.db")
    assert options == {"poll_interval": "0.5", "busy_timeout": 3.0}
    assert parsed.scheme == "sqlite"
    for url, detail in [
        ("sqlite:///q.db?timeout=1", "unknown option 'timeout'"),
        ("sqlite:///:memory:", "use memory:// for a queue in memory"),
        ("redis://localhost", "poll_interval, busy_timeout"),
    ]:
        with pytest.raises(InvalidArgumentError, match=detail) as info:
            file_url(url, defaults, {}, noun="queue")
        assert info.value.field == "url"


def test_option_values_are_checked_naming_the_field() -> None:
    assert seconds_option("wait", "0.25", zero=False) == 0.25
    assert seconds_option("wait", 0, zero=True) == 0.0
    assert int_option("history", "7") == 7
    for call, error in [
        (lambda: seconds_option("wait", 0, zero=False), InvalidArgumentError),
        (lambda: seconds_option("wait", "soon", zero=True), InvalidArgumentError),
        (lambda: seconds_option("wait", float("inf"), zero=True), InvalidArgumentError),
        (lambda: seconds_option("wait", True, zero=True), ArgumentTypeError),
        (lambda: int_option("history", 0), InvalidArgumentError),
        (lambda: int_option("history", "many"), InvalidArgumentError),
        (lambda: int_option("history", 2.0), ArgumentTypeError),
        (lambda: storable("lone\udcff", "key", "text"), InvalidArgumentError),
    ]:
        with pytest.raises(error) as info:
            call()
        assert info.value.field in ("wait", "history", "key")
    assert storable("fine ✓", "key", "text") == "fine ✓"
