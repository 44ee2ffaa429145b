"""nats:// passes the broker contract against a real JetStream server, and survives crashes.

Every test uses its own namespace and deletes the streams it made. Waits are real (the
server keeps the ack timers), every wait is bounded, and no test asserts a duration.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import textwrap
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest

from distsys.errors import BackendUnavailableError, InvalidArgumentError
from distsys.mq import (
    HEADER_ATTEMPTS,
    HEADER_DEAD_REASON,
    HEADER_ERROR,
    Broker,
    Outgoing,
    dead_letter_topic,
    open_broker,
)
from distsys.mq._nats import NATSBroker
from distsys.mq._nats_wire import Names, decode_headers, encode_headers
from distsys.testing import BrokerContract
from tests.conftest import BACKENDS

pytestmark = pytest.mark.backend("nats")

HOST, PORT = BACKENDS["nats"]
URL = f"nats://{HOST}:{PORT}"
BOUND = 30.0  # seconds any single scenario may take before it counts as hung


def _namespace() -> str:
    return f"t{uuid.uuid4().hex[:20]}"


async def _delete_namespace(namespace: str) -> None:
    """Delete every stream of ``namespace`` (and only those: the server is shared)."""
    names = Names(namespace)
    nc = await nats.connect(URL, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream()
        offset = 0
        doomed = []
        while True:
            infos = await js.streams_info(offset)
            if not infos:
                break
            doomed += [i.config.name for i in infos if i.config.name and names.owns(i.config.name)]
            offset += len(infos)
        for name in doomed:
            await js.delete_stream(name)
    finally:
        await nc.close()


@pytest.fixture
async def namespaces() -> AsyncIterator[list[str]]:
    """Namespaces a test used; their streams are deleted afterwards."""
    used: list[str] = []
    yield used
    for namespace in used:
        await _delete_namespace(namespace)


class TestNATSBroker(BrokerContract):
    ack_wait = 1.5
    quiet = 0.3

    @pytest.fixture(autouse=True)
    def _cleanup(self, namespaces: list[str]) -> None:
        self.namespaces = namespaces

    async def open_broker(self) -> Broker:
        namespace = _namespace()
        self.namespaces.append(namespace)
        return NATSBroker(URL, namespace=namespace)

    async def elapse(self, broker: Broker, seconds: float) -> None:
        await asyncio.sleep(seconds)


# ------------------------------------------------------------------- the layout on NATS


def test_names_keep_namespaces_apart() -> None:
    assert Names("app").stream("orders") == "app_orders"
    assert Names("app").subject("orders") == "app.orders"
    assert Names("app").delay_stream("orders") == "app-delay_orders"
    # Namespaces are letters and digits, so "_" after one cannot belong to it.
    assert Names("a").stream("b_c") != Names("ab").stream("c")
    assert Names("app").owns("app_orders")
    assert Names("app").owns("app-delay_orders")
    assert not Names("app").owns("apple_orders")


def test_headers_that_nats_would_alter_come_back_exactly() -> None:
    odd = {
        "trace": "abc",
        "multi\nline": "x",
        "spaced": "  padded  ",
        "empty": "",
        "Nats-Msg-Id": "not for the server",
        "x-distsys-key": "a user's header of that name",
        "tb": "Traceback:\n  line 1\r\n",
        "ünï": "çödé",
    }
    encoded = encode_headers(Outgoing(b"", dict(odd), key="k\ny"))
    assert encoded is not None
    assert "Nats-Msg-Id" not in encoded
    assert all("\n" not in v and v == v.strip() for v in encoded.values())
    decoded = decode_headers(encoded)
    assert (decoded.headers, decoded.key) == (odd, "k\ny")
    assert encode_headers(Outgoing(b"")) is None


def test_settings_come_from_the_url_and_arguments_win() -> None:
    broker = NATSBroker("nats://h:4333?namespace=app&storage=memory&max_age=60", max_age=0)
    settings = broker.settings
    assert (settings.namespace, settings.storage, settings.max_age) == ("app", "memory", 0.0)
    assert open_broker("nats://127.0.0.1:4222").__class__ is NATSBroker
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("nats://h?namespace=has_underscore", {}, "namespace"),
        ("nats://h", {"namespace": "a.b"}, "namespace"),
        ("nats://h?storage=disk", {}, "storage"),
        ("nats://h?replicas=9", {}, "replicas"),
        ("nats://h?timeout=0", {}, "timeout"),
        ("nats://h?confirm_acks=maybe", {}, "confirm_acks"),
        ("nats://h?colour=red", {}, "url"),
        ("nats://h/path", {}, "url"),
        ("redis://h", {}, "url"),
        ("nats://h", {"reconnect_attempts": 0}, "reconnect_attempts"),
        ("nats://h", {"max_age": -1}, "max_age"),
    ]
    for url, options, field in cases:
        with pytest.raises(InvalidArgumentError) as caught:
            NATSBroker(url, **options)
        assert caught.value.field == field, (url, options)


# ------------------------------------------------------------------------- on the server


async def test_odd_headers_and_keys_survive_the_server(namespaces: list[str]) -> None:
    namespaces.append(namespace := _namespace())
    headers = {"multi\nline": "a\r\nb", "padded": " x ", "Nats-Msg-Id": "1", "plain": "p"}
    async with NATSBroker(URL, namespace=namespace) as broker:
        await broker.publish_batch("t", [Outgoing(b"a", headers, key="k 1"), b"b"])
        async with broker.subscribe("t", "g", ack_wait=5) as sub:
            first = await asyncio.wait_for(sub.receive(), BOUND)
            second = await asyncio.wait_for(sub.receive(), BOUND)
        assert first is not None
        assert second is not None
        assert (first.headers, first.key) == (headers, "k 1")
        assert (second.headers, second.key) == ({}, None)
        with pytest.raises(InvalidArgumentError) as caught:  # over the server's max_payload
            await broker.publish("t", b"x" * (64 * 1024 * 1024 + 1))
        assert caught.value.field == "payload"


async def test_a_delayed_message_is_new_in_its_topic_and_seen_from_elsewhere(
    namespaces: list[str],
) -> None:
    namespaces.append(namespace := _namespace())
    async with (
        NATSBroker(URL, namespace=namespace) as broker,
        NATSBroker(URL, namespace=namespace) as onlooker,
    ):
        before = broker.wall()
        message_id = await broker.publish("t", b"later", delay=0.5)
        assert message_id.startswith("d")
        depth = await onlooker.depth("t", "g")  # no subscriber anywhere yet
        assert (depth.waiting, depth.delayed) == (0, 1)
        async with broker.subscribe("t", "g", ack_wait=5) as sub:
            delivery = await asyncio.wait_for(sub.receive(), BOUND)
            assert delivery is not None
            assert (delivery.id, delivery.attempt, delivery.payload) == (message_id, 1, b"later")
            assert before - 1 <= delivery.published_at <= broker.wall()
            assert await delivery.ack()
        assert broker.statistics().moved == 1
        assert (await onlooker.depth("t", "g")).delayed == 0


async def test_confirmed_acks_are_applied_when_ack_returns(namespaces: list[str]) -> None:
    namespaces.append(namespace := _namespace())
    async with NATSBroker(f"{URL}?confirm_acks=true", namespace=namespace) as broker:
        await broker.publish_batch("t", [b"1", b"2"])
        async with broker.subscribe("t", "g", ack_wait=5) as sub:
            for _ in range(2):
                delivery = await asyncio.wait_for(sub.receive(), BOUND)
                assert delivery is not None
                assert await delivery.ack()
            depth = await broker.depth("t", "g")
            assert (depth.waiting, depth.in_flight, depth.delayed) == (0, 0, 0)
        stats = broker.statistics()
        assert (stats.namespace, stats.connected, stats.connections) == (namespace, True, 1)


async def test_a_nack_error_reaches_a_dead_letter_that_a_timeout_caused(
    namespaces: list[str],
) -> None:
    """JetStream cannot store the error with the message; this process remembers it."""
    namespaces.append(namespace := _namespace())
    async with NATSBroker(URL, namespace=namespace) as broker:
        await broker.publish("t", b"bad")
        sub = broker.subscribe("t", "g", ack_wait=1.0, max_deliveries=2)
        first = await asyncio.wait_for(sub.receive(), BOUND)
        assert first is not None
        assert await first.nack(error="ValueError: first try")
        second = await asyncio.wait_for(sub.receive(), BOUND)
        assert second is not None
        assert second.attempt == 2
        assert second.headers[HEADER_ERROR] == "ValueError: first try"
        await sub.aclose()  # the second handler dies: its ack wait runs out
        async with broker.subscribe("t", "g", ack_wait=1.0, max_deliveries=2) as again:
            async with asyncio.timeout(BOUND):
                while again.statistics().dead_lettered == 0:
                    assert await again.receive(timeout=0.5) is None
        async with broker.subscribe("t-dead", "ops", ack_wait=5) as dead:
            letter = await asyncio.wait_for(dead.receive(), BOUND)
            assert letter is not None
            assert letter.headers[HEADER_ERROR] == "ValueError: first try"
            assert letter.headers[HEADER_ATTEMPTS] == "3"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_server_that_is_down_fails_publish_naming_no_password() -> None:
    url = f"nats://user:s3cret@127.0.0.1:{_free_port()}"
    async with NATSBroker(url, connect_timeout=1.0) as broker:
        with pytest.raises(BackendUnavailableError) as caught:
            await asyncio.wait_for(broker.publish("t", b"x"), BOUND)
        assert "s3cret" not in str(caught.value)
        assert "***" in caught.value.url
        with pytest.raises(BackendUnavailableError):
            await asyncio.wait_for(broker.ping(), BOUND)


# ------------------------------------------------------------------------------ crashes

CONSUMER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from distsys.mq._nats import NATSBroker

    async def main(url, namespace, topic, mode, count):
        broker = NATSBroker(url, namespace=namespace)
        sub = broker.subscribe(topic, "g", ack_wait=1.5, max_deliveries=2, prefetch=int(count))
        if mode == "hold":  # take `count` messages, then hang mid-handling until killed
            for _ in range(int(count)):
                delivery = await sub.receive(timeout=20)
                if delivery is None:
                    sys.exit(3)
                print(delivery.payload.decode(), flush=True)
            print("holding", flush=True)
            await asyncio.Event().wait()
        while True:  # "poison": handle messages; the poison one kills the process
            delivery = await sub.receive(timeout=20)
            if delivery is None:
                sys.exit(3)
            if delivery.payload == b"poison":
                print("crash", delivery.attempt, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            await delivery.ack()

    asyncio.run(main(*sys.argv[1:]))
    """
)


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", CONSUMER, URL, *args, stdout=asyncio.subprocess.PIPE
    )


