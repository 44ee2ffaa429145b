"""redis:// passes the broker contract on a real server, and survives what real consumers do.

Every test works in a namespace of its own on the shared server and deletes its keys
afterwards. Crash tests run consumers in child processes and kill them with SIGKILL; the
test that restarts a server runs a redis-server of its own on another port.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from distsys.errors import BackendUnavailableError, InvalidArgumentError
from distsys.mq import (
    HEADER_ATTEMPTS,
    HEADER_DEAD_REASON,
    HEADER_ERROR,
    Broker,
    Delivery,
    Depth,
    Outgoing,
    Subscription,
    dead_letter_topic,
    open_broker,
)
from distsys.mq._redis import RedisBroker
from distsys.testing import BrokerContract
from tests.redis_keys import HOST, PORT, purge, url_for
from tests.servers import OwnRedis, free_port

pytestmark = pytest.mark.backend("redis")

WAIT = 15.0  # a safety net: what is awaited normally comes at once
ACK_WAIT = 1.0


@pytest.fixture
async def broker(namespace: str) -> AsyncIterator[RedisBroker]:
    opened = RedisBroker(url_for(namespace))
    yield opened
    await opened.aclose()


async def arrive(sub: Subscription) -> Delivery:
    async with asyncio.timeout(WAIT):
        delivery = await sub.receive()
    assert delivery is not None
    return delivery


class TestRedisBroker(BrokerContract):
    ack_wait = ACK_WAIT

    @pytest.fixture(autouse=True)
    def _use_namespace(self, namespace: str) -> None:
        self.namespace = namespace

    async def open_broker(self) -> Broker:
        return RedisBroker(url_for(self.namespace))

    async def elapse(self, broker: Broker, seconds: float) -> None:
        await asyncio.sleep(seconds)  # deadlines and delays run on the server's clock


async def raw_client(port: int = PORT) -> Redis:
    return Redis(host=HOST, port=port, db=0)


async def blocked_in_server(client: Redis, namespace: str) -> None:
    """Wait until a connection of ``namespace``'s broker is blocked in XREADGROUP."""

    async def blocked() -> bool:
        return any(
            c["name"].startswith(f"distsys-mq:{namespace}:")
            and c.get("cmd") == "xreadgroup"
            and "b" in c["flags"]
            for c in await client.client_list()
        )

    await eventually(blocked)


async def eventually(check: Any, *, timeout: float = WAIT) -> None:
    """Wait until the async ``check()`` is true (a safety net, not a timing)."""
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)  # polling a server: nothing to wait on here


# ---------------------------------------------------------------- configuration


async def test_a_namespace_with_spaces_works(broker: RedisBroker) -> None:
    spaced = RedisBroker(url_for(f"{broker.statistics().namespace}%20with%20spaces"))
    try:
        await spaced.publish("t", b"x")
        async with spaced.subscribe("t", "g", ack_wait=ACK_WAIT) as sub:
            assert await (await arrive(sub)).ack()
    finally:
        await spaced.aclose()
        await purge(f"{broker.statistics().namespace} with spaces")


async def test_open_broker_chooses_redis_by_scheme(namespace: str) -> None:
    broker = open_broker(url_for(namespace))
    try:
        assert isinstance(broker, RedisBroker)
        await broker.ping()
        assert broker.statistics().namespace == namespace
    finally:
        await broker.aclose()


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("redis://127.0.0.1/0?namespace=a{b}", "namespace"),
        ("redis://127.0.0.1/zero", "db"),
        ("redis://127.0.0.1/0?nmespace=x", "url"),
        ("memory://", "url"),
    ],
)
def test_a_bad_url_is_refused_naming_the_field(url: str, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        RedisBroker(url)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("option", "value"),
    [("timeout", 0), ("timeout", "5"), ("trim_interval", -1.0), ("max_connections", 0)],
)
def test_bad_options_are_refused_naming_them(option: str, value: object) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        RedisBroker("redis://127.0.0.1", **{option: value})  # type: ignore[arg-type]
    assert caught.value.field == option


