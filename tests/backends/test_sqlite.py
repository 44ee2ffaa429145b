"""sqlite:// passes the KV contract, stays correct across processes, and refuses bad files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distsys.backends import KV, EventType, KVEntry, open_kv
from distsys.backends._sqlite import SQLiteKV
from distsys.backends._sqlite_store import prefix_end
from distsys.errors import (
    ArgumentTypeError,
    BackendUnavailableError,
    InvalidArgumentError,
    LeaseExpiredError,
)
from distsys.testing import KVContract, ManualClock, next_event
from tests.sqlite_files import files_in, rows, url_of

WAIT = 30.0  # a safety net: a broken backend fails the test instead of hanging it


class TestSQLiteKV(KVContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path

    async def open_kv(self) -> KV:
        self.clock = ManualClock()
        return SQLiteKV(f"sqlite:///{self.directory}/kv.db", clock=self.clock, poll_interval=0.005)

    async def elapse(self, kv: KV, seconds: float) -> None:
        self.clock.advance(seconds)


@asynccontextmanager
async def opened(path: Path, **options: object) -> AsyncIterator[SQLiteKV]:
    options.setdefault("poll_interval", 0.005)
    kv = SQLiteKV(url_of(path), **options)  # type: ignore[arg-type]
    try:
        yield kv
    finally:
        await kv.aclose()


# ------------------------------------------------------------------ opening files


async def test_open_kv_creates_the_directory_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "registry.db"
    kv = open_kv(url_of(path))
    assert isinstance(kv, SQLiteKV)
    assert kv.path == str(path)
    try:
        await kv.ping()
        await kv.put("k", b"v")
    finally:
        await kv.aclose()
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]
    assert rows(path, "PRAGMA user_version") == [(1,)]
    async with opened(path) as again:  # opening an existing file changes nothing
        entry = await again.get("k")
        assert entry is not None
        assert entry.value == b"v"


async def test_a_relative_path_is_fixed_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    kv = SQLiteKV("sqlite:///.distsys/registry.db")
    monkeypatch.chdir("/")
    try:
        await kv.put("k", b"v")
    finally:
        await kv.aclose()
    assert kv.path == str(tmp_path / ".distsys" / "registry.db")
    assert (tmp_path / ".distsys" / "registry.db").exists()


async def test_a_garbage_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    garbage = b"this is not a database\n" * 500
    path.write_bytes(garbage)
    kv = SQLiteKV(url_of(path))
    try:
        for operation in (kv.ping(), kv.put("k", b"v"), kv.list("")):
            with pytest.raises(BackendUnavailableError, match="not a SQLite database") as info:
                await operation
            assert info.value.url == url_of(path)
        path.unlink()  # the file is opened on first use, so a repaired path works
        await kv.put("k", b"v")
    finally:
        await kv.aclose()
    path.write_bytes(garbage)
    with pytest.raises(BackendUnavailableError):
        async with opened(path) as again:
            await again.get("k")
    assert path.read_bytes() == garbage
    assert files_in(tmp_path) == ["garbage.db"]  # not even a -wal or -shm file


async def test_a_database_of_another_application_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
        conn.commit()
    before = path.read_bytes()
    async with opened(path) as kv:
        with pytest.raises(BackendUnavailableError, match="another application"):
            await kv.put("k", b"v")
    assert path.read_bytes() == before
    assert rows(path, "PRAGMA journal_mode") == [("delete",)]


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    async with opened(path) as kv:
        await kv.put("k", b"v")
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 2")
    async with opened(path) as kv:
        with pytest.raises(BackendUnavailableError, match="newer distsys"):
            await kv.get("k")
    assert rows(path, "SELECT key FROM kv") == [("k",)]


async def test_paths_that_cannot_be_opened(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    cases = [
        (tmp_path, "is a directory"),
        (tmp_path / "a-file" / "kv.db", "cannot create the directory"),
    ]
    for path, reason in cases:
        async with opened(path) as kv:
            with pytest.raises(BackendUnavailableError, match=reason) as info:
                await kv.ping()
            assert info.value.url == url_of(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any directory")
async def test_a_read_only_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        async with opened(locked / "kv.db") as kv:
            with pytest.raises(BackendUnavailableError, match="cannot open"):
                await kv.ping()
    finally:
        locked.chmod(0o700)


def test_options_are_checked_at_construction(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    for url, options, error, field in [
        (f"{url_of(path)}?timeout=3", {}, InvalidArgumentError, "url"),
        (f"{url_of(path)}?history=lots", {}, InvalidArgumentError, "history"),
        (f"{url_of(path)}?poll_interval=0", {}, InvalidArgumentError, "poll_interval"),
        (url_of(path), {"poll_interval": -1.0}, InvalidArgumentError, "poll_interval"),
        (url_of(path), {"busy_timeout": float("nan")}, InvalidArgumentError, "busy_timeout"),
        (url_of(path), {"history": 0}, InvalidArgumentError, "history"),
        (url_of(path), {"history": 1.5}, ArgumentTypeError, "history"),
        ("sqlite:///:memory:", {}, InvalidArgumentError, "url"),
        ("memory://", {}, InvalidArgumentError, "url"),
    ]:
        with pytest.raises(error) as info:
            SQLiteKV(url, **options)  # type: ignore[arg-type]
        assert info.value.field == field, url
    kv = SQLiteKV(f"{url_of(path)}?poll_interval=0.1&busy_timeout=0&history=5", history=7)
    assert not path.exists()  # nothing is opened before the first operation
    del kv


async def test_keys_sqlite_cannot_store_are_refused(tmp_path: Path) -> None:
    async with opened(tmp_path / "kv.db") as kv:
        with pytest.raises(InvalidArgumentError) as info:
            await kv.put("lone\udcffsurrogate", b"v")
        assert info.value.field == "key"
        with pytest.raises(InvalidArgumentError) as info:
            kv.watch("\ud800")
        assert info.value.field == "prefix"


async def test_a_corrupt_file_is_reported_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    async with opened(path) as kv:
        await kv.put("k", b"v")
    ((root,),) = rows(path, "SELECT rootpage FROM sqlite_master WHERE name = 'kv'")
    ((size,),) = rows(path, "PRAGMA page_size")
    assert isinstance(root, int)
    assert isinstance(size, int)
    data = bytearray(path.read_bytes())
    data[size * (root - 1) : size * root] = b"\xff" * size  # the kv table's root page
    path.write_bytes(bytes(data))
    async with opened(path) as kv:
        with pytest.raises(BackendUnavailableError, match="corrupt"):
            await kv.get("k")
        with pytest.raises(BackendUnavailableError, match="corrupt"):
            await kv.put("k", b"w")
    assert path.read_bytes() == bytes(data)


async def test_a_store_refuses_to_work_in_a_forked_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kv = SQLiteKV(url_of(tmp_path / "kv.db"))
    await kv.put("k", b"v")
    parent = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: parent + 1)  # as if in a forked child
    with pytest.raises(BackendUnavailableError, match=f"opened by process {parent}"):
        await kv.get("k")
    await kv.aclose()  # touches neither the parent's connection nor its thread
    monkeypatch.undo()
    assert rows(tmp_path / "kv.db", "SELECT key FROM kv") == [("k",)]
    await kv._executor.aclose()  # the parent's own close


KEY_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\0"),
    max_size=6,
)


@given(prefix=KEY_TEXT, key=KEY_TEXT)
def test_prefix_end_bounds_exactly_the_keys_with_the_prefix(prefix: str, key: str) -> None:
    end = prefix_end(prefix)
    assert key.startswith(prefix) == (prefix <= key and (end is None or key < end))


def test_prefix_end_edges() -> None:
    assert prefix_end("") is None
    assert prefix_end("svc/") == "svc0"
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff\U0010ffff") is None
    assert prefix_end("\ud7ff") == "\ue000"


async def test_prefixes_select_like_startswith_with_any_code_points(tmp_path: Path) -> None:
    keys = [
        "a",
        "a\x7f",
        "a\x80",
        "a\uffff",
        "a\U0010ffff",
        "a\U0010ffffz",
        "b",
        "\ue000",
        "\ud7ff",
    ]
    async with opened(tmp_path / "kv.db") as kv:
        for key in keys:
            await kv.put(key, key.encode())
        for prefix in ["", "a", "a\U0010ffff", "\ud7ff", "a\x7f", "\U0010ffff"]:
            listed = [e.key for e in await kv.list(prefix)]
            assert listed == sorted(k for k in keys if k.startswith(prefix)), prefix


# ------------------------------------------------------------- stores sharing a file


async def test_two_stores_on_one_file_share_data_leases_and_events(tmp_path: Path) -> None:
    clock = ManualClock()
    async with (
        opened(tmp_path / "kv.db", clock=clock) as a,
        opened(tmp_path / "kv.db", clock=clock) as b,
    ):
        events = b.watch("svc/")
        assert (await next_event(events)).type is EventType.RESET
        leases = [await a.grant(1.0), await b.grant(1.0), await a.grant(1.0)]
        assert len(set(leases)) == 3
        await a.put("svc/x", b"1", lease=leases[1])  # a lease granted through the other store
        await a.put("svc/y", b"2", lease=leases[1])
        put = await next_event(events)
        assert (put.type, put.entry) == (EventType.PUT, KVEntry("svc/x", b"1", 1, leases[1]))
        assert (await next_event(events)).key == "svc/y"
        clock.advance(1.5)  # no more traffic: b's poller purges the lease itself
        gone = [await next_event(events), await next_event(events)]
        assert [(e.type, e.key) for e in gone] == [
            (EventType.DELETE, "svc/x"),
            (EventType.DELETE, "svc/y"),
        ]
        assert await a.list("svc/") == []
        await events.aclose()  # type: ignore[attr-defined]


async def test_writing_under_an_expired_but_unpurged_lease_writes_nothing(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    async with opened(tmp_path / "kv.db", clock=clock) as kv:
        lease = await kv.grant(1.0)
        await kv.put("held", b"1", lease=lease)
        clock.advance(1.0)
        with pytest.raises(LeaseExpiredError):
            await kv.put("new", b"2", lease=lease)
        with pytest.raises(LeaseExpiredError):
            await kv.compare_and_set("new", b"2", version=0, lease=lease)
        assert await kv.list("") == []
    assert rows(tmp_path / "kv.db", "SELECT key, type FROM changes ORDER BY rev") == [
        ("held", 1),
        ("held", 2),
    ]


async def test_leases_ids_are_never_reused(tmp_path: Path) -> None:
    async with opened(tmp_path / "kv.db") as kv:
        first = await kv.grant(10)
        assert await kv.revoke(first)
    async with opened(tmp_path / "kv.db") as kv:
        assert await kv.grant(10) > first


async def test_leases_from_a_previous_boot_are_dropped(tmp_path: Path) -> None:
    async with opened(tmp_path / "kv.db", clock=ManualClock(start=10_000.0)) as kv:
        lease = await kv.grant(30)
        await kv.put("svc/old", b"stale", lease=lease)
        await kv.put("keep", b"no lease")
    # The monotonic clock restarted: that lease was "renewed" ten thousand seconds from now.
    async with opened(tmp_path / "kv.db", clock=ManualClock(start=5.0)) as kv:
        assert [e.key for e in await kv.list("")] == ["keep"]
        assert await kv.keep_alive(lease) is False


# ------------------------------------------------------------------------ watching


async def test_a_watcher_behind_the_trimmed_log_gets_a_reset_not_a_gap(tmp_path: Path) -> None:
    async with opened(tmp_path / "kv.db", history=5) as kv:
        events = kv.watch("k/")
        assert (await next_event(events)).type is EventType.RESET
        for i in range(30):  # the watcher does not read meanwhile
            await kv.put(f"k/{i:02}", str(i).encode())
        reset = await next_event(events)
        assert reset.type is EventType.RESET
        assert [e.key for e in reset.snapshot] == [f"k/{i:02}" for i in range(30)]
        await kv.delete("k/00")
        after = await next_event(events)
        assert (after.type, after.key) == (EventType.DELETE, "k/00")
        await events.aclose()  # type: ignore[attr-defined]
    assert len(rows(tmp_path / "kv.db", "SELECT rev FROM changes")) <= 6


async def test_a_watcher_that_keeps_up_sees_no_reset_while_the_log_is_trimmed(
    tmp_path: Path,
) -> None:
    async with opened(tmp_path / "kv.db", history=3) as kv:
        events = kv.watch("")
        assert (await next_event(events)).type is EventType.RESET
        for i in range(40):
            await kv.put("k", str(i).encode())
            event = await next_event(events)
            assert event.type is EventType.PUT
            assert event.entry is not None
            assert event.entry.value == str(i).encode()
        await events.aclose()  # type: ignore[attr-defined]


async def test_a_burst_larger_than_one_poll_arrives_whole_and_in_order(tmp_path: Path) -> None:
    async with opened(tmp_path / "kv.db") as kv:
        events = kv.watch("burst/")
        assert (await next_event(events)).type is EventType.RESET
        for i in range(1200):
            await kv.put(f"burst/{i % 7}", str(i).encode())
            await kv.put(f"other/{i}", b"not watched")
        seen = [await next_event(events) for _ in range(1200)]
        assert [e.entry.value for e in seen if e.entry] == [str(i).encode() for i in range(1200)]
        await events.aclose()  # type: ignore[attr-defined]


async def test_aclose_ends_watches_waiting_for_events(tmp_path: Path) -> None:
    kv = SQLiteKV(url_of(tmp_path / "kv.db"), poll_interval=60.0)
    events = kv.watch("")
    assert (await next_event(events)).type is EventType.RESET
    waiting = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)
    await kv.aclose()
    with pytest.raises(StopAsyncIteration):
        async with asyncio.timeout(WAIT):
            await waiting
    with pytest.raises(BackendUnavailableError):
        kv.watch("")


# ------------------------------------------------------------------ locks and blocking


async def test_a_writer_waits_for_another_process_lock_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "kv.db"
    async with opened(path) as kv:
        await kv.put("k", b"before")
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            writing = asyncio.ensure_future(kv.put("k", b"after"))
            got = await kv.get("k")  # WAL: readers go on
            assert got is not None
            assert got.value == b"before"
            for _ in range(20):
                await asyncio.sleep(0.001)  # the loop keeps running while the put waits
            assert not writing.done()
            other.execute("COMMIT")
        async with asyncio.timeout(WAIT):
            written = await writing
        assert written.value == b"after"


async def test_a_lock_held_past_busy_timeout_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    async with opened(path, busy_timeout=0.05) as kv:
        await kv.ping()
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(BackendUnavailableError, match=r"busy_timeout=0\.05s"):
                await kv.put("k", b"v")
            other.execute("ROLLBACK")
        await kv.put("k", b"v")


# ---------------------------------------------------------------------- processes

CAS_INCREMENTS = """
import asyncio, sys
from distsys.backends._sqlite import SQLiteKV
from distsys.backends._sqlite_store import prefix_end

