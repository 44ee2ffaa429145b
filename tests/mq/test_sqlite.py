"""sqlite:// passes the broker contract, survives killed processes, and refuses bad files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import pytest

from distsys.backends import open_kv
from distsys.errors import ArgumentTypeError, BackendUnavailableError, InvalidArgumentError
from distsys.mq import HEADER_ATTEMPTS, HEADER_DEAD_REASON, Broker, Depth, Outgoing, open_broker
from distsys.mq._sqlite import SQLiteBroker
from distsys.mq._sqlite_schema import APPLICATION_ID, NUMBER_BITS
from distsys.testing import BrokerContract, ManualClock
from tests.sqlite_files import files_in, rows, url_of

WAIT = 30.0  # a safety net: a broken backend fails the test instead of hanging it


class TestSQLiteBroker(BrokerContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path

    async def open_broker(self) -> Broker:
        self.clock = ManualClock()
        return SQLiteBroker(f"sqlite:///{self.directory}/mq.db", clock=self.clock)

    async def elapse(self, broker: Broker, seconds: float) -> None:
        self.clock.advance(seconds)


@asynccontextmanager
async def opened(path: Path, **options: object) -> AsyncIterator[SQLiteBroker]:
    options.setdefault("poll_interval", 0.005)
    broker = SQLiteBroker(url_of(path), **options)  # type: ignore[arg-type]
    try:
        yield broker
    finally:
        await broker.aclose()


async def take(broker: Broker, topic: str, group: str, count: int, **options: object) -> list[str]:
    """Receive and ack ``count`` messages; return their payloads, decoded.

    It leases no more than it takes (``prefetch=count``), so it leaves the rest deliverable.
    """
    got = []
    options.setdefault("prefetch", count)
    async with broker.subscribe(topic, group, **options) as sub:  # type: ignore[arg-type]
        for _ in range(count):
            async with asyncio.timeout(WAIT):
                delivery = await sub.receive()
            assert delivery is not None
            assert await delivery.ack()
            got.append(delivery.payload.decode())
    return got


# ------------------------------------------------------------------ opening files


async def test_open_broker_creates_the_directory_and_a_queue_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "mq.db"
    broker = open_broker(url_of(path))
    assert isinstance(broker, SQLiteBroker)
    assert broker.path == str(path)
    try:
        await broker.ping()
        await broker.publish("t", b"kept")
    finally:
        await broker.aclose()
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]
    assert rows(path, "PRAGMA user_version") == [(1,)]
    assert rows(path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    async with opened(path) as again:  # opening an existing file changes nothing
        assert await take(again, "t", "g", 1) == ["kept"]


async def test_a_relative_path_is_fixed_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    broker = SQLiteBroker("sqlite:///.distsys/mq.db")
    monkeypatch.chdir("/")
    try:
        await broker.publish("t", b"x")
    finally:
        await broker.aclose()
    assert broker.path == str(tmp_path / ".distsys" / "mq.db")
    assert (tmp_path / ".distsys" / "mq.db").exists()


async def test_a_garbage_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    garbage = b"this is not a database\n" * 500
    path.write_bytes(garbage)
    async with opened(path) as broker:
        for operation in (broker.ping(), broker.publish("t", b"x"), broker.depth("t", "g")):
            with pytest.raises(BackendUnavailableError, match="not a SQLite database") as info:
                await operation
            assert info.value.url == url_of(path)
    assert path.read_bytes() == garbage
    assert files_in(tmp_path) == ["garbage.db"]  # not even a -wal or -shm file


async def test_a_database_of_another_application_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
        conn.commit()
    before = path.read_bytes()
    async with opened(path) as broker:
        with pytest.raises(BackendUnavailableError, match="another application"):
            await broker.publish("t", b"x")
    assert path.read_bytes() == before
    assert rows(path, "PRAGMA journal_mode") == [("delete",)]


async def test_a_distsys_kv_file_is_not_taken_for_a_queue(tmp_path: Path) -> None:
    registry, queue = tmp_path / "registry.db", tmp_path / "mq.db"
    kv = open_kv(url_of(registry))
    try:
        await kv.put("k", b"v")
    finally:
        await kv.aclose()
    async with opened(registry) as broker:
        with pytest.raises(BackendUnavailableError, match="KV/registry database, not a queue"):
            await broker.publish("t", b"x")
    assert rows(registry, "SELECT key FROM kv") == [("k",)]
    async with opened(queue) as broker:
        await broker.publish("t", b"x")
    kv = open_kv(url_of(queue))
    try:  # nor the other way round
        with pytest.raises(BackendUnavailableError, match="distsys queue file, not a KV/registry"):
            await kv.get("k")
    finally:
        await kv.aclose()


async def test_a_newer_or_unknown_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mq.db"
    async with opened(path) as broker:
        await broker.publish("t", b"x")
    for version, reason in [(2, "newer distsys"), (0, "schema version 0 is unknown")]:
        with closing(sqlite3.connect(path)) as conn:
            conn.execute(f"PRAGMA user_version = {version}")
        async with opened(path) as broker:
            with pytest.raises(BackendUnavailableError, match=reason):
                await broker.depth("t", "g")
    assert len(rows(path, "SELECT position FROM messages")) == 1


async def test_paths_that_cannot_be_opened(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    cases = [
        (tmp_path, "is a directory"),
        (tmp_path / "a-file" / "mq.db", "cannot create the directory"),
    ]
    for path, reason in cases:
        async with opened(path) as broker:
            with pytest.raises(BackendUnavailableError, match=reason) as info:
                await broker.ping()
            assert info.value.url == url_of(path)


async def test_a_corrupt_file_is_reported_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "mq.db"
    async with opened(path) as broker:
        await broker.publish_batch("t", [b"x" * 100] * 100)
    ((root,),) = rows(path, "SELECT rootpage FROM sqlite_master WHERE name = 'messages'")
    ((size,),) = rows(path, "PRAGMA page_size")
    assert isinstance(root, int)
    assert isinstance(size, int)
    data = bytearray(path.read_bytes())
    data[size * (root - 1) : size * root] = b"\xff" * size  # the messages table's root page
    path.write_bytes(bytes(data))
    async with opened(path) as broker:
        with pytest.raises(BackendUnavailableError, match="corrupt"):
            await broker.depth("t", "g")
        with pytest.raises(BackendUnavailableError, match="corrupt"):
            await broker.publish("t", b"y")
    assert path.read_bytes() == bytes(data)


def test_options_are_checked_at_construction(tmp_path: Path) -> None:
    path = tmp_path / "mq.db"
    for url, options, error, field in [
        (f"{url_of(path)}?timeout=3", {}, InvalidArgumentError, "url"),
        (f"{url_of(path)}?poll_interval=0", {}, InvalidArgumentError, "poll_interval"),
        (f"{url_of(path)}?busy_timeout=soon", {}, InvalidArgumentError, "busy_timeout"),
        (url_of(path), {"poll_interval": -1.0}, InvalidArgumentError, "poll_interval"),
        (url_of(path), {"busy_timeout": float("nan")}, InvalidArgumentError, "busy_timeout"),
        (url_of(path), {"poll_interval": "often"}, InvalidArgumentError, "poll_interval"),
        (url_of(path), {"busy_timeout": True}, ArgumentTypeError, "busy_timeout"),
        ("sqlite:///:memory:", {}, InvalidArgumentError, "url"),
        ("memory://", {}, InvalidArgumentError, "url"),
    ]:
        with pytest.raises(error) as info:
            SQLiteBroker(url, **options)  # type: ignore[arg-type]
        assert info.value.field == field, url
    broker = SQLiteBroker(f"{url_of(path)}?poll_interval=0.1&busy_timeout=0", poll_interval=0.2)
    assert not path.exists()  # nothing is opened before the first operation
    del broker


async def test_keys_and_headers_sqlite_cannot_store_are_refused(tmp_path: Path) -> None:
    async with opened(tmp_path / "mq.db") as broker:
        with pytest.raises(InvalidArgumentError) as info:
            await broker.publish("t", b"x", key="lone\udcffsurrogate")
        assert info.value.field == "key"
        with pytest.raises(InvalidArgumentError) as info:
            await broker.publish_batch("t", [Outgoing(b"x", {"h": "\ud800"})])
        assert info.value.field == "headers"
        assert (await broker.depth("t", "g")).waiting == 0


async def test_a_broker_refuses_to_work_in_a_forked_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = SQLiteBroker(url_of(tmp_path / "mq.db"))
    await broker.publish("t", b"before")
    parent = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: parent + 1)  # as if in a forked child
    with pytest.raises(BackendUnavailableError, match=f"opened by process {parent}"):
        await broker.publish("t", b"from the child")
    with pytest.raises(BackendUnavailableError, match=f"opened by process {parent}"):
        await broker.depth("t", "g")
    await broker.aclose()  # touches neither the parent's connection nor its thread
    monkeypatch.undo()
    assert len(rows(tmp_path / "mq.db", "SELECT position FROM messages")) == 1
    await broker._executor.aclose()  # the parent's own close


# ------------------------------------------------------------ what the file holds


async def test_ids_are_never_reused_even_after_the_queue_empties(tmp_path: Path) -> None:
    path = tmp_path / "mq.db"
    seen: list[int] = []
    for _ in range(3):
        async with opened(path) as broker:
            await broker.create_group("t", "g")
            seen += map(int, await broker.publish_batch("t", [b"a", b"b"]))
            seen.append(int(await broker.publish("t", b"c")))
            seen.append(int(await broker.publish("other", b"elsewhere")))
            assert await take(broker, "t", "g", 3) == ["a", "b", "c"]
            kept = rows(path, f"SELECT DISTINCT position >> {NUMBER_BITS} FROM messages")
            assert kept == [(2,)]  # only "other", which no group has joined
    assert [i for i in seen if i > 0] == seen
    per_topic = [seen[i : i + 3] for i in range(0, len(seen), 4)]
    assert [n for chunk in per_topic for n in chunk] == list(range(1, 10))


async def test_a_message_is_deleted_once_every_group_has_acked_it(tmp_path: Path) -> None:
    path = tmp_path / "mq.db"
    async with opened(path) as broker:
        await broker.publish("t", b"early")  # no group yet: kept for the first one
        await broker.create_group("t", "a")
        await broker.create_group("t", "b")
        await broker.publish("t", b"late")
        assert await take(broker, "t", "a", 2) == ["early", "late"]
        assert len(rows(path, "SELECT position FROM messages")) == 2  # b still needs them
        assert await take(broker, "t", "b", 1) == ["early"]
        assert len(rows(path, "SELECT position FROM messages")) == 1
        await broker.create_group("t", "c")  # joins late: starts at the oldest kept
        assert await take(broker, "t", "c", 1) == ["late"]
        assert await take(broker, "t", "b", 1) == ["late"]
        assert rows(path, "SELECT position FROM messages") == []
        assert rows(path, "SELECT grp FROM pending") == []


async def test_two_brokers_on_one_file_share_a_group(tmp_path: Path) -> None:
    path = tmp_path / "mq.db"
    async with opened(path) as first, opened(path) as second:
        await first.create_group("t", "g")
        await first.publish_batch("t", [str(i).encode() for i in range(40)])
        a = first.subscribe("t", "g", prefetch=3)
        b = second.subscribe("t", "g", prefetch=3)
        got: list[str] = []
        async with asyncio.timeout(WAIT):
            while len(got) < 40:
                for sub in (a, b):  # one may hold the last prefetched ones: do not wait long
                    delivery = await sub.receive(timeout=0.05)
                    if delivery is not None:
                        assert await delivery.ack()
                        got.append(delivery.payload.decode())
        assert sorted(got, key=int) == [str(i) for i in range(40)]
        assert a.statistics().acked > 0
        assert b.statistics().acked > 0
        await a.aclose()
        await b.aclose()


async def test_a_waiting_consumer_hears_of_another_brokers_publish(tmp_path: Path) -> None:
    path = tmp_path / "mq.db"
    async with opened(path) as consumer, opened(path) as producer:
        await consumer.create_group("t", "g")
        async with consumer.subscribe("t", "g") as sub:
            waiting = asyncio.ensure_future(sub.receive())
            await asyncio.sleep(0.05)  # it is waiting now: only the poll can tell it
            assert not waiting.done()
            await producer.publish("t", b"from elsewhere")
            async with asyncio.timeout(WAIT):
                delivery = await waiting
            assert delivery is not None
            assert delivery.payload == b"from elsewhere"
            assert await delivery.ack()


def counts(depth: Depth) -> tuple[int, int, int]:
    return depth.waiting, depth.in_flight, depth.delayed


async def test_depth_counts_each_state(tmp_path: Path) -> None:
    clock = ManualClock()
    async with opened(tmp_path / "mq.db", clock=clock) as broker:
        await broker.create_group("t", "g")
        await broker.publish_batch("t", [b"1", b"2", b"3", Outgoing(b"later", delay=10)])
        assert counts(await broker.depth("t", "g")) == (3, 0, 1)
        assert counts(await broker.depth("t", "no-such-group")) == (3, 0, 1)
        assert counts(await broker.depth("no-such-topic", "g")) == (0, 0, 0)
        async with broker.subscribe("t", "g", prefetch=2, ack_wait=5) as sub:
            one = await sub.receive()
            assert one is not None
            assert counts(await broker.depth("t", "g")) == (1, 2, 1)
            assert await one.nack(delay=3)
            assert counts(await broker.depth("t", "g")) == (1, 1, 2)
            clock.advance(5)  # the other's deadline passed: waiting again; the nack is due
            assert counts(await broker.depth("t", "g")) == (3, 0, 1)
            clock.advance(5)
            depth = await broker.depth("t", "g")
            assert (*counts(depth), depth.total) == (4, 0, 0, 4)


async def test_a_delayed_message_keeps_its_id_and_joins_the_end_when_due(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    async with opened(tmp_path / "mq.db", clock=clock) as broker:
        await broker.create_group("t", "g")
        later = await broker.publish("t", b"later", delay=2, headers={"h": "1"}, key="k")
        first = await broker.publish("t", b"first")
        async with broker.subscribe("t", "g", prefetch=1) as sub:

            async def next_one() -> tuple[bytes, str]:
                async with asyncio.timeout(WAIT):
                    delivery = await sub.receive()
                assert delivery is not None
                await delivery.ack()
                return delivery.payload, delivery.id

            assert await next_one() == (b"first", first)
            waiting = asyncio.ensure_future(next_one())
            await asyncio.sleep(0.02)
            clock.advance(2)
            assert await waiting == (b"later", later)
            second = await broker.publish("t", b"second")
            assert await next_one() == (b"second", second)
            assert len({first, later, second}) == 3  # unique (numbers may skip: never reused)
        async with broker.subscribe("t", "g") as sub:
            await broker.publish("t", b"x", delay=1)
            delivery = await sub.receive(timeout=0)
            assert delivery is None
            clock.advance(1)
            delivery = await sub.receive(timeout=0)
            assert delivery is not None
            assert (delivery.payload, delivery.headers, delivery.key) == (b"x", {}, None)


async def test_odd_payloads_headers_and_keys_come_back_exactly(tmp_path: Path) -> None:
    headers = {"empty": "", "unicode": "grüße ✓ \U0001f600", "quote": '"\\\n'}
    async with opened(tmp_path / "mq.db") as broker:
        await broker.create_group("t", "g")
        await broker.publish("t", b"", headers=headers, key="ключ")
        await broker.publish("t", bytes(range(256)) * 1000)
        async with broker.subscribe("t", "g") as sub:
            empty = await sub.receive()
            big = await sub.receive()
            assert empty is not None
            assert big is not None
            assert (empty.payload, empty.headers, empty.key) == (b"", headers, "ключ")
            assert big.payload == bytes(range(256)) * 1000
            assert (big.headers, big.key) == ({}, None)


async def test_after_a_reboot_deliveries_in_flight_go_out_again_at_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mq.db"
    async with opened(path, clock=ManualClock(start=10_000.0)) as broker:
        await broker.create_group("t", "g")
        await broker.publish_batch("t", [b"in flight", Outgoing(b"delayed", delay=60)])
        sub = broker.subscribe("t", "g", ack_wait=3600)
        assert (await sub.receive()) is not None  # its consumer dies with the machine
    # The monotonic clock started again from zero: stored times lie in the future.
    clock = ManualClock(start=5.0)
    async with opened(path, clock=clock) as broker:
        depth = await broker.depth("t", "g")
        assert (depth.waiting, depth.in_flight, depth.delayed) == (1, 0, 1)
        async with broker.subscribe("t", "g") as sub:
            again = await sub.receive(timeout=0)
            assert again is not None
            assert (again.payload, again.attempt) == (b"in flight", 2)
            await again.ack()
            clock.advance(59)
            assert await sub.receive(timeout=0) is None  # the delay is not over yet
            clock.advance(1.5)
            later = await sub.receive(timeout=0)
            assert later is not None
            assert later.payload == b"delayed"
            await later.ack()


async def test_a_long_delay_is_not_taken_for_a_reboot(tmp_path: Path) -> None:
    path = tmp_path / "mq.db"
    clock = ManualClock(start=100.0)
    async with opened(path, clock=clock) as broker:
        await broker.create_group("t", "g")
        await broker.publish_batch("t", [b"nacked", Outgoing(b"delayed", delay=3600)])
        async with broker.subscribe("t", "g", prefetch=1, ack_wait=3600) as sub:
            nacked = await sub.receive()
            assert nacked is not None
            assert await nacked.nack(delay=3600)
            held = await sub.receive(timeout=0)  # leased for an hour, unacked
            assert held is None
        async with opened(path, clock=clock) as other:  # same clock: no reboot to see
            assert counts(await other.depth("t", "g")) == (0, 0, 2)
    clock.advance(3600)
    async with opened(path, clock=clock) as broker:
        assert counts(await broker.depth("t", "g")) == (2, 0, 0)


# ------------------------------------------------------------------ locks and errors


async def test_a_write_waits_for_another_process_lock_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mq.db"
    async with opened(path) as broker:
        await broker.create_group("t", "g")
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            writing = asyncio.ensure_future(broker.publish("t", b"after"))
            assert (await broker.depth("t", "g")).waiting == 0  # WAL: readers go on
            for _ in range(20):
                await asyncio.sleep(0.001)  # the loop keeps running while the write waits
            assert not writing.done()
            other.execute("COMMIT")
        async with asyncio.timeout(WAIT):
            await writing
        assert (await broker.depth("t", "g")).waiting == 1


async def test_a_publish_that_cannot_be_written_raises_and_stores_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mq.db"
    async with opened(path, busy_timeout=0.05) as broker:
        await broker.create_group("t", "g")
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(BackendUnavailableError, match=r"busy_timeout=0\.05s"):
                await broker.publish("t", b"lost?")
            with pytest.raises(BackendUnavailableError, match=r"busy_timeout=0\.05s"):
                await broker.publish_batch("t", [b"a", b"b"])
            other.execute("ROLLBACK")
        assert (await broker.depth("t", "g")).waiting == 0
        await broker.publish("t", b"now")
        assert await take(broker, "t", "g", 1) == ["now"]


async def test_concurrent_publishes_share_transactions(tmp_path: Path) -> None:
    async with opened(tmp_path / "mq.db") as broker:
        await broker.create_group("t", "g")
        before = broker.statistics().backend["transactions"]
        ids = await asyncio.gather(*(broker.publish("t", f"{i}".encode()) for i in range(200)))
        transactions = broker.statistics().backend["transactions"] - before
        assert len(set(ids)) == 200
        assert transactions < 100
        got = await take(broker, "t", "g", 200)
        assert sorted(got, key=int) == [str(i) for i in range(200)]


async def test_a_topic_out_of_numbers_refuses_publishes_and_stores_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mq.db"
    async with opened(path) as broker:
        await broker.create_group("t", "g")
        assert await broker.publish("t", b"first") == "1"  # the topic is known from here on
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("UPDATE topics SET number_floor = ?", ((1 << NUMBER_BITS) - 1,))
        assert await broker.publish("t", b"last") == str((1 << NUMBER_BITS) - 1)
        with pytest.raises(BackendUnavailableError, match="used all its"):
            await broker.publish("t", b"one too many")  # one message: a statement of its own
        with pytest.raises(BackendUnavailableError, match="used all its"):
            await broker.publish_batch("t", [b"a", b"b"])
        assert await take(broker, "t", "g", 2) == ["first", "last"]
        assert (await broker.depth("t", "g")).total == 0


async def test_a_lone_publisher_skips_the_loop_turn_but_lets_timers_run(tmp_path: Path) -> None:
    async with opened(tmp_path / "mq.db") as broker:
        await broker.create_group("t", "g")
        await broker.publish("t", b"warm-up")
        loop = asyncio.get_running_loop()
        published: list[str] = []
        fired: list[int] = []
        loop.call_later(0, lambda: fired.append(len(published)))
        before = broker.statistics().backend
        for _ in range(100):
            published.append(await broker.publish("t", b"x"))
        after = broker.statistics().backend
        assert after["transactions"] - before["transactions"] == 100  # one each: nobody to share
        assert fired  # the loop turned now and then: within every few publishes
        assert fired[0] <= 20


async def test_acks_of_one_fetch_some_stale_ack_only_the_others(tmp_path: Path) -> None:
    path = tmp_path / "mq.db"
    async with opened(path) as broker:
        await broker.create_group("t", "g")
        await broker.publish_batch("t", [b"a", b"b", b"c"])
        async with broker.subscribe("t", "g", prefetch=3) as sub:
            got = [await sub.receive(timeout=WAIT) for _ in range(3)]
            deliveries = [d for d in got if d is not None]
            assert [d.payload for d in deliveries] == [b"a", b"b", b"c"]
            with closing(sqlite3.connect(path, isolation_level=None)) as other:
                # Another consumer took "b" over (its lease is gone) before these acks.
                other.execute("DELETE FROM pending WHERE position & 3 = 2")
            acked = await asyncio.gather(*(d.ack() for d in deliveries))
            assert acked == [True, False, True]
            assert sub.statistics().stale_acks == 1
        assert rows(path, "SELECT count(*) FROM pending") == [(0,)]
        kept = rows(path, "SELECT payload FROM messages")
        assert kept == [(b"b",)]  # acked by nobody yet: still there


async def test_a_closed_broker_ends_waiting_consumers(tmp_path: Path) -> None:
    broker = SQLiteBroker(url_of(tmp_path / "mq.db"), poll_interval=60.0)
    sub = broker.subscribe("t", "g")
    waiting = asyncio.ensure_future(sub.receive())
    await asyncio.sleep(0.05)
    await broker.aclose()
    async with asyncio.timeout(WAIT):
        with pytest.raises(BackendUnavailableError):
            await waiting
    with pytest.raises(BackendUnavailableError):
        await broker.publish("t", b"x")


# ---------------------------------------------------------------------- processes
#
# Children use the real monotonic clock (shared by the processes of a machine) and short
# ack deadlines; they report on stdout, one JSON array per line. The tests wait for what
# the children report or the file shows, with generous timeouts, and assert no duration.

ACK_WAIT = 0.5

CONSUMER = """
import asyncio, json, os, signal, sys
from distsys.mq._sqlite import SQLiteBroker