async def test_a_server_that_is_down_raises_backend_unavailable() -> None:
    url = url_for("down", port=free_port(), auth="user:s3cret@")
    broker = RedisBroker(url, timeout=1.0)
    try:
        for operation in (
            broker.publish("t", b"x"),
            broker.publish("t", b"x", delay=1.0),
            broker.publish_batch("t", [b"x", b"y"]),
            broker.depth("t", "g"),
            broker.create_group("t", "g"),
            broker.ping(),
        ):
            with pytest.raises(BackendUnavailableError) as caught:
                await operation
            assert "s3cret" not in str(caught.value)
            assert "s3cret" not in caught.value.url
    finally:
        await broker.aclose()


# ---------------------------------------------------------------- the data model


async def test_a_topic_is_a_stream_and_a_group_a_consumer_group(
    broker: RedisBroker, namespace: str
) -> None:
    await broker.create_group("orders", "billing")
    message_id = await broker.publish("orders", b"body", headers={"h": "1"}, key="k7")
    client = await raw_client()
    try:
        stream = f"{{{namespace}}}stream:orders"
        entries: Any = await client.xrange(stream)
        [(entry_id, fields)] = entries
        assert entry_id.decode() == message_id
        assert fields == {b"p": b"body", b"h": b'{"h":"1"}', b"k": b"k7"}
        [group] = await client.xinfo_groups(stream)
        assert (group["name"], group["lag"]) == (b"billing", 1)
    finally:
        await client.aclose()


async def test_published_at_and_ids_of_delayed_messages_in_a_batch(broker: RedisBroker) -> None:
    before = time.time()
    ids = await broker.publish_batch("t", [Outgoing(b"later", delay=0.3), b"now"])
    async with broker.subscribe("t", "g", ack_wait=ACK_WAIT) as sub:
        got = [await arrive(sub), await arrive(sub)]
        assert [(d.payload, d.id) for d in got] == [(b"now", ids[1]), (b"later", ids[0])]
        for d in got:
            assert before - 5 < d.published_at < time.time() + 5  # the server's clock
            assert await d.ack()


async def test_a_batch_is_stored_whole_or_not_at_all(broker: RedisBroker, namespace: str) -> None:
    client = await raw_client()
    try:
        await client.set(f"{{{namespace}}}delayed:t", "in the way")  # breaks delayed publish
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await broker.publish_batch("t", [b"first", Outgoing(b"later", delay=1.0)])
        assert await client.exists(f"{{{namespace}}}stream:t") == 0
    finally:
        await client.aclose()


# ---------------------------------------------------------------- redelivery, stale acks


async def test_a_late_ack_after_the_same_consumer_reclaimed_it_is_stale(
    broker: RedisBroker,
) -> None:
    await broker.publish("t", b"slow")
    async with broker.subscribe("t", "g", ack_wait=ACK_WAIT) as sub:
        first = await arrive(sub)
        await asyncio.sleep(ACK_WAIT + 0.3)
        again = await arrive(sub)  # reclaimed by this very consumer
        assert (again.id, again.attempt) == (first.id, 2)
        assert await first.ack() is False  # the old delivery must not ack the new one
        assert (await broker.depth("t", "g")).in_flight == 1
        assert await again.ack() is True
        assert sub.statistics().stale_acks == 1


async def test_what_a_closed_subscription_had_fetched_comes_back(broker: RedisBroker) -> None:
    total = 30
    await broker.publish_batch("t", [f"{i}".encode() for i in range(total)])
    handled: Counter[bytes] = Counter()
    first = broker.subscribe("t", "g", ack_wait=ACK_WAIT, prefetch=5)
    for _ in range(12):  # quick handling: it reads the next batch ahead meanwhile
        delivery = await arrive(first)
        assert await delivery.ack()
        handled[delivery.payload] += 1
    await first.aclose()  # with a batch buffered, and maybe one read ahead
    async with broker.subscribe("t", "g", ack_wait=ACK_WAIT, prefetch=5) as second:
        while len(handled) < total:
            delivery = await arrive(second)
            if await delivery.ack():
                handled[delivery.payload] += 1
    assert set(handled) == {f"{i}".encode() for i in range(total)}
    assert max(handled.values()) == 1
    assert await broker.depth("t", "g") == Depth(0, 0, 0)


