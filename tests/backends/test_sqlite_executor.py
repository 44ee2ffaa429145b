"""The executor: short work inline on the loop unless it would wait; the rest on the worker."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

import pytest

from distsys.backends import _sqlite_executor
from distsys.backends._sqlite_executor import BUSY, INLINE_WEIGHT, Executor
from distsys.backends._sqlite_store import SQLiteStore
from distsys.errors import BackendUnavailableError
from distsys.testing import ManualClock

URL = "sqlite:///kv.db"
WAIT = 30.0


@asynccontextmanager
async def executor(path: Path, busy_timeout: float = 5.0) -> AsyncIterator[Executor[SQLiteStore]]:
    clock = ManualClock()
    worker = SQLiteStore(str(path), URL, clock, busy_timeout=busy_timeout, history=100)
    inline = SQLiteStore(str(path), URL, clock, busy_timeout=0, history=100, inline=True)
    run = Executor(
        URL,
        owner="store",
        thread_name="test-sqlite",
        busy_timeout=busy_timeout,
        worker_store=worker,
        inline_store=inline,
    )
    try:
        yield run
    finally:
        await run.aclose()


async def test_short_work_runs_inline_once_the_worker_has_opened_the_file(tmp_path: Path) -> None:
    async with executor(tmp_path / "kv.db") as run:
        assert run.try_inline(SQLiteStore.put, ("k", b"v", None), 1) is BUSY  # not opened yet
        await run.short(SQLiteStore.put, "k", b"0", None, weight=1)  # so: on the worker
        assert run.statistics().worker == 1
        entry = run.try_inline(SQLiteStore.put, ("k", b"1", None), 1)
        assert entry is not BUSY
        await run.short(SQLiteStore.put, "k", b"2", None, weight=1)
        stats = run.statistics()
        assert (stats.inline, stats.worker, stats.busy) == (2, 1, 0)
        got = await run.run(SQLiteStore.get, "k")  # the worker's connection sees it
        assert got is not None
        assert (got.value, got.version) == (b"2", 3)


async def test_a_locked_file_sends_the_work_to_the_worker_and_the_loop_runs_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "kv.db"
    async with executor(path) as run:
        await run.run(SQLiteStore.ping)
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another process writes
            writing = asyncio.ensure_future(run.short(SQLiteStore.put, "k", b"v", None, weight=1))
            for _ in range(20):
                await asyncio.sleep(0.001)  # the loop is not blocked while the worker waits
            assert not writing.done()
            other.execute("COMMIT")
        async with asyncio.timeout(WAIT):
            entry = await writing
        assert entry.value == b"v"
        stats = run.statistics()
        assert (stats.busy, stats.inline) == (1, 0)  # tried inline once, then the worker


async def test_the_worker_gives_up_after_busy_timeout_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    async with executor(path, busy_timeout=0.05) as run:
        await run.run(SQLiteStore.ping)
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(BackendUnavailableError, match=r"busy_timeout=0\.05s") as info:
                await run.short(SQLiteStore.put, "k", b"v", None, weight=1)
            assert info.value.url == URL
            other.execute("ROLLBACK")
        assert await run.run(SQLiteStore.get, "k") is None  # nothing was written


async def test_heavy_work_and_other_threads_go_to_the_worker(tmp_path: Path) -> None:
    async with executor(tmp_path / "kv.db") as run:
        await run.run(SQLiteStore.ping)
        assert run.try_inline(SQLiteStore.put, ("k", b"v", None), INLINE_WEIGHT + 1) is BUSY
        assert run.try_inline(SQLiteStore.put, ("k", b"v", None), 1) is not BUSY  # this thread
        answers: list[object] = []
        thread = threading.Thread(
            target=lambda: answers.append(run.try_inline(SQLiteStore.put, ("k", b"w", None), 1))
        )
        thread.start()
        thread.join()
        assert answers == [BUSY]  # the inline connection belongs to the loop's thread


async def test_checkpoints_run_on_the_worker_while_inline_work_waits_for_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite_executor, "CHECKPOINT_PAGES", 20)
    path = tmp_path / "kv.db"
    async with executor(path) as run:
        await run.run(SQLiteStore.ping)
        for i in range(10):  # 2 estimated pages each
            assert run.try_inline(SQLiteStore.put, (f"k{i}", b"v", None), 1) is not BUSY
        assert run._checkpointing  # queued on the worker
        assert run.try_inline(SQLiteStore.put, ("late", b"v", None), 1) is BUSY
        async with asyncio.timeout(WAIT):
            while run.statistics().checkpoints == 0:  # noqa: ASYNC110 - a worker's callback
                await asyncio.sleep(0.001)
        assert run.try_inline(SQLiteStore.put, ("after", b"v", None), 1) is not BUSY
        with closing(sqlite3.connect(path)) as conn:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0


async def test_errors_other_than_locks_are_reported_in_words(tmp_path: Path) -> None:
    def corrupt(store: SQLiteStore) -> None:
        exc = sqlite3.DatabaseError("database disk image is malformed")
        exc.sqlite_errorname = "SQLITE_CORRUPT"  # type: ignore[attr-defined]
        raise exc

    async with executor(tmp_path / "kv.db") as run:
        await run.run(SQLiteStore.ping)
        with pytest.raises(BackendUnavailableError, match="database file is corrupt"):
            await run.short(corrupt, weight=1)
        with pytest.raises(BackendUnavailableError, match="database file is corrupt"):
            await run.run(corrupt)


async def test_a_forked_copy_refuses_work_and_leaves_the_parent_s_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with executor(tmp_path / "kv.db") as run:
        await run.short(SQLiteStore.put, "k", b"v", None, weight=1)
        parent = os.getpid()
        monkeypatch.setattr(os, "getpid", lambda: parent + 1)
        with pytest.raises(BackendUnavailableError, match=f"opened by process {parent}"):
            await run.short(SQLiteStore.get, "k")
        with pytest.raises(BackendUnavailableError, match=f"opened by process {parent}"):
            await run.run(SQLiteStore.get, "k")
        await run.aclose()  # the child's close: nothing
        monkeypatch.undo()
        assert await run.run(SQLiteStore.get, "k") is not None


async def test_aclose_is_idempotent_and_ends_all_work(tmp_path: Path) -> None:
    async with executor(tmp_path / "kv.db") as run:
        await run.short(SQLiteStore.put, "k", b"v", None, weight=1)
        await run.aclose()
        await run.aclose()
        with pytest.raises(BackendUnavailableError, match="closed"):
            await run.short(SQLiteStore.put, "k", b"w", None, weight=1)
        with pytest.raises(BackendUnavailableError, match="closed"):
            await run.run(SQLiteStore.ping)
