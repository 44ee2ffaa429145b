"""Pooling over real sockets: reuse, limits, idle eviction, stale connections, connect errors."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from distsys.errors import ArgumentTypeError, DistsysError, InvalidArgumentError
from distsys.http import (
    ConnectError,
    ConnectionLostError,
    ConnectionPool,
    Response,
    _response,
    prepare,
)
from distsys.testing import ManualClock
from tests.http.conftest import eventually
from tests.http.server import Exchange, TestServer
from tests.servers import free_port


def gate(server: TestServer, path: str = "/gate") -> asyncio.Event:
    """Make ``path`` answer only once the returned event is set."""
    opened = asyncio.Event()

    async def handler(ex: Exchange) -> None:
        await opened.wait()
        ex.reply(200, b"through")

    server.routes[path] = handler
    return opened


async def test_sequential_requests_share_one_connection(
    pool: ConnectionPool, server: TestServer
) -> None:
    for _ in range(10):
        response = await pool.request("GET", "/hello")
        await response.read()
    assert server.connections == 1
    assert {r.connection for r in server.requests} == {1}
    stats = pool.statistics()
    assert (stats.requests, stats.reused, stats.opened, stats.connections) == (10, 9, 1, 1)


async def test_max_connections_queues_the_rest(server: TestServer) -> None:
    opened = gate(server)
    async with ConnectionPool("127.0.0.1", server.port, max_connections=2) as pool:

        async def call() -> bytes:
            response = await pool.request("GET", "/gate")
            return await response.read()

        tasks = [asyncio.create_task(call()) for _ in range(5)]
        await eventually(lambda: len(server.requests) == 2)
        stats = pool.statistics()
        assert (stats.connections, stats.busy, stats.waiting) == (2, 2, 3)
        opened.set()
        async with asyncio.timeout(10):
            assert await asyncio.gather(*tasks) == [b"through"] * 5
        assert server.connections == 2
        assert pool.statistics().waiting == 0


async def test_max_idle_closes_the_surplus(server: TestServer) -> None:
    opened = gate(server)
    async with ConnectionPool("127.0.0.1", server.port, max_idle=1) as pool:

        async def call() -> None:
            response = await pool.request("GET", "/gate")
            await response.read()

        tasks = [asyncio.create_task(call()) for _ in range(3)]
        await eventually(lambda: len(server.requests) == 3)
        opened.set()
        async with asyncio.timeout(10):
            await asyncio.gather(*tasks)
        stats = pool.statistics()
        assert (stats.idle, stats.connections, stats.closed) == (1, 1, 2)


async def test_idle_connections_are_evicted_after_the_idle_timeout(server: TestServer) -> None:
    clock = ManualClock()
    async with ConnectionPool("127.0.0.1", server.port, idle_timeout=4.0, clock=clock) as pool:
        await (await pool.request("GET", "/hello")).read()
        clock.advance(3.9)
        assert pool.statistics().idle == 1
        clock.advance(0.1)
        stats = pool.statistics()
        assert (stats.idle, stats.connections, stats.evicted) == (0, 0, 1)
        await eventually(lambda: not server.open)  # the server saw it close
        await (await pool.request("GET", "/hello")).read()
        assert pool.statistics().opened == 2


async def test_eviction_keeps_the_recently_used(server: TestServer) -> None:
    clock = ManualClock()
    opened = gate(server)
    async with ConnectionPool("127.0.0.1", server.port, idle_timeout=4.0, clock=clock) as pool:

        async def call() -> None:
            await (await pool.request("GET", "/gate")).read()

        tasks = [asyncio.create_task(call()) for _ in range(2)]
        await eventually(lambda: len(server.requests) == 2)
        opened.set()
        await asyncio.gather(*tasks)
        clock.advance(3.0)
        await (await pool.request("GET", "/hello")).read()  # the warmest one, LIFO
        clock.advance(1.0)
        assert pool.statistics().idle == 1  # the other one aged out
        clock.advance(3.0)
        assert pool.statistics().idle == 0
        assert pool.statistics().evicted == 2


async def test_a_connection_the_server_closed_while_idle_is_dropped(
    pool: ConnectionPool, server: TestServer
) -> None:
    await (await pool.request("GET", "/hello")).read()
    server.close_connections()
    await eventually(lambda: pool.statistics().connections == 0)
    response = await pool.request("GET", "/hello")
    assert await response.read() == b"hello from test"
    assert pool.statistics().stale_retries == 0
    assert server.connections == 2


async def test_stale_reused_connection_is_retried_once_for_idempotent_requests(
    pool: ConnectionPool, server: TestServer
) -> None:
    await (await pool.request("GET", "/hello")).read()
    # The server closes the reused connection without answering (its keep-alive timer
    # raced our request); a GET is sent again on a fresh connection.
    response = await pool.request("GET", "/drop-once")
    assert await response.read() == b"second time"
    assert pool.statistics().stale_retries == 1
    assert [r.connection for r in server.requests] == [1, 1, 2]


async def test_stale_reused_connection_is_not_retried_for_post(
    pool: ConnectionPool, server: TestServer
) -> None:
    await (await pool.request("GET", "/hello")).read()
    with pytest.raises(ConnectionLostError, match="before responding") as caught:
        await pool.request("POST", "/drop-once", body=b"order")
    assert caught.value.request_sent
    assert len(server.requests) == 2  # sent once: the server may have acted on it
    assert pool.statistics().stale_retries == 0


async def test_a_fresh_connection_that_drops_is_not_retried(
    pool: ConnectionPool, server: TestServer
) -> None:
    with pytest.raises(ConnectionLostError):
        await pool.request("GET", "/drop")
    assert len(server.requests) == 1


async def test_stale_retry_happens_at_most_once(pool: ConnectionPool, server: TestServer) -> None:
    await (await pool.request("GET", "/hello")).read()
    with pytest.raises(ConnectionLostError):
        await pool.request("GET", "/drop")
    assert len(server.requests) == 3
    assert pool.statistics().stale_retries == 1


async def test_connection_refused_is_a_connect_error() -> None:
    port = free_port()
    async with ConnectionPool("127.0.0.1", port) as pool:
        with pytest.raises(ConnectError, match="connection refused") as caught:
            await pool.request("GET", "/")
        assert caught.value.address == f"127.0.0.1:{port}"
        assert isinstance(caught.value, ConnectionError)
        stats = pool.statistics()
        assert (stats.connect_errors, stats.connections) == (1, 0)


async def test_connect_timeout_is_a_connect_error() -> None:
    # A listener that never accepts, with its backlog filled: further connects hang.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        clock = ManualClock()
        async with ConnectionPool("127.0.0.1", port, connect_timeout=1.0, clock=clock) as pool:
            task = asyncio.create_task(pool.request("GET", "/"))
            await eventually(lambda: pool.statistics().connections == 1)
            await asyncio.sleep(0.01)
            clock.advance(1.0)
            async with asyncio.timeout(5):
                (outcome,) = await asyncio.gather(task, return_exceptions=True)
            if not isinstance(outcome, ConnectError):  # the kernel took it after all
                if isinstance(outcome, Response):
                    outcome.close()
                pytest.skip("the kernel queued the connection; cannot make a connect hang")
            assert "timed out after 1s" in str(outcome)
            assert pool.statistics().connections == 0
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_closed_pool_refuses_requests_and_closes_connections(
    server: TestServer,
) -> None:
    pool = ConnectionPool("127.0.0.1", server.port)
    await (await pool.request("GET", "/hello")).read()
    await pool.aclose()
    await pool.aclose()  # idempotent
    assert pool.closed
    assert pool.statistics().connections == 0
    with pytest.raises(DistsysError, match="closed"):
        await pool.request("GET", "/hello")


async def test_closing_the_pool_fails_queued_requests(server: TestServer) -> None:
    opened = gate(server)
    pool = ConnectionPool("127.0.0.1", server.port, max_connections=1)
    first = asyncio.create_task(pool.request("GET", "/gate"))
    await eventually(lambda: len(server.requests) == 1)
    second = asyncio.create_task(pool.request("GET", "/gate"))
    await eventually(lambda: pool.statistics().waiting == 1)
    await pool.aclose()
    with pytest.raises(DistsysError, match="closed"):
        await second
    opened.set()
    async with asyncio.timeout(5):
        response = await first
        assert await response.read() == b"through"
    assert pool.statistics().connections == 0


def test_limits_are_validated() -> None:
    with pytest.raises(InvalidArgumentError, match="max_connections"):
        ConnectionPool("127.0.0.1", 80, max_connections=0)
    with pytest.raises(ArgumentTypeError, match="idle_timeout"):
        ConnectionPool("127.0.0.1", 80, idle_timeout="4")
    with pytest.raises(InvalidArgumentError, match="connect_timeout"):
        ConnectionPool("127.0.0.1", 80, connect_timeout=float("inf"))
    with pytest.raises(InvalidArgumentError, match="port"):
        ConnectionPool("127.0.0.1", 0)
    with pytest.raises(ArgumentTypeError, match="host"):
        ConnectionPool("", 80)
    with pytest.raises(TypeError):
        ConnectionPool("127.0.0.1", 80, max_conections=3)


def test_repr_address_and_authority() -> None:
    pool = ConnectionPool("::1", 8080)
    assert pool.address == "[::1]:8080"
    assert pool.authority == b"[::1]:8080"
    assert "[::1]:8080" in repr(pool)
    assert ConnectionPool("example.com", 80).authority == b"example.com"


async def test_send_a_prepared_request(pool: ConnectionPool, server: TestServer) -> None:
    prepared = prepare("GET", "/hello", pool.authority, [(b"X-A", b"1")], None)
    response = await pool.send(prepared)
    assert await response.read() == b"hello from test"
    assert server.requests[0].headers["host"] == server.address


async def test_a_server_that_closes_every_connection_is_not_retried_forever() -> None:
    accepted = 0

    class Slammer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            nonlocal accepted
            accepted += 1
            transport.close()

    server = await asyncio.get_running_loop().create_server(Slammer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with ConnectionPool("127.0.0.1", port) as pool:
            for _ in range(3):
                with pytest.raises(ConnectionLostError):
                    async with asyncio.timeout(5):
                        await pool.request("GET", "/")
            assert accepted <= 3
            assert pool.statistics().connections == 0
    finally:
        server.close()


# A compiled Response admits no plain Python subclass: these run on the pure build
# (``make test`` runs this file with DISTSYS_PURE_PYTHON=1 too).
needs_python_subclass = pytest.mark.skipif(
    not _response.__file__.endswith(".py"),
    reason="distsys.http._response is compiled: a Python subclass of Response is refused",
)


class _Recorder(Response):
    """A response that notes the connection's callbacks, as the gateway's fast path does."""

    __slots__ = ("events",)

    def _head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        super()._head(status, headers)
        self.events = [f"head {status}"]

    def _complete(self) -> None:
        super()._complete()
        self.events.append("complete")

    def _fail(self, exc: BaseException) -> None:
        super()._fail(exc)
        self.events = [*getattr(self, "events", []), f"fail {type(exc).__name__}"]


@needs_python_subclass
async def test_start_nowait_needs_an_idle_connection_and_opens_one_ahead(
    pool: ConnectionPool, server: TestServer
) -> None:
    head = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
    assert pool.start_nowait(b"GET", head, _Recorder) is None  # unbound: nothing idle
    await (await pool.request("GET", "/hello")).read()
    assert pool.statistics().idle == 1
    first = pool.start_nowait(b"GET", head, _Recorder)
    assert first is not None
    assert pool.start_nowait(b"GET", head, _Recorder) is None  # the only one is busy ...
    await eventually(lambda: pool.statistics().connections == 2)  # ... so one more opens
    await eventually(lambda: first.complete)
    assert first.events == ["head 200", "complete"]
    assert await first.read() == b"hello from test"
    second = pool.start_nowait(b"GET", head, _Recorder)
    assert second is not None
    await eventually(lambda: second.complete)
    stats = pool.statistics()
    assert (stats.requests, stats.opened, stats.idle, stats.stale_retries) == (3, 2, 2, 0)


@needs_python_subclass
async def test_start_nowait_reports_a_lost_connection_through_fail(
    pool: ConnectionPool, server: TestServer
) -> None:
    await (await pool.request("GET", "/hello")).read()
    response = pool.start_nowait(b"GET", b"GET /drop HTTP/1.1\r\nHost: t\r\n\r\n", _Recorder)
    assert response is not None
    await eventually(lambda: bool(getattr(response, "events", None)))
    assert response.events == ["fail ConnectionLostError"]
    with pytest.raises(ConnectionLostError, match="before responding"):
        await response.read()
    assert pool.start_nowait(b"GET", b"", _Recorder, replay=True) is None
    assert pool.statistics().stale_retries == 1  # counted even when send() takes it


async def test_start_nowait_on_a_closed_pool_raises(pool: ConnectionPool) -> None:
    await pool.aclose()
    with pytest.raises(DistsysError, match="closed"):
        pool.start_nowait(b"GET", b"GET / HTTP/1.1\r\n\r\n", Response)