async def test_depth_counts_deliveries_past_their_deadline_as_waiting(
    broker: RedisBroker,
) -> None:
    await broker.publish("t", b"x")
    async with broker.subscribe("t", "g", ack_wait=ACK_WAIT) as sub:
        delivery = await arrive(sub)
        assert await broker.depth("t", "g") == Depth(waiting=0, in_flight=1)
        await asyncio.sleep(ACK_WAIT + 0.3)
        assert await broker.depth("t", "g") == Depth(waiting=1, in_flight=0)
        assert await delivery.ack() is True  # nobody reclaimed it: still this delivery


async def test_a_nack_error_survives_a_crash_into_the_dead_letter(broker: RedisBroker) -> None:
    await broker.publish("t", b"flaky")
    sub = broker.subscribe("t", "g", ack_wait=ACK_WAIT, max_deliveries=2)
    first = await arrive(sub)
    assert await first.nack(error="ValueError: boom")
    second = await arrive(sub)
    assert second.attempt == 2
    assert second.headers[HEADER_ERROR] == "ValueError: boom"
    await sub.aclose()  # the consumer dies while handling the second delivery
    async with broker.subscribe("t", "g", ack_wait=ACK_WAIT, max_deliveries=2) as heir:
        async with asyncio.timeout(WAIT):
            while heir.statistics().dead_lettered == 0:
                assert await heir.receive(timeout=0.2) is None
    async with broker.subscribe(dead_letter_topic("t"), "ops") as dead:
        letter = await arrive(dead)
        assert letter.headers[HEADER_DEAD_REASON] == "max deliveries"
        assert letter.headers[HEADER_ATTEMPTS] == "3"
        assert letter.headers[HEADER_ERROR] == "ValueError: boom"
        await letter.ack()


async def test_an_entry_distsys_did_not_write_is_dead_lettered_as_malformed(
    broker: RedisBroker, namespace: str
) -> None:
    client = await raw_client()
    try:
        await client.xadd(f"{{{namespace}}}stream:t", {"x": "y"})
    finally:
        await client.aclose()
    await broker.publish("t", b"good")
    async with broker.subscribe("t", "g", ack_wait=ACK_WAIT) as sub:
        delivery = await arrive(sub)
        assert delivery.payload == b"good"
        assert await delivery.ack()
        assert sub.statistics().dead_lettered == 1
    async with broker.subscribe(dead_letter_topic("t"), "ops") as dead:
        letter = await arrive(dead)
        assert letter.headers[HEADER_DEAD_REASON] == "malformed"
        assert letter.headers["x"] == "y"
        await letter.ack()


# ---------------------------------------------------------------- retention, consumers


async def test_entries_are_deleted_once_every_group_has_acked_them(namespace: str) -> None:
    broker = RedisBroker(url_for(namespace), trim_interval=0.05)
    client = await raw_client()
    stream = f"{{{namespace}}}stream:t"

    async def length_is(n: int) -> bool:
        return bool(await client.xlen(stream) == n)

    try:
        await broker.create_group("t", "a")
        await broker.create_group("t", "b")
        await broker.publish_batch("t", [f"{i}".encode() for i in range(10)])
        a = broker.subscribe("t", "a", ack_wait=ACK_WAIT)
        b = broker.subscribe("t", "b", ack_wait=ACK_WAIT, prefetch=5)
        for _ in range(10):
            assert await (await arrive(a)).ack()
        for _ in range(5):
            assert await (await arrive(b)).ack()
        await a.receive(timeout=0.5)  # the fetches that follow trim the stream
        await eventually(lambda: length_is(5))  # b still needs the last five
        for _ in range(5):
            assert await (await arrive(b)).ack()
        await b.receive(timeout=0.5)
        await eventually(lambda: length_is(0))
        for sub in (a, b):
            await sub.aclose()
        assert await client.xinfo_consumers(stream, "a") == []  # closed holding nothing
    finally:
        await broker.aclose()
        await client.aclose()


