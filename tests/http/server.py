"""A scriptable HTTP/1.1 server on 127.0.0.1, in-process, for transport and client tests.

Requests are parsed with httptools; the path picks the behaviour (see ``_ROUTES``), so a
test asks for what it wants with the URL: ``/hello``, ``/chunked?n=3``, ``/eof``,
``/reset``, ``/garbage``, ``/status/503``, ``/big?size=N``, ``/hang``, ``/slow?ms=50`` ...
Every request is recorded (``server.requests``) with its connection's number, so tests
can see reuse, forwarded headers and bodies.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import httptools


@dataclass
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names; the last value wins
    body: bytes
    connection: int  # 1 for the server's first connection, 2 for the next ...


Handler = Callable[["Exchange"], Awaitable[None]]


class Exchange:
    """What a route handler gets: the request and the connection to answer on."""

    def __init__(self, server: TestServer, conn: _Conn, received: Received) -> None:
        self.server = server
        self.conn = conn
        self.received = received

    @property
    def transport(self) -> asyncio.Transport:
        assert self.conn.transport is not None
        return self.conn.transport

    def reply(
        self,
        status: int = 200,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
        *,
        length: bool = True,
    ) -> None:
        head = [f"HTTP/1.1 {status} X"]
        for name, value in headers or []:
            head.append(f"{name}: {value}")
        if length:
            head.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        self.transport.write(data)


class _Conn(asyncio.Protocol):
    def __init__(self, server: TestServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.number = 0
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._queue: asyncio.Queue[Received] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.server.connections += 1
        self.number = self.server.connections
        self.server.open.add(self)
        self._task = asyncio.get_running_loop().create_task(self._serve())

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.open.discard(self)
        if self._task is not None:
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        self.server.bytes_received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        url = urlsplit(self._url.decode("latin-1"))
        received = Received(
            method=self.parser.get_method().decode(),
            path=url.path,
            query=dict(parse_qsl(url.query)),
            headers=self._headers,
            body=b"".join(self._body),
            connection=self.number,
        )
        self.server.requests.append(received)
        self._queue.put_nowait(received)

    async def _serve(self) -> None:
        while True:
            received = await self._queue.get()
            exchange = Exchange(self.server, self, received)
            handler = self.server.handler_for(received.path)
            await handler(exchange)


@dataclass
class TestServer:
    """Serve on 127.0.0.1 (a free port); ``await server.start()`` / ``await server.aclose()``."""

    name: str = "test"
    requests: list[Received] = field(default_factory=list)
    connections: int = 0
    bytes_received: int = 0
    open: set[_Conn] = field(default_factory=set)
    routes: dict[str, Handler] = field(default_factory=dict)
    drop_once_done: set[str] = field(default_factory=set)
    port: int = 0
    _server: asyncio.Server | None = None

    __test__ = False  # not a pytest class

    async def start(self) -> TestServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Conn(self), "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def handler_for(self, path: str) -> Handler:
        if path in self.routes:
            return self.routes[path]
        for prefix, handler in _ROUTES.items():
            if path == prefix or path.startswith(prefix + "/"):
                return handler
        return _not_found

    def pending_writes(self) -> int:
        """Bytes the server has written that the client has not taken yet (above the kernel)."""
        return sum(c.transport.get_write_buffer_size() for c in self.open if c.transport)

    def close_connections(self) -> None:
        """Close every open connection (as a server does to idle keep-alive ones)."""
        for conn in list(self.open):
            if conn.transport is not None:
                conn.transport.close()

    async def stop(self) -> None:
        """Stop listening and close every connection (the instance "dies")."""
        if self._server is not None:
            self._server.close()
            for conn in list(self.open):
                if conn.transport is not None:
                    conn.transport.abort()
            await self._server.wait_closed()
            self._server = None

    async def aclose(self) -> None:
        await self.stop()

    async def __aenter__(self) -> TestServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# ------------------------------------------------------------------ the routes


async def _not_found(ex: Exchange) -> None:
    ex.reply(404, b"not found")


async def _hello(ex: Exchange) -> None:
    ex.reply(200, f"hello from {ex.server.name}".encode(), [("Content-Type", "text/plain")])


async def _echo(ex: Exchange) -> None:
    r = ex.received
    doc = {
        "server": ex.server.name,
        "method": r.method,
        "path": r.path,
        "query": r.query,
        "headers": r.headers,
        "body": r.body.decode("latin-1"),
    }
    ex.reply(200, json.dumps(doc).encode(), [("Content-Type", "application/json")])


async def _chunked(ex: Exchange) -> None:
    n = int(ex.received.query.get("n", "3"))
    size = int(ex.received.query.get("size", "5"))
    ex.reply(200, b"", [("Transfer-Encoding", "chunked")], length=False)
    for i in range(n):
        chunk = bytes([ord("a") + i % 26]) * size
        ex.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await asyncio.sleep(0)
    ex.transport.write(b"0\r\n\r\n")


async def _close(ex: Exchange) -> None:
    ex.reply(200, b"bye", [("Connection", "close")])
    ex.transport.close()


async def _eof(ex: Exchange) -> None:
    ex.reply(200, b"", length=False)
    ex.transport.write(b"until ")
    await asyncio.sleep(0)
    ex.transport.write(b"the end")
    ex.transport.close()


async def _reset(ex: Exchange) -> None:
    ex.reply(200, b"", [("Content-Length", "1000")], length=False)
    ex.transport.write(b"partial")
    await asyncio.sleep(0.01)
    ex.transport.abort()


async def _garbage(ex: Exchange) -> None:
    ex.transport.write(b"NOT HTTP AT ALL\r\n\r\n")


async def _status(ex: Exchange) -> None:
    status = int(ex.received.path.rsplit("/", 1)[1])
    body = b"" if status in (204, 304) else f"status {status}".encode()
    headers = [("Content-Length", "42")] if status == 304 else []
    ex.reply(status, body, headers, length=status != 304)


async def _head(ex: Exchange) -> None:
    # HEAD: the headers of the GET, no body
    ex.reply(200, b"", [("Content-Length", "11")], length=False)


async def _big(ex: Exchange) -> None:
    size = int(ex.received.query.get("size", "1000000"))
    ex.reply(200, b"", [("Content-Length", str(size))], length=False)
    block = b"x" * 65536
    left = size
    while left > 0:
        n = min(left, len(block))
        ex.transport.write(block[:n])
        left -= n
        await asyncio.sleep(0)


async def _hang(ex: Exchange) -> None:
    await asyncio.Event().wait()


async def _slow(ex: Exchange) -> None:
    await asyncio.sleep(int(ex.received.query.get("ms", "50")) / 1000)
    ex.reply(200, b"slow")


async def _many_headers(ex: Exchange) -> None:
    n = int(ex.received.query.get("n", "200"))
    ex.reply(200, b"ok", [(f"X-H{i}", "v") for i in range(n)])


async def _big_header(ex: Exchange) -> None:
    size = int(ex.received.query.get("size", "100000"))
    ex.reply(200, b"ok", [("X-Big", "v" * size)])


async def _continue(ex: Exchange) -> None:
    ex.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    ex.reply(200, b"after 100")


async def _upgrade(ex: Exchange) -> None:
    ex.transport.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: ws\r\nConnection: Upgrade\r\n\r\n"
    )


async def _drop(ex: Exchange) -> None:
    ex.transport.close()


async def _drop_once(ex: Exchange) -> None:
    """Close the connection without answering the first time; answer afterwards."""
    key = ex.received.method + ex.received.path
    if key not in ex.server.drop_once_done:
        ex.server.drop_once_done.add(key)
        ex.transport.close()
        return
    ex.reply(200, b"second time")


async def _stall(ex: Exchange) -> None:
    """Announce 100 bytes, send 10, then never finish."""
    ex.reply(200, b"", [("Content-Length", "100")], length=False)
    ex.transport.write(b"0123456789")
    await asyncio.Event().wait()


async def _upload(ex: Exchange) -> None:
    ex.reply(200, str(len(ex.received.body)).encode())


_ROUTES: dict[str, Handler] = {
    "/hello": _hello,
    "/echo": _echo,
    "/chunked": _chunked,
    "/close": _close,
    "/eof": _eof,
    "/reset": _reset,
    "/garbage": _garbage,
    "/status": _status,
    "/head": _head,
    "/big": _big,
    "/hang": _hang,
    "/slow": _slow,
    "/many-headers": _many_headers,
    "/big-header": _big_header,
    "/continue": _continue,
    "/upgrade": _upgrade,
    "/drop": _drop,
    "/drop-once": _drop_once,
    "/upload": _upload,
    "/stall": _stall,
}
