"""The fast path (``_fast.py``): which requests take it, and how each way out of it ends."""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Iterator

import pytest

from distsys.gateway import Gateway
from distsys.registry import Instance, Registry, open_registry
from tests.gateway.client import Client, get
from tests.gateway.conftest import admin_port, config, eventually, port_of, running
from tests.gateway.upstream import Upstream


class _WorkerCalls(logging.Handler):
    """Notes the path of each request the worker task answers (a debug log record)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.paths: list[bytes] = []

    def emit(self, record: logging.LogRecord) -> None:
        path = getattr(record, "path", None)
        if isinstance(path, bytes):
            self.paths.append(path)


@pytest.fixture
def worker_calls() -> Iterator[list[bytes]]:
    """The paths of the requests the worker task answered (the general path)."""
    logger = logging.getLogger("distsys.gateway")
    handler = _WorkerCalls()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.paths
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def _errors(gateway: Gateway) -> dict[str, int]:
    stats = (await get(admin_port(gateway), "/stats")).json()
    errors: dict[str, int] = stats["routes"]["/"]["errors"]
    return errors


async def _in_flight(gateway: Gateway) -> int:
    stats = (await get(admin_port(gateway), "/stats")).json()
    return int(stats["routes"]["/"]["in_flight"])


async def test_small_answers_to_requests_without_a_body_take_the_fast_path(
    registry: Registry, worker_calls: list[bytes]
) -> None:
    cfg = config({"prefix": "/", "service": "other"})
    async with running(cfg, registry) as gateway, Client(port_of(gateway)) as client:
        first = await client.request("GET", "/hello")  # no pooled connection yet: the worker
        assert worker_calls == [b"/hello"]
        replies = [await client.request("GET", "/hello") for _ in range(5)]
        head = await client.request("HEAD", "/hello")
        missing = await client.request("GET", "/x/../y")
        assert worker_calls == [b"/hello"]  # none of these woke the worker task
        assert [r.status for r in (first, *replies)] == [200] * 6
        assert {r.body for r in replies} == {b"hello from u0"}
        assert replies[0].headers["content-length"] == "13"
        assert replies[0].headers["x-request-id"]
        assert head.status == 200
        assert missing.status == 400
        assert await _in_flight(gateway) == 0


async def test_bodies_and_streamed_answers_take_the_worker_task(
    registry: Registry, worker_calls: list[bytes]
) -> None:
    cfg = config({"prefix": "/", "service": "other"})
    async with running(cfg, registry) as gateway, Client(port_of(gateway)) as client:
        await client.request("GET", "/hello")
        worker_calls.clear()
        posted = await client.request("POST", "/count", body=b"x" * 1000)
        assert (posted.status, posted.body) == (200, b"1000")
        assert worker_calls == [b"/count"]
        # The answer's head tells: chunked, or longer than the read buffer (64 KiB).
        chunked = await client.request("GET", "/big?size=5000&chunked=1")
        large = await client.request("GET", "/big?size=200000")
        assert (chunked.status, len(chunked.body)) == (200, 5000)
        assert chunked.headers["transfer-encoding"] == "chunked"
        assert (large.status, len(large.body)) == (200, 200000)
        assert large.headers["content-length"] == "200000"
        # Both began on the fast path and were handed over at their head.
        assert worker_calls == [b"/count", b"/big", b"/big"]
        small = await client.request("GET", "/big?size=60000")
        assert (small.status, len(small.body)) == (200, 60000)
        assert worker_calls == [b"/count", b"/big", b"/big"]
        assert await _in_flight(gateway) == 0


async def test_pipelined_requests_behind_a_fast_one_are_answered_in_order(
    registry: Registry,
) -> None:
    cfg = config({"prefix": "/", "service": "other"})
    async with running(cfg, registry) as gateway, Client(port_of(gateway)) as client:
        await client.request("GET", "/hello")  # a pooled connection: the next is fast
        data = b"".join(
            b"GET /slow?ms=%d HTTP/1.1\r\nHost: t\r\nX-Request-ID: p%d\r\n\r\n" % (ms, i)
            for i, ms in enumerate((40, 1, 1, 20))
        )
        await client.send(data)
        ids = [(await client.reply()).headers["x-request-id"] for _ in range(4)]
        assert ids == ["p0", "p1", "p2", "p3"]
        after = await client.request("GET", "/hello")
        assert after.status == 200


async def test_an_answer_cut_short_is_retried(
    registry: Registry, upstreams: list[Upstream], worker_calls: list[bytes]
) -> None:
    # Nothing of a fast answer reaches the client before its last byte, so an answer
    # that breaks off can still be retried (a GET). The retry runs in the worker task,
    # which relays an answer's head as soon as it has it: cut short again, the client's
    # connection is cut.
    cfg = config({"prefix": "/", "service": "echo", "balancer": "round_robin", "retries": 2})
    async with running(cfg, registry) as gateway:
        async with Client(port_of(gateway)) as client:
            for _ in range(3):
                await client.request("GET", "/hello")  # a pooled connection to each instance
            worker_calls.clear()
            with pytest.raises(ConnectionResetError):
                await client.request("GET", "/cut")
        assert worker_calls == [b"/cut"]  # the worker task decided the retry
        assert sum(1 for up in upstreams for seen in up.seen if seen.target == "/cut") == 2
        assert (await _errors(gateway))["lost"] == 2
        await eventually(lambda: gateway.statistics().in_flight == 0)


async def test_an_answer_cut_short_without_retries_is_502_at_once(
    registry: Registry, worker_calls: list[bytes]
) -> None:
    cfg = config({"prefix": "/", "service": "other", "retries": 1})
    async with running(cfg, registry) as gateway, Client(port_of(gateway)) as client:
        await client.request("GET", "/hello")
        worker_calls.clear()
        reply = await client.request("GET", "/cut")
        assert reply.status == 502
        assert worker_calls == []  # answered from the upstream connection's callback
        assert (await _errors(gateway))["lost"] == 1


async def test_a_malformed_answer_is_502_and_its_connection_dropped(
    registry: Registry, upstreams: list[Upstream], worker_calls: list[bytes]
) -> None:
    cfg = config({"prefix": "/", "service": "other", "retries": 1})
    async with running(cfg, registry) as gateway, Client(port_of(gateway)) as client:
        await client.request("GET", "/hello")
        worker_calls.clear()
        reply = await client.request("GET", "/garbage")
        assert reply.status == 502
        assert "malformed response" in reply.json()["error"]
        assert worker_calls == []
        assert (await _errors(gateway))["protocol"] == 1
        assert (await client.request("GET", "/hello")).status == 200


async def test_a_stale_pooled_connection_is_replaced_without_a_failure(
    registry: Registry, upstreams: list[Upstream]
) -> None:
    cfg = config({"prefix": "/", "service": "other", "retries": 1})
    async with running(cfg, registry) as gateway, Client(port_of(gateway)) as client:
        await client.request("GET", "/hello")
        reply = await client.request("GET", "/drop-reused")  # the pooled one closes unanswered
        assert reply.status == 200
        assert [seen.target for seen in upstreams[0].seen] == [
            "/hello",
            "/drop-reused",
            "/drop-reused",
        ]
        assert await _errors(gateway) == {}  # not the instance's failure
        pools = [
            upstream.pool.statistics()
            for target in gateway._targets.values()
            for upstream in target.discovery.upstreams.values()
        ]
        assert sum(p.stale_retries for p in pools) == 1


async def test_the_deadline_on_the_fast_path_is_504_and_closes_the_exchange(
    registry: Registry, upstreams: list[Upstream], worker_calls: list[bytes]
) -> None:
    cfg = config({"prefix": "/", "service": "other", "timeout": "200ms", "retries": 1})
    async with running(cfg, registry) as gateway, Client(port_of(gateway)) as client:
        await client.request("GET", "/hello")
        worker_calls.clear()
        reply = await client.request("GET", "/hang")
        assert reply.status == 504
        assert "deadline exceeded: no answer within 0.2s" in reply.json()["error"]
        assert worker_calls == []
        assert (await _errors(gateway))["timeout"] == 1
        await eventually(lambda: len(upstreams[0].conns) == 0)  # its connection was closed
        after = await client.request("GET", "/hello")
        assert after.status == 200
        assert await _in_flight(gateway) == 0


async def test_a_client_leaving_mid_exchange_drops_the_upstream_connection(
    registry: Registry, upstreams: list[Upstream]
) -> None:
    cfg = config({"prefix": "/", "service": "other"})
    async with running(cfg, registry) as gateway:
        async with Client(port_of(gateway)) as client:
            await client.request("GET", "/hello")
            await client.request("GET", "/hello")
            await client.send(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
            await eventually(lambda: any(s.target == "/hang" for s in upstreams[0].seen))
            open_before = len(upstreams[0].conns)
            assert client.writer is not None
            sock = client.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.writer.transport.abort()  # a reset (not a half-close): gone for good
        await eventually(lambda: len(upstreams[0].conns) == open_before - 1)
        await eventually(lambda: gateway.statistics().in_flight == 0)
        assert await _in_flight(gateway) == 0
        assert "timeout" not in await _errors(gateway)


async def test_failures_on_the_fast_path_open_the_breaker(
    registry: Registry, worker_calls: list[bytes]
) -> None:
    route = {
        "prefix": "/",
        "service": "other",
        "retries": 1,
        "breaker": {"minimum_calls": 3, "failure_rate": 0.5, "wait": "30s"},
    }
    async with running(config(route), registry) as gateway, Client(port_of(gateway)) as client:
        await client.request("GET", "/status/500")
        worker_calls.clear()
        statuses = [(await client.request("GET", "/status/500")).status for _ in range(2)]
        assert statuses == [500, 500]  # relayed as they were, each counted a failure
        assert worker_calls == []
        refused = await client.request("GET", "/hello")
        assert refused.status == 503
        assert "circuit breaker open" in refused.json()["error"]
        assert refused.headers["retry-after"]
        assert (await _errors(gateway))["breaker_open"] == 1


async def test_a_5xx_retried_from_the_fast_path_goes_to_another_instance(
    upstreams: list[Upstream], worker_calls: list[bytes]
) -> None:
    failing = await Upstream(name="failing").start()
    async with open_registry("memory://") as registry:
        await registry.register(Instance("svc", "bad", "127.0.0.1", failing.port), ttl=60)
        await registry.register(Instance("svc", "good", "127.0.0.1", upstreams[0].port), ttl=60)
        cfg = config({"prefix": "/", "service": "svc", "balancer": "round_robin", "retries": 2})
        try:
            async with running(cfg, registry) as gateway, Client(port_of(gateway)) as client:
                for _ in range(2):
                    await client.request("GET", "/hello")
                worker_calls.clear()
                replies = [await client.request("GET", "/status/503") for _ in range(2)]
                # Each instance answers 503 here: the retry relays the last 503 as it was.
                assert [r.status for r in replies] == [503, 503]
                assert len(worker_calls) == 2
                assert (await _errors(gateway))["status_503"] == 2
        finally:
            await failing.aclose()


async def test_a_closed_pool_is_answered_by_the_worker_task(
    registry: Registry, worker_calls: list[bytes]
) -> None:
    cfg = config({"prefix": "/", "service": "other", "retries": 1})
    async with running(cfg, registry) as gateway, Client(port_of(gateway)) as client:
        await client.request("GET", "/hello")
        for target in gateway._targets.values():
            for upstream in target.discovery.upstreams.values():
                upstream.pool.close()
        worker_calls.clear()
        reply = await client.request("GET", "/hello")
        assert reply.status == 502
        assert "could not be forwarded" in reply.json()["error"]
        assert worker_calls == [b"/hello"]
        assert await _in_flight(gateway) == 0