async def test_a_nacked_message_is_kept_for_its_group_while_others_trim(
    namespace: str,
) -> None:
    broker = RedisBroker(url_for(namespace), trim_interval=0.05)
    try:
        await broker.create_group("t", "a")
        await broker.publish("t", b"retry me")
        async with broker.subscribe("t", "a", ack_wait=ACK_WAIT) as a:
            delivery = await arrive(a)
            assert await delivery.nack(delay=0.5)  # neither pending nor undelivered now
            async with broker.subscribe("t", "b", ack_wait=ACK_WAIT) as b:
                assert await (await arrive(b)).ack()  # b's fetches trim
                await b.receive(timeout=0.3)
            again = await arrive(a)
            assert (again.payload, again.attempt) == (b"retry me", 2)
            assert await again.ack()
    finally:
        await broker.aclose()


# ---------------------------------------------------------------- connections


async def test_closing_a_subscription_ends_a_receive_blocked_in_the_server(
    broker: RedisBroker, namespace: str
) -> None:
    sub = broker.subscribe("t", "g", ack_wait=ACK_WAIT)
    waiting = asyncio.ensure_future(sub.receive(timeout=WAIT))
    client = await raw_client()
    try:
        await blocked_in_server(client, namespace)
    finally:
        await client.aclose()
    await sub.aclose()
    async with asyncio.timeout(WAIT):
        with pytest.raises(BackendUnavailableError):
            await waiting


async def test_a_subscription_reconnects_when_its_connection_is_killed(
    broker: RedisBroker, namespace: str
) -> None:
    async with broker.subscribe("t", "g", ack_wait=ACK_WAIT) as sub:
        waiting = asyncio.ensure_future(sub.receive(timeout=WAIT))
        client = await raw_client()
        try:

            async def killed() -> bool:
                mine = [
                    c
                    for c in await client.client_list()
                    if c["name"].startswith(f"distsys-mq:{namespace}:")
                ]
                for c in mine:
                    await client.client_kill_filter(_id=c["id"])
                return bool(mine)

            await eventually(killed)
        finally:
            await client.aclose()
        await broker.publish("t", b"after the cut")
        async with asyncio.timeout(WAIT):
            delivery = await waiting
        assert delivery is not None
        assert delivery.payload == b"after the cut"
        assert await delivery.ack()
        assert broker.statistics().reconnects >= 1


# ---------------------------------------------------------------- crashes

