"""etcd:// passes the KV contract against a real etcd, and survives the server restarting.

The contract runs against the shared etcd on 127.0.0.1:2379 (CI's). Tests that kill,
compact or reconfigure a server start an etcd of their own on free loopback ports.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aetcd  # type: ignore[import-untyped]
import pytest
from aetcd import rpc

from distsys.backends import KV, EventType, open_kv
from distsys.backends._etcd import EtcdKV
from distsys.errors import (
    ArgumentTypeError,
    BackendUnavailableError,
    InvalidArgumentError,
    LeaseExpiredError,
)
from distsys.testing import KVContract
from distsys.testing._kv_contract import next_event
from tests.conftest import BACKENDS
from tests.servers import OwnEtcd, free_port

pytestmark = pytest.mark.backend("etcd")

HOST, PORT = BACKENDS["etcd"]
SHARED_URL = f"etcd://{HOST}:{PORT}"


async def purge(prefix: str, host: str = HOST, port: int = PORT) -> None:
    """Delete every key under ``prefix`` (with a plain aetcd client)."""
    async with aetcd.Client(host, port, timeout=10) as client:
        await client.delete_prefix(prefix.encode())


class TestEtcdKV(KVContract):
    lease_ttl = 2.0  # etcd's minimum TTL with its default election timeout (1.5 s, rounded up)

    async def open_kv(self) -> KV:
        return EtcdKV(SHARED_URL)

    async def elapse(self, kv: KV, seconds: float) -> None:
        await asyncio.sleep(seconds)  # leases live on the server's clock

    @asynccontextmanager
    async def store(self) -> AsyncIterator[tuple[KV, str]]:
        async with super().store() as (kv, ns):
            try:
                yield kv, ns
            finally:
                await purge(ns)


@pytest.fixture
async def shared() -> AsyncIterator[tuple[EtcdKV, str]]:
    """A store on the shared etcd and a fresh key prefix, deleted afterwards."""
    ns = f"test-etcd/{uuid.uuid4().hex}/"
    kv = EtcdKV(SHARED_URL)
    try:
        yield kv, ns
    finally:
        await kv.aclose()
        await purge(ns)


# --------------------------------------------------------------------- the URL


def test_open_kv_gives_an_etcd_store() -> None:
    kv = open_kv(f"{SHARED_URL}?timeout=2.5")
    assert isinstance(kv, EtcdKV)
    assert repr(kv) == f"<EtcdKV {SHARED_URL}?timeout=2.5>"


@pytest.mark.parametrize(
    ("url", "options", "field", "words"),
    [
        ("redis://127.0.0.1:6379", {}, "url", "scheme must be etcd"),
        ("etcd://127.0.0.1:2379/0", {}, "url", "no path"),
        ("etcd://127.0.0.1:2379?tls=1", {}, "url", "unknown option 'tls'"),
        ("etcd://user@127.0.0.1:2379", {}, "url", "both a user and a password"),
        ("etcd://127.0.0.1:2379?timeout=soon", {}, "timeout", "seconds > 0"),
        ("etcd://127.0.0.1:2379?timeout=0", {}, "timeout", "seconds > 0"),
        ("etcd://127.0.0.1:2379", {"timeout": float("inf")}, "timeout", "seconds > 0"),
    ],
)
def test_bad_configuration_is_refused_naming_the_field(
    url: str, options: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        EtcdKV(url, **options)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_a_timeout_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(ArgumentTypeError) as caught:
        EtcdKV(SHARED_URL, timeout="5")  # type: ignore[arg-type]
    assert caught.value.field == "timeout"


async def test_an_unreachable_server_is_reported_with_the_password_masked() -> None:
    kv = EtcdKV(f"etcd://me:s3cret@127.0.0.1:{free_port()}", timeout=1.0)
    try:
        async with asyncio.timeout(30):
            with pytest.raises(BackendUnavailableError) as caught:
                await kv.ping()
        assert "s3cret" not in str(caught.value)
        assert caught.value.url.startswith("etcd://me:***@127.0.0.1:")
    finally:
        await kv.aclose()


# ------------------------------------------------------ etcd's own view of things


async def test_versions_and_leases_are_etcds_own(shared: tuple[EtcdKV, str]) -> None:
    kv, ns = shared
    lease = await kv.grant(10)
    written = await kv.put(ns + "k", b"1", lease=lease)
    written = await kv.put(ns + "k", b"2", lease=lease)
    async with aetcd.Client(HOST, PORT, timeout=10) as client:
        raw = await client.get((ns + "k").encode())
    assert (written.version, written.lease) == (raw.version, raw.lease) == (2, lease)
    await kv.revoke(lease)


@pytest.mark.parametrize(("asked", "granted"), [(0.3, 2), (2.0, 2), (2.5, 3), (60, 60)])
async def test_lease_ttls_round_up_to_whole_seconds_and_etcds_minimum(
    shared: tuple[EtcdKV, str], asked: float, granted: int
) -> None:
    kv, _ = shared
    lease = await kv.grant(asked)
    try:
        async with aetcd.Client(HOST, PORT, timeout=10) as client:
            info = await client.get_lease_info(lease, keys=False)
        assert info.grantedTTL == granted
    finally:
        await kv.revoke(lease)


async def test_a_ttl_beyond_etcds_limit_is_refused(shared: tuple[EtcdKV, str]) -> None:
    kv, _ = shared
    with pytest.raises(InvalidArgumentError) as caught:
        await kv.grant(1e12)
    assert caught.value.field == "ttl"


async def test_compare_and_set_under_an_expired_lease_writes_nothing(
    shared: tuple[EtcdKV, str],
) -> None:
    kv, ns = shared
    lease = await kv.grant(10)
    await kv.revoke(lease)
    with pytest.raises(LeaseExpiredError):
        await kv.compare_and_set(ns + "k", b"v", version=0, lease=lease)
    assert await kv.get(ns + "k") is None
    # A comparison that fails does not look at the lease at all.
    await kv.put(ns + "k", b"v")
    assert await kv.compare_and_set(ns + "k", b"w", version=0, lease=lease) is None


@pytest.mark.parametrize("lease", [0, -1, 2**64])
async def test_a_lease_etcd_never_grants_counts_as_expired(
    shared: tuple[EtcdKV, str], lease: int
) -> None:
    kv, ns = shared  # etcd itself would take lease 0 as "no lease"
    with pytest.raises(LeaseExpiredError):
        await kv.put(ns + "k", b"v", lease=lease)
    with pytest.raises(LeaseExpiredError):
        await kv.compare_and_set(ns + "k", b"v", version=0, lease=lease)
    assert await kv.compare_and_set(ns + "k", b"v", version=3, lease=lease) is None
    assert await kv.compare_and_set(ns + "k", b"v", version=2**64) is None
    assert await kv.keep_alive(lease) is False
    assert await kv.revoke(lease) is False
    assert await kv.get(ns + "k") is None


async def test_a_value_beyond_etcds_request_limit_is_refused(
    shared: tuple[EtcdKV, str],
) -> None:
    kv, ns = shared
    for size in (int(1.6 * 2**20), 3 * 2**20):  # etcd's limit, then gRPC's
        with pytest.raises(InvalidArgumentError) as caught:
            await kv.put(ns + "big", bytes(size))
        assert caught.value.field == "value"
    assert await kv.get(ns + "big") is None


async def test_keys_written_by_others_that_are_not_utf8_round_trip(
    shared: tuple[EtcdKV, str],
) -> None:
    kv, ns = shared
    async with aetcd.Client(HOST, PORT, timeout=10) as client:
        await client.put(ns.encode() + b"\xff\xfe", b"foreign")
    (entry,) = await kv.list(ns)
    assert entry.value == b"foreign"
    assert await kv.delete(entry.key) is True
    with pytest.raises(InvalidArgumentError) as caught:
        await kv.get(ns + "\ud800")  # a lone surrogate has no UTF-8 form
    assert caught.value.field == "key"


async def test_an_empty_prefix_lists_every_key(shared: tuple[EtcdKV, str]) -> None:
    kv, ns = shared
    await kv.put(ns + "k", b"v")
    assert ns + "k" in [e.key for e in await kv.list("")]


# ------------------------------------------------------------- closing the store


async def test_closing_the_store_ends_its_watches(shared: tuple[EtcdKV, str]) -> None:
    kv, ns = shared
    events = kv.watch(ns)
    assert (await next_event(events)).type is EventType.RESET
    waiting = asyncio.ensure_future(next_event(events))
    await asyncio.sleep(0.1)  # let it block on the stream
    await kv.aclose()
    with pytest.raises(StopAsyncIteration):
        await waiting


async def test_stopping_to_consume_a_watch_releases_its_stream(
    shared: tuple[EtcdKV, str],
) -> None:
    kv, ns = shared
    events = kv.watch(ns)
    assert (await next_event(events)).type is EventType.RESET
    assert len(kv._streams) == 1
    await events.aclose()  # type: ignore[attr-defined]
    assert kv._streams == set()


# ------------------------------------------------------------ an etcd of our own


@pytest.fixture
def private_etcd(tmp_path: Path) -> Iterator[OwnEtcd]:
    server = OwnEtcd(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_a_watch_survives_the_server_restarting(private_etcd: OwnEtcd) -> None:
    kv = EtcdKV(private_etcd.url, timeout=2.0)
    try:
        events = kv.watch("svc/")
        assert (await next_event(events)).type is EventType.RESET
        await kv.put("svc/a", b"1")
        put = await next_event(events)
        assert (put.type, put.key) == (EventType.PUT, "svc/a")

        private_etcd.kill()
        reconnected = asyncio.ensure_future(next_event(events, timeout=60))
        async with asyncio.timeout(30):  # a safety net: the store's timeout is 2 s
            for operation in (kv.put("svc/b", b"2"), kv.get("svc/a"), kv.ping()):
                with pytest.raises(BackendUnavailableError):
                    await operation
        assert not reconnected.done()

        await asyncio.to_thread(private_etcd.start)
        reset = await reconnected
        assert reset.type is EventType.RESET
        assert [(e.key, e.value) for e in reset.snapshot] == [("svc/a", b"1")]
        await kv.put("svc/c", b"3")
        put = await next_event(events)
        assert (put.type, put.key) == (EventType.PUT, "svc/c")
        await events.aclose()  # type: ignore[attr-defined]
    finally:
        await kv.aclose()


class BreakSpy(logging.Handler):
    """Set ``broke`` when the backend logs that a watch broke (it logs on the loop)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.broke = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "broke" in record.getMessage():
            self.broke.set()