async def main(url, handlers, prefetch, work, max_deliveries, ack_wait):
    async with SQLiteBroker(url, poll_interval=0.005) as broker:
        await broker.create_group("t", "g")
        sub = broker.subscribe(
            "t", "g", ack_wait=ack_wait, prefetch=prefetch, max_deliveries=max_deliveries
        )
        async def handle():
            async for delivery in sub:
                body = delivery.payload.decode()
                print(json.dumps(["got", body, delivery.attempt]), flush=True)
                if body == "poison":
                    os.kill(os.getpid(), signal.SIGKILL)  # the handler takes its process down
                await asyncio.sleep(work)
                print(json.dumps(["acked", body, await delivery.ack()]), flush=True)
        print(json.dumps(["ready"]), flush=True)
        await asyncio.gather(*(handle() for _ in range(handlers)))

args = sys.argv[1:]
asyncio.run(main(args[0], int(args[1]), int(args[2]), float(args[3]), int(args[4]), float(args[5])))
"""

PRODUCER = """
import asyncio, json, sys
from distsys.mq._sqlite import SQLiteBroker

async def main(url, tag, batches, size):
    async with SQLiteBroker(url) as broker:
        for b in range(batches):
            bodies = [f"{tag}-{b}-{i}".encode() for i in range(size)]
            if size == 1:
                ids = [await broker.publish("t", bodies[0])]
            else:
                ids = await broker.publish_batch("t", bodies)
            print(json.dumps([tag, b, ids]), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


async def eventually(predicate: Callable[[], bool], timeout: float = WAIT * 2) -> None:
    """Wait until ``predicate()`` holds (checked every 20 ms); fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - the state is in other processes and the file
            await asyncio.sleep(0.02)


class Child:
    """A child process whose JSON lines are collected as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[list[Any]] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(json.loads(line))

    def said(self, kind: str) -> list[list[Any]]:
        return [line for line in self.lines if line[0] == kind]

    @property
    def dead(self) -> bool:
        return self.process.returncode is not None

    async def end(self) -> None:
        if not self.dead:
            self.process.send_signal(signal.SIGKILL)
        async with asyncio.timeout(WAIT):
            await self.process.wait()
            await self._reader


Start = Callable[..., Awaitable[Child]]


@asynccontextmanager
async def children() -> AsyncIterator[Start]:
    started: list[Child] = []

    async def start(script: str, *args: object) -> Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, *map(str, args), stdout=asyncio.subprocess.PIPE
        )
        child = Child(process)
        started.append(child)
        return child

    try:
        yield start
    finally:
        for child in started:
            await child.end()