CONSUMER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from distsys.mq import open_broker

    async def main():
        url, topic, mode, ack_wait = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
        broker = open_broker(url)
        sub = broker.subscribe(topic, "workers", ack_wait=ack_wait, max_deliveries=2, prefetch=5)
        if mode == "poison":  # the message kills whoever handles it
            delivery = await asyncio.wait_for(sub.receive(), 30)
            print("attempt", delivery.attempt, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        for _ in range(int(mode)):  # ack some, then hang on the next one
            delivery = await asyncio.wait_for(sub.receive(), 30)
            assert await delivery.ack()
            print("acked", delivery.payload.decode(), flush=True)
        delivery = await asyncio.wait_for(sub.receive(), 30)
        print("holding", delivery.payload.decode(), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


async def start_consumer(url: str, topic: str, mode: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", CONSUMER, url, topic, mode, str(ACK_WAIT),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def read_line(process: asyncio.subprocess.Process) -> list[str]:
    assert process.stdout is not None
    async with asyncio.timeout(WAIT * 2):  # includes the child's start-up
        line = await process.stdout.readline()
    assert line, f"the consumer exited with {await process.wait()}"
    return line.decode().split()


async def test_a_consumer_killed_mid_handling_has_its_messages_redelivered(
    broker: RedisBroker, namespace: str
) -> None:
    total = 40
    await broker.create_group("jobs", "workers")
    await broker.publish_batch("jobs", [f"m{i}".encode() for i in range(total)])
    child = await start_consumer(url_for(namespace), "jobs", "7")
    acked_by_child: set[str] = set()
    try:
        while True:
            word, payload = await read_line(child)
            if word == "holding":
                break
            acked_by_child.add(payload)
    finally:
        child.kill()  # SIGKILL, while it holds a delivery and four more prefetched
        await child.wait()
    assert len(acked_by_child) == 7
    acked: Counter[str] = Counter()
    fresh: Counter[str] = Counter()  # first deliveries to the survivor
    redelivered = 0
    async with broker.subscribe("jobs", "workers", ack_wait=ACK_WAIT) as survivor:
        async with asyncio.timeout(WAIT):
            while len(acked) + len(acked_by_child) < total:
                delivery = await arrive(survivor)
                if delivery.attempt > 1:
                    redelivered += 1
                else:
                    fresh[delivery.payload.decode()] += 1
                if await delivery.ack():
                    acked[delivery.payload.decode()] += 1
    assert set(acked) | acked_by_child == {f"m{i}" for i in range(total)}
    assert not set(acked) & acked_by_child  # nothing acked by both
    assert max(acked.values()) == 1  # and nothing twice
    assert not set(fresh) & acked_by_child  # duplicates come only from redelivery:
    assert max(fresh.values()) == 1
    assert redelivered >= 1  # what the dead consumer held came back
    assert await broker.depth("jobs", "workers") == Depth(0, 0, 0)


async def test_a_message_that_kills_every_consumer_is_dead_lettered(
    broker: RedisBroker, namespace: str
) -> None:
    await broker.publish("jobs", b"poison")
    for attempt in (1, 2):  # max_deliveries=2: two consumers die of it
        child = await start_consumer(url_for(namespace), "jobs", "poison")
        assert await read_line(child) == ["attempt", str(attempt)]
        assert await child.wait() == -signal.SIGKILL
    async with broker.subscribe("jobs", "workers", ack_wait=ACK_WAIT, max_deliveries=2) as sub:
        async with asyncio.timeout(WAIT):
            while sub.statistics().dead_lettered == 0:
                assert await sub.receive(timeout=0.2) is None  # never handed to anyone
    async with broker.subscribe(dead_letter_topic("jobs"), "ops") as dead:
        letter = await arrive(dead)
        assert letter.payload == b"poison"
        assert (letter.headers[HEADER_DEAD_REASON], letter.headers[HEADER_ATTEMPTS]) == (
            "max deliveries",
            "3",
        )
        await letter.ack()


# ---------------------------------------------------------------- a server that restarts


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_a_subscription_carries_on_after_the_server_restarts(own_server: OwnRedis) -> None:
    await own_server.ready()
    broker = RedisBroker(own_server.url(namespace="restart"), timeout=1.0)
    try:
        async with broker.subscribe("t", "g", ack_wait=ACK_WAIT) as sub:
            await broker.publish("t", b"before")
            assert await (await arrive(sub)).ack()
            waiting = asyncio.ensure_future(sub.receive(timeout=WAIT))
            client = Redis(host=HOST, port=own_server.port, password=own_server.password)
            try:
                await blocked_in_server(client, "restart")
            finally:
                await client.aclose()
            own_server.kill()  # without persistence: the stream and the group are lost
            own_server.start()
            await own_server.ready()
            async with asyncio.timeout(WAIT):
                while True:  # a publish on a connection that died raises; the caller retries
                    try:
                        await broker.publish("t", b"after")
                        break
                    except BackendUnavailableError:
                        await asyncio.sleep(0.05)
                delivery = await waiting
            assert delivery is not None
            assert delivery.payload == b"after"
            assert await delivery.ack()
            assert broker.statistics().reconnects >= 1
    finally:
        await broker.aclose()