async def test_a_watch_notices_a_frozen_server(private_etcd: OwnEtcd) -> None:
    # A stopped process keeps its connections open, as a partitioned host would: only
    # unanswered keepalive pings can tell the watch that the server is gone.
    kv = EtcdKV(private_etcd.url, timeout=2.0)
    assert private_etcd.process is not None
    pid = private_etcd.process.pid
    spy = BreakSpy()
    logging.getLogger("distsys.backends").addHandler(spy)
    try:
        events = kv.watch("svc/")
        assert (await next_event(events)).type is EventType.RESET
        os.kill(pid, signal.SIGSTOP)
        try:
            reconnected = asyncio.ensure_future(next_event(events, timeout=90))
            async with asyncio.timeout(60):  # keepalive time (10 s) + timeout, then some
                await spy.broke.wait()
        finally:
            os.kill(pid, signal.SIGCONT)
        reset = await reconnected
        assert reset.type is EventType.RESET
        await events.aclose()  # type: ignore[attr-defined]
    finally:
        logging.getLogger("distsys.backends").removeHandler(spy)
        await kv.aclose()


async def test_closing_the_store_ends_a_watch_that_is_reconnecting(
    private_etcd: OwnEtcd,
) -> None:
    kv = EtcdKV(private_etcd.url, timeout=2.0)
    events = kv.watch("svc/")
    assert (await next_event(events)).type is EventType.RESET
    private_etcd.kill()
    waiting = asyncio.ensure_future(next_event(events, timeout=60))
    await asyncio.sleep(0.5)  # let it find the server gone and start retrying
    await kv.aclose()
    with pytest.raises(StopAsyncIteration):
        await waiting