async def consumer(
    start: Start,
    path: Path,
    *,
    handlers: int = 4,
    prefetch: int = 4,
    work: float = 0.01,
    max_deliveries: int = 50,
) -> Child:
    child = await start(CONSUMER, url_of(path), handlers, prefetch, work, max_deliveries, ACK_WAIT)
    await eventually(lambda: bool(child.said("ready")) or child.dead)
    return child


def unsettled(path: Path) -> int:
    """How many messages and leases the file still holds (0: every group acked all)."""
    ((count,),) = rows(
        path, "SELECT (SELECT count(*) FROM messages) + (SELECT count(*) FROM pending)"
    )
    assert isinstance(count, int)
    return count


def tally(consumers: list[Child]) -> tuple[Counter[str], Counter[str], int]:
    """The bodies acked (ack returned True) and delivered by all, and the redeliveries."""
    acked: Counter[str] = Counter()
    delivered: Counter[str] = Counter()
    redelivered = 0
    for child in consumers:
        for _, body, attempt in child.said("got"):
            delivered[body] += 1
            redelivered += attempt > 1
        acked.update(body for _, body, ok in child.said("acked") if ok)
    return acked, delivered, redelivered


async def test_consumers_killed_mid_handling_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "mq.db"
    bodies = {f"m{i}" for i in range(600)}
    async with opened(path) as broker, children() as start:
        await broker.create_group("t", "g")
        await broker.publish_batch("t", [f"m{i}".encode() for i in range(600)])
        victims = [await consumer(start, path, work=0.05) for _ in range(2)]
        survivors = [await consumer(start, path, work=0.05) for _ in range(2)]
        for victim in victims:

            def holding(v: Child = victim) -> bool:
                return len(v.said("got")) > len(v.said("acked")) + 2

            await eventually(holding)  # SIGKILL it while it holds deliveries it has not acked
            await victim.end()
        await eventually(lambda: unsettled(path) == 0)
        # A victim may have committed an ack and died before saying so: such a message
        # is acked (the file is settled) but unreported; it was delivered to a victim.
        held = {body for v in victims for _, body, _ in v.said("got")}
        await eventually(lambda: bodies <= set(tally(survivors + victims)[0]) | held)
        acked, delivered, redelivered = tally(survivors + victims)
        assert max(acked.values()) == 1  # no message acked twice
        assert set(delivered) == bodies
        # Every duplicate is a redelivery; a redelivery may also follow a delivery that a
        # victim had prefetched and died holding before its handler reported it.
        assert sum(n - 1 for n in delivered.values()) <= redelivered
        assert redelivered > 0  # the victims did die holding messages


