"""redis:// passes the KV contract on a real server, and survives what real servers do.

Every test works in a namespace of its own on the shared server and deletes its keys
afterwards. Tests that kill or pause a server run a redis-server of their own on another
port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from distsys.backends import KV, EventType, KVEntry, KVEvent, open_kv
from distsys.backends._redis import RedisKV
from distsys.backends._redis_stream import WatchState
from distsys.errors import BackendUnavailableError, InvalidArgumentError, LeaseExpiredError
from distsys.testing import KVContract, next_event
from tests.redis_keys import HOST, PORT, purge, url_for
from tests.servers import READY_TIMEOUT, OwnRedis, free_port

pytestmark = pytest.mark.backend("redis")


async def expect(events: AsyncIterator[KVEvent], kind: EventType, key: str = "") -> KVEvent:
    event = await next_event(events)
    assert (event.type, event.key) == (kind, key), event
    return event


class TestRedisKV(KVContract):
    lease_ttl = 1.0

    @pytest.fixture(autouse=True)
    def _use_namespace(self, namespace: str) -> None:
        self.namespace = namespace

    async def open_kv(self) -> KV:
        return RedisKV(url_for(self.namespace))

    async def elapse(self, kv: KV, seconds: float) -> None:
        await asyncio.sleep(seconds)  # leases run on the server's clock


# ---------------------------------------------------------------- configuration


async def test_open_kv_chooses_redis_by_scheme(namespace: str) -> None:
    kv = open_kv(url_for(namespace))
    try:
        assert isinstance(kv, RedisKV)
        assert kv.statistics().namespace == namespace
        await kv.ping()
    finally:
        await kv.aclose()


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("redis://127.0.0.1/0?namespace=a{b}", "namespace"),
        ("redis://127.0.0.1/zero", "db"),
        ("redis://127.0.0.1/²", "db"),
        ("redis://127.0.0.1/0?nmespace=x", "url"),
        ("memory://", "url"),
    ],
)
def test_a_bad_url_is_refused_naming_the_field(url: str, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        RedisKV(url)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("timeout", 0),
        ("timeout", "5"),
        ("check_interval", -1.0),
        ("check_interval", float("inf")),
        ("watch_buffer", 0),
        ("watch_buffer", 1.5),
        ("max_connections", 0),
    ],
)
def test_bad_options_are_refused_naming_them(option: str, value: object) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        RedisKV("redis://127.0.0.1", **{option: value})  # type: ignore[arg-type]
    assert caught.value.field == option


def test_the_password_never_shows() -> None:
    kv = RedisKV("redis://user:s3cret@127.0.0.1:6379/0")
    assert "s3cret" not in repr(kv)
    assert "s3cret" not in str(kv.url)


async def test_namespaces_do_not_see_each_other(namespace: str) -> None:
    other = f"{namespace}-other"
    try:
        async with RedisKV(url_for(namespace)) as first, RedisKV(url_for(other)) as second:
            await first.put("k", b"first")
            assert await second.get("k") is None
            assert await second.list("") == []
            await second.put("k", b"second")
            got = await first.get("k")
            assert got is not None
            assert (got.value, got.version) == (b"first", 1)
    finally:
        await purge(other)


# ---------------------------------------------------------------- leases


async def test_writing_under_an_expired_lease_writes_nothing(namespace: str) -> None:
    async with RedisKV(url_for(namespace)) as kv:
        events = kv.watch("")
        await expect(events, EventType.RESET)
        lease = await kv.grant(0.2)
        await kv.put("probe", b"x", lease=lease)
        await expect(events, EventType.PUT, "probe")
        await expect(events, EventType.DELETE, "probe")  # Redis expired it on its own clock
        await events.aclose()  # type: ignore[attr-defined]
        with pytest.raises(LeaseExpiredError) as caught:
            await kv.put("k", b"v", lease=lease)
        assert caught.value.lease == lease
        with pytest.raises(LeaseExpiredError):
            await kv.compare_and_set("k", b"v", version=0, lease=lease)
        assert await kv.get("k") is None
        assert await kv.keep_alive(lease) is False


async def test_a_lease_expires_with_no_client_connected(namespace: str) -> None:
    async with RedisKV(url_for(namespace)) as watcher:
        events = watcher.watch("")
        await expect(events, EventType.RESET)
        holder = RedisKV(url_for(namespace))
        lease = await holder.grant(0.5)
        await holder.put("inst", b"up", lease=lease)
        await expect(events, EventType.PUT, "inst")
        await holder.aclose()  # the holder is gone: only Redis itself can expire the key
        await expect(events, EventType.DELETE, "inst")
        assert await watcher.get("inst") is None
        assert await watcher.list("") == []
        raw = Redis(host=HOST, port=PORT)
        try:  # listing dropped the expired key from the index too
            assert await raw.zscore(f"{{{namespace}}}keys", "inst") is None
        finally:
            await raw.aclose()
        assert watcher.statistics().keyspace_notifications is True
        await events.aclose()  # type: ignore[attr-defined]


async def test_without_keyspace_notifications_expiry_is_found_by_checks(namespace: str) -> None:
    url = url_for(namespace)
    async with RedisKV(url, keyspace_notifications=False, check_interval=0.1) as kv:
        events = kv.watch("svc/")
        await expect(events, EventType.RESET)
        lease = await kv.grant(0.3)
        await kv.put("svc/a", b"1", lease=lease)
        await kv.put("svc/b", b"2")
        await expect(events, EventType.PUT, "svc/a")
        await expect(events, EventType.PUT, "svc/b")
        await expect(events, EventType.DELETE, "svc/a")
        await kv.put("svc/b", b"3")  # changes keep flowing in order after a check
        put = await expect(events, EventType.PUT, "svc/b")
        assert put.entry is not None
        assert put.entry.version == 2
        assert kv.statistics().keyspace_notifications is False
        await events.aclose()  # type: ignore[attr-defined]


# ---------------------------------------------------------------- watch


async def test_a_gap_in_the_change_sequence_brings_a_new_reset(namespace: str) -> None:
    async with RedisKV(url_for(namespace)) as kv:
        await kv.put("a", b"1")
        events = kv.watch("")
        await expect(events, EventType.RESET)
        raw = Redis(host=HOST, port=PORT)
        try:  # a change numbered far ahead: the watch must assume it missed some
            await raw.publish(f"{{{namespace}}}changes", b"999999\0P\x001\0\0ghost\0x")
        finally:
            await raw.aclose()
        reset = await expect(events, EventType.RESET)
        assert [e.key for e in reset.snapshot] == ["a"]
        await kv.put("b", b"2")
        await expect(events, EventType.PUT, "b")
        assert kv.statistics().resyncs == 1
        await events.aclose()  # type: ignore[attr-defined]


async def test_a_slow_watcher_gets_a_reset_instead_of_a_gap(namespace: str) -> None:
    async with RedisKV(url_for(namespace), watch_buffer=4) as kv:
        events = kv.watch("")
        await expect(events, EventType.RESET)
        names = [f"k{i:02}" for i in range(40)]
        for name in names:
            await kv.put(name, b"v")
        reset = await expect(events, EventType.RESET)
        assert [e.key for e in reset.snapshot] == names
        await kv.delete("k00")
        await expect(events, EventType.DELETE, "k00")
        await events.aclose()  # type: ignore[attr-defined]


async def test_closing_the_store_ends_its_watches(namespace: str) -> None:
    kv = RedisKV(url_for(namespace))
    events = kv.watch("")
    await expect(events, EventType.RESET)
    waiting = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)  # let it start waiting
    assert kv.statistics().watches == 1
    await kv.aclose()
    with pytest.raises(StopAsyncIteration):
        async with asyncio.timeout(READY_TIMEOUT):
            await waiting
    assert kv.statistics().watches == 0


async def test_a_dropped_subscriber_connection_brings_a_reset(namespace: str) -> None:
    async with RedisKV(url_for(namespace)) as kv:
        events = kv.watch("")
        await expect(events, EventType.RESET)
        await kv.put("a", b"1")
        await expect(events, EventType.PUT, "a")
        raw = Redis(host=HOST, port=PORT)
        try:  # kill only this watch's connection: the server is shared
            for client in await raw.client_list(_type="pubsub"):
                if client["name"] == f"distsys-watch:{namespace}":
                    await raw.client_kill_filter(_id=client["id"])
        finally:
            await raw.aclose()
        reset = await expect(events, EventType.RESET)
        assert [e.key for e in reset.snapshot] == ["a"]
        await kv.put("b", b"2")
        await expect(events, EventType.PUT, "b")
        assert kv.statistics().reconnects >= 1
        await events.aclose()  # type: ignore[attr-defined]


# ---------------------------------------------------------------- an unreachable server


async def test_an_unreachable_server_raises_backend_unavailable() -> None:
    kv = RedisKV(f"redis://127.0.0.1:{free_port()}/0", timeout=1.0)
    try:
        for operation in (kv.ping(), kv.get("k"), kv.put("k", b"v"), kv.grant(1.0)):
            with pytest.raises(BackendUnavailableError):
                await operation
        with pytest.raises(BackendUnavailableError):
            await next_event(kv.watch(""))
    finally:
        await kv.aclose()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_a_watch_survives_the_server_going_away_and_coming_back(
    own_server: OwnRedis,
) -> None:
    await own_server.ready()
    auth = f":{own_server.password}@"
    url = url_for("restart", host="127.0.0.1", port=own_server.port, auth=auth)
    async with RedisKV(url, timeout=2.0) as kv:
        events = kv.watch("svc/")
        await expect(events, EventType.RESET)
        await kv.put("svc/a", b"1")
        await expect(events, EventType.PUT, "svc/a")

        own_server.kill()
        with pytest.raises(BackendUnavailableError) as caught:
            await kv.put("svc/b", b"2")
        assert own_server.password not in str(caught.value)
        assert "***" in caught.value.url
        with pytest.raises(BackendUnavailableError):
            await kv.get("svc/a")

        own_server.start()  # same port, empty data: nothing was saved
        await own_server.ready()
        reset = await expect(events, EventType.RESET)
        assert reset.snapshot == ()
        await kv.put("svc/c", b"3")
        put = await expect(events, EventType.PUT, "svc/c")
        assert put.entry is not None
        assert put.entry.version == 1
        assert kv.statistics().reconnects >= 1
        await events.aclose()  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the pure watch core


def change(seq: int, kind: str, key: str, *, version: int = 1, value: bytes = b"") -> bytes:
    return f"{seq}\0{kind}\0{version}\0\0{key}\0".encode() + value


def test_watch_state_drops_what_the_snapshot_holds_and_follows_the_stream() -> None:
    state = WatchState("svc/", b"{ns}k:")
    state.expect("tok", 5, (KVEntry("svc/a", b"1", 1),), reset=True)
    assert state.on_change(change(5, "P", "svc/a", value=b"1")) == ([], False)  # in snapshot
    assert state.on_change(change(5, "M", "other-watcher")) == ([], False)
    [reset], _ = state.on_change(change(5, "M", "tok"))
    assert reset.type is EventType.RESET
    [put], _ = state.on_change(change(6, "P", "svc/b", value=b"2"))
    assert put.entry == KVEntry("svc/b", b"2", 1)
    assert state.on_change(change(7, "P", "elsewhere")) == ([], False)
    assert state.on_expired(b"{ns}k:svc/b") == KVEvent(EventType.DELETE, "svc/b")
    assert state.on_expired(b"{ns}k:svc/b") is None  # already gone
    assert state.on_expired(b"{other}k:svc/a") is None
    assert state.on_change(change(9, "D", "svc/a")) == ([], True)  # 8 is missing


def test_watch_state_check_reports_expired_keys_as_deletes() -> None:
    state = WatchState("", b"{ns}k:")
    entries = (KVEntry("a", b"", 1), KVEntry("b", b"", 1))
    state.expect("t1", 2, entries, reset=True)
    state.on_change(change(2, "M", "t1"))
    state.expect("t2", 2, entries[1:], reset=False)
    events, resync = state.on_change(change(2, "M", "t2"))
    assert (events, resync) == ([KVEvent(EventType.DELETE, "a")], False)
    state.expect("t3", 2, (KVEntry("b", b"", 2),), reset=False)  # differs: not only expiry
    [reset], _ = state.on_change(change(2, "M", "t3"))
    assert reset.type is EventType.RESET


async def test_a_silent_connection_is_found_by_ping(own_server: OwnRedis) -> None:
    await own_server.ready()
    auth = f":{own_server.password}@"
    url = url_for("silent", host="127.0.0.1", port=own_server.port, auth=auth)
    async with RedisKV(url, timeout=0.5, check_interval=0.1) as kv:
        events = kv.watch("")
        await expect(events, EventType.RESET)
        await kv.put("a", b"1")
        await expect(events, EventType.PUT, "a")
        raw = Redis(host="127.0.0.1", port=own_server.port, password=own_server.password)
        try:  # the server holds every command, PING included, for a while
            await raw.execute_command("CLIENT", "PAUSE", 1500, "ALL")
        finally:
            await raw.aclose()
        reset = await expect(events, EventType.RESET)
        assert [e.key for e in reset.snapshot] == ["a"]
        assert kv.statistics().reconnects >= 1
        await events.aclose()  # type: ignore[attr-defined]