async def test_a_compacted_start_revision_is_met_with_a_new_snapshot(
    private_etcd: OwnEtcd, monkeypatch: pytest.MonkeyPatch
) -> None:
    kv = EtcdKV(private_etcd.url)
    admin = aetcd.Client("127.0.0.1", private_etcd.client_port, timeout=10)
    snapshot_range = kv._range
    snapshots = 0

    async def range_then_compact(prefix: str) -> Any:
        # Between the snapshot and the watch, two writes land and etcd compacts them
        # away: the watch cannot start where the snapshot ended.
        nonlocal snapshots
        found = await snapshot_range(prefix)
        snapshots += 1
        if snapshots == 1:
            await admin.put(b"svc/late", b"1")
            await admin.put(b"svc/later", b"2")
            await admin.compact(found[1] + 2, physical=True)
        return found

    monkeypatch.setattr(kv, "_range", range_then_compact)
    try:
        events = kv.watch("svc/")
        # etcd 3.4 first confirms the watch, then cancels it as compacted: the first
        # snapshot is followed by a fresh one instead of the two lost PUTs.
        first, second = await next_event(events), await next_event(events)
        assert (first.type, first.snapshot) == (EventType.RESET, ())
        assert second.type is EventType.RESET
        assert [e.key for e in second.snapshot] == ["svc/late", "svc/later"]
        assert snapshots == 2
        await kv.put("svc/next", b"3")
        put = await next_event(events)
        assert (put.type, put.key) == (EventType.PUT, "svc/next")
        await events.aclose()  # type: ignore[attr-defined]
    finally:
        await kv.aclose()
        await admin.close()