async def main(url, count):
    async with SQLiteKV(url) as kv:
        done = 0
        while done < count:
            entry = await kv.get("counter")
            version, value = (entry.version, int(entry.value)) if entry else (0, 0)
            if await kv.compare_and_set("counter", str(value + 1).encode(), version=version):
                done += 1

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""

LEASE_HOLDER = """
import asyncio, sys
from distsys.backends._sqlite import SQLiteKV
from distsys.backends._sqlite_store import prefix_end

async def main(url):
    async with SQLiteKV(url) as kv:
        lease = await kv.grant(0.5)
        await kv.put("svc/holder", b"up", lease=lease)
        beats = 0
        while True:
            await asyncio.sleep(0.05)
            assert await kv.keep_alive(lease)
            beats += 1
            print(beats, flush=True)

asyncio.run(main(sys.argv[1]))
"""

WATCHER = """
import asyncio, json, sys
from distsys.backends._sqlite import SQLiteKV
from distsys.backends._sqlite_store import prefix_end

async def main(url, count):
    async with SQLiteKV(url, poll_interval=0.005) as kv:
        events = kv.watch("feed/")
        async for event in events:
            if event.type.value == "reset":
                print("ready", flush=True)
                continue
            print(json.dumps([event.type.value, event.key, event.entry.value.decode()]), flush=True)
            count -= 1
            if count == 0:
                return

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""

WRITER = """
import asyncio, sys
from distsys.backends._sqlite import SQLiteKV
from distsys.backends._sqlite_store import prefix_end