async def _line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), BOUND)
    assert line, f"the consumer exited with {await process.wait()}"
    return line.decode().strip()


async def test_a_killed_consumers_messages_go_to_a_survivor_and_are_acked_once(
    namespaces: list[str],
) -> None:
    namespaces.append(namespace := _namespace())
    payloads = [f"m{i}" for i in range(40)]
    async with NATSBroker(URL, namespace=namespace) as broker:
        await broker.publish_batch("jobs", [p.encode() for p in payloads])
        victim = await _spawn(namespace, "jobs", "hold", "5")
        try:
            held = [await _line(victim) for _ in range(5)]
            assert await _line(victim) == "holding"
            victim.send_signal(signal.SIGKILL)
            assert await asyncio.wait_for(victim.wait(), BOUND) == -signal.SIGKILL
        finally:
            if victim.returncode is None:
                victim.kill()
                await victim.wait()
        acked: Counter[str] = Counter()
        redelivered = []
        async with broker.subscribe("jobs", "g", ack_wait=1.5, prefetch=8) as survivor:
            async with asyncio.timeout(BOUND):
                while len(acked) < len(payloads):
                    delivery = await survivor.receive()
                    assert delivery is not None
                    if delivery.attempt > 1:
                        redelivered.append(delivery.payload.decode())
                    if await delivery.ack():
                        acked[delivery.payload.decode()] += 1
            assert await survivor.receive(timeout=0.5) is None
        assert acked == Counter(payloads)  # every message acked exactly once by the group
        assert sorted(redelivered) == sorted(held)  # the duplicates: the victim's messages