async def _enable_auth(port: int, password: str) -> None:
    async with aetcd.Client("127.0.0.1", port, timeout=10) as client:
        auth = rpc.AuthStub(client.channel)
        await auth.RoleAdd(rpc.AuthRoleAddRequest(name="root"))
        await auth.UserAdd(rpc.AuthUserAddRequest(name="root", password=password))
        await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="root", role="root"))
        await auth.AuthEnable(rpc.AuthEnableRequest())


async def test_authentication_and_an_expired_token(tmp_path: Path) -> None:
    server = OwnEtcd(tmp_path, "--auth-token-ttl=1")
    await asyncio.to_thread(server.start)
    try:
        await _enable_auth(server.client_port, "pw")
        port = server.client_port
        async with EtcdKV(f"etcd://root:pw@127.0.0.1:{port}") as kv:
            await kv.put("k", b"v")
            await asyncio.sleep(3)  # the simple token expires after 1 s unused
            got = await kv.get("k")
            assert got is not None
            assert got.value == b"v"
            events = kv.watch("")
            assert (await next_event(events)).type is EventType.RESET
            await events.aclose()  # type: ignore[attr-defined]
        async with EtcdKV(f"etcd://root:wrong@127.0.0.1:{port}", timeout=2) as kv:
            with pytest.raises(BackendUnavailableError) as caught:
                await kv.get("k")
            assert "wrong" not in str(caught.value)
            with pytest.raises(BackendUnavailableError):
                await next_event(kv.watch(""))  # a watch does not retry bad credentials
    finally:
        await asyncio.to_thread(server.kill)