async def main(url, tag):
    async with SQLiteKV(url, history=10**9) as kv:
        i = 0
        while True:
            lease = await kv.grant(600)
            for j in range(10):
                await kv.put(f"{tag}/{i}/{j}", b"x" * j, lease=lease)
            await kv.put(f"{tag}/plain/{i % 5}", str(i).encode())
            if i % 2:
                await kv.revoke(lease)  # one transaction deleting ten keys
            await kv.delete(f"{tag}/{i}/0")
            print(i, flush=True)
            i += 1

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@asynccontextmanager
async def child(script: str, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, *args, stdout=asyncio.subprocess.PIPE
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        async with asyncio.timeout(WAIT):
            await process.wait()


async def line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    async with asyncio.timeout(WAIT):
        text = await process.stdout.readline()
    assert text, "the child process ended early"
    return text.decode().strip()


def test_compare_and_set_is_atomic_across_processes(tmp_path: Path) -> None:
    url = url_of(tmp_path / "fresh" / "kv.db")  # the processes also race to create it
    workers = [
        subprocess.Popen([sys.executable, "-c", CAS_INCREMENTS, url, "60"]) for _ in range(4)
    ]
    try:
        assert [w.wait(timeout=WAIT * 4) for w in workers] == [0, 0, 0, 0]
    finally:
        for w in workers:
            w.kill()
            w.wait()
    assert rows(tmp_path / "fresh" / "kv.db", "SELECT value, version FROM kv") == [(b"240", 240)]


async def test_a_killed_lease_holder_expires_and_watchers_hear_it(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    async with opened(path) as kv:  # the real monotonic clock, shared by the processes
        events = kv.watch("svc/")
        assert (await next_event(events)).type is EventType.RESET
        async with child(LEASE_HOLDER, url_of(path)) as holder:
            put = await next_event(events, timeout=WAIT)
            assert (put.type, put.key) == (EventType.PUT, "svc/holder")
            while int(await line(holder)) < 20:  # a second of beats: well past the TTL
                pass
            assert await kv.get("svc/holder") is not None  # keep_alive kept it
            os.kill(holder.pid, signal.SIGKILL)
        gone = await next_event(events, timeout=WAIT)
        assert (gone.type, gone.key) == (EventType.DELETE, "svc/holder")
        assert await kv.get("svc/holder") is None
        await events.aclose()  # type: ignore[attr-defined]


async def test_a_watcher_in_another_process_sees_puts_in_order(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    async with opened(path) as kv, child(WATCHER, url_of(path), "100") as watcher:
        await kv.ping()
        assert await line(watcher) == "ready"
        for i in range(100):
            await kv.put(f"feed/{i % 3}", str(i).encode())
            await kv.put("elsewhere", b"not watched")
        seen = [json.loads(await line(watcher)) for _ in range(100)]
        assert seen == [["put", f"feed/{i % 3}", str(i)] for i in range(100)]
        async with asyncio.timeout(WAIT):
            assert await watcher.wait() == 0


async def test_a_writer_killed_mid_batch_leaves_the_file_consistent(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    for round_ in range(3):
        async with child(WRITER, url_of(path), f"r{round_}") as writer:
            while int(await line(writer)) < 5:
                pass
            os.kill(writer.pid, signal.SIGKILL)
    assert rows(path, "PRAGMA integrity_check") == [("ok",)]
    # Replaying the change log gives the table exactly: no write without its log row.
    replayed: dict[str, tuple[object, ...]] = {}
    for key, kind, value, version, lease in rows(
        path, "SELECT key, type, value, version, lease FROM changes ORDER BY rev"
    ):
        if kind == 1:
            replayed[str(key)] = (value, version, lease)
        else:
            del replayed[str(key)]
    table = {str(k): (v, ver, le) for k, v, ver, le in rows(path, "SELECT * FROM kv")}
    assert table == replayed
    assert len(table) > 0
    leases = {lease for (lease,) in rows(path, "SELECT id FROM leases")}
    assert {le for _, _, le in table.values() if le is not None} <= leases
    async with opened(path) as kv:  # and the file is still usable
        await kv.put("after/crash", b"ok")