async def test_a_message_that_kills_its_consumers_is_dead_lettered(
    namespaces: list[str],
) -> None:
    namespaces.append(namespace := _namespace())
    async with NATSBroker(URL, namespace=namespace) as broker:
        await broker.publish_batch("jobs", [b"poison", b"fine1", b"fine2"])
        for attempt in (1, 2):  # max_deliveries=2: two consumers die on it
            process = await _spawn(namespace, "jobs", "poison", "1")
            try:
                assert await _line(process) == f"crash {attempt}"
                assert await asyncio.wait_for(process.wait(), BOUND) == -signal.SIGKILL
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        async with broker.subscribe("jobs", "g", ack_wait=1.5, max_deliveries=2) as sub:
            async with asyncio.timeout(BOUND):
                while sub.statistics().dead_lettered == 0:
                    delivery = await sub.receive(timeout=1.0)
                    assert delivery is None or delivery.payload != b"poison"
                    if delivery is not None:
                        await delivery.ack()
        async with broker.subscribe("jobs-dead", "ops", ack_wait=5) as dead:
            letter = await asyncio.wait_for(dead.receive(), BOUND)
            assert letter is not None
            assert letter.payload == b"poison"
            assert letter.headers[HEADER_DEAD_REASON] == "max deliveries"
            assert letter.headers[HEADER_ATTEMPTS] == "3"
            await letter.ack()
        assert dead_letter_topic("jobs") == "jobs-dead"