async def test_a_producer_killed_mid_batch_leaves_only_whole_batches(tmp_path: Path) -> None:
    path = tmp_path / "mq.db"
    returned: dict[tuple[str, int], list[str]] = {}
    async with opened(path) as broker, children() as start:
        await broker.create_group("t", "g")
        for round_ in range(3):
            producer = await start(PRODUCER, url_of(path), f"r{round_}", 100_000, 50)

            def busy(p: Child = producer, n: int = 5 + 7 * round_) -> bool:
                return len(p.lines) >= n

            await eventually(busy)
            await producer.end()  # SIGKILL while it publishes batch after batch
            returned.update({(tag, batch): ids for tag, batch, ids in producer.lines})
        stored: dict[tuple[str, int], list[int]] = {}
        ids: dict[tuple[str, int], list[str]] = {}
        async with broker.subscribe("t", "g", prefetch=1000) as sub:
            while (delivery := await sub.receive(timeout=0.2)) is not None:
                tag, batch, index = delivery.payload.decode().split("-")
                stored.setdefault((tag, int(batch)), []).append(int(index))
                ids.setdefault((tag, int(batch)), []).append(delivery.id)
                assert await delivery.ack()
    for key, published in returned.items():  # every batch whose publish returned is kept
        assert ids[key] == published, key
    for key, indexes in stored.items():  # all of a batch, in order, or none of it
        assert indexes == list(range(50)), key
    assert len(stored) - len(returned) <= 3  # a commit a killed producer had no time to print