# ------------------------------------------------------------------------ server restart


async def _serve(port: int, store: str) -> asyncio.subprocess.Process:
    assert NATS_SERVER is not None
    server = await asyncio.create_subprocess_exec(
        NATS_SERVER,
        *("-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(BOUND):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return server


async def _kill(server: asyncio.subprocess.Process) -> None:
    if server.returncode is None:
        server.kill()
        await asyncio.wait_for(server.wait(), BOUND)


NATS_SERVER = next(
    (
        p
        for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server")
        if os.path.exists(p)
    ),
    None,
)


@pytest.mark.skipif(NATS_SERVER is None, reason="needs a nats-server binary to restart")
async def test_a_subscription_rides_out_a_server_restart(tmp_path: Path) -> None:
    port, store = _free_port(), str(tmp_path)
    server = await _serve(port, store)
    try:
        async with NATSBroker(f"nats://127.0.0.1:{port}", namespace="restart") as broker:
            await broker.publish("t", b"before")
            async with broker.subscribe("t", "g", ack_wait=5) as sub:
                first = await asyncio.wait_for(sub.receive(), BOUND)
                assert first is not None
                assert first.payload == b"before"
                await first.ack()
                await _kill(server)
                server = await _serve(port, store)  # same store: the stream and group live on
                async with asyncio.timeout(BOUND):
                    while True:
                        try:
                            await broker.publish("t", b"after")
                            break
                        except BackendUnavailableError:
                            await asyncio.sleep(0.2)
                    # "before" may come again if its ack was lost with the server.
                    while True:
                        delivery = await sub.receive(timeout=1.0)
                        if delivery is not None:
                            await delivery.ack()
                            if delivery.payload == b"after":
                                break
        assert broker.statistics().reconnects + broker.statistics().connections >= 2
    finally:
        await _kill(server)