async def test_two_producers_and_two_consumers_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "mq.db"  # the processes also race to create the file
    published = {f"a-{b}-{i}" for b in range(60) for i in range(25)}
    published |= {f"b-{b}-0" for b in range(500)}
    async with children() as start:
        consumers = [await consumer(start, path, work=0.0) for _ in range(2)]
        producers = [
            await start(PRODUCER, url_of(path), "a", 60, 25),  # in batches of 25
            await start(PRODUCER, url_of(path), "b", 500, 1),  # one at a time
        ]
        for producer in producers:
            async with asyncio.timeout(WAIT * 4):
                assert await producer.process.wait() == 0
        await eventually(lambda: set(tally(consumers)[0]) == published)
        acked, delivered, redelivered = tally(consumers)
        assert max(acked.values()) == 1
        assert sum(n - 1 for n in delivered.values()) == redelivered
        assert all(not c.dead for c in consumers)
        await eventually(lambda: unsettled(path) == 0)


async def test_a_message_that_kills_its_consumers_reaches_the_dead_letters(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mq.db"
    fine = {f"fine-{i}" for i in range(30)}
    async with opened(path) as broker, children() as start:
        await broker.create_group("t", "g")
        await broker.publish_batch("t", [b"fine-x", b"poison", *(f.encode() for f in fine)])
        consumers: list[Child] = []
        crashes = 0

        def done() -> bool:
            dead = rows(
                path,
                f"SELECT count(*) FROM messages JOIN topics ON position >> {NUMBER_BITS} = id"
                " WHERE name = 't-dead'",
            )
            return fine | {"fine-x"} <= set(tally(consumers)[0]) and dead == [(1,)]

        while True:  # restart the consumer each time the poison takes it down
            # One handler and no prefetch: the poison takes nothing else down with it.
            child = await consumer(start, path, handlers=1, prefetch=1, max_deliveries=3)
            consumers.append(child)

            def over(c: Child = child) -> bool:
                return c.dead or done()

            await eventually(over)
            if not child.dead:
                break
            crashes += 1
            assert crashes <= 3, "the poison was handed out after max_deliveries"
        async with broker.subscribe("t-dead", "ops") as dead:
            async with asyncio.timeout(WAIT * 2):
                letter = await dead.receive()
            assert letter is not None
            assert letter.payload == b"poison"
            assert letter.headers[HEADER_DEAD_REASON] == "max deliveries"
            assert letter.headers[HEADER_ATTEMPTS] == "4"  # three handled, the fourth refused
            assert await letter.ack()
        assert crashes == 3
        acked, _, _ = tally(consumers)
        assert max(acked.values()) == 1
