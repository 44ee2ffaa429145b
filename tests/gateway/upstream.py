"""A scriptable upstream for gateway tests: a raw asyncio Protocol server on 127.0.0.1.

Unlike ``tests/http/server.py`` it never holds a request body: bodies are counted as
they stream in, so a 50 MB upload costs the server nothing. The path picks the answer:

``/hello``            200 ``hello from <name>``
``.../echo``          200 JSON: method, path (with query), headers, body size
``/count``            200 ``<bytes of the body>`` once the whole body has been counted
``/big?size=N``       200 with N bytes, written as fast as the transport takes them
                      (``&chunked=1``: chunked framing)
``/slow?ms=N``        200 after N ms
``/status/N``         status N
``/hang``             never answers
``/close``            closes the connection without answering
``/cut``              announces 100 bytes, sends 10, and closes the connection
``/garbage``          answers with bytes that are not HTTP
``/drop-reused``      on a reused connection, the first time: closes it without
                      answering (as a server whose keep-alive timer raced the request)

Anything else: 200 ``<name> <path>``. Every request is recorded in ``server.seen``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httptools


@dataclass
class Seen:
    """A request as the upstream saw it."""

    method: str
    target: str
    headers: dict[str, str]  # lower-cased names
    body_size: int


class _Conn(asyncio.Protocol):
    def __init__(self, server: Upstream) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.url = b""
        self.headers: dict[str, str] = {}
        self.size = 0
        self.requests = 0
        self.paused_writing = False
        self.drained = asyncio.Event()
        self.drained.set()
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.server.conns.add(self)
        if self.server.hold_reading.is_set():
            transport.pause_reading()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.conns.discard(self)
        for task in self.tasks:
            task.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def pause_writing(self) -> None:
        self.paused_writing = True
        self.server.write_pauses += 1
        self.drained.clear()

    def resume_writing(self) -> None:
        self.paused_writing = False
        self.drained.set()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        self.server.body_bytes += len(body)

    def on_message_complete(self) -> None:
        seen = Seen(
            self.parser.get_method().decode(),
            self.url.decode("latin-1"),
            dict(self.headers),
            self.size,
        )
        self.server.seen.append(seen)
        self.requests += 1
        task = asyncio.get_running_loop().create_task(self.answer(seen))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    async def answer(self, seen: Seen) -> None:
        url = urlsplit(seen.target)
        query = dict(parse_qsl(url.query))
        path = url.path
        name = self.server.name
        if path == "/hello":
            self.reply(200, f"hello from {name}".encode(), {"Content-Type": "text/plain"})
        elif path.endswith("/echo"):
            doc = {
                "server": name,
                "method": seen.method,
                "target": seen.target,
                "headers": seen.headers,
                "body_size": seen.body_size,
            }
            self.reply(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})
        elif path == "/count":
            self.reply(200, str(seen.body_size).encode())
        elif path == "/big":
            await self.big(int(query.get("size", "1000")), query.get("chunked") == "1")
        elif path == "/slow":
            await asyncio.sleep(int(query.get("ms", "100")) / 1000)
            self.reply(200, f"slow from {name}".encode())
        elif path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            self.reply(status, f"{status} from {name}".encode())
        elif path == "/hang":
            await asyncio.Event().wait()
        elif path == "/close":
            self.transport.close()
        elif path == "/cut":
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            self.transport.close()
        elif path == "/garbage":
            self.transport.write(b"NOT HTTP AT ALL\r\n\r\n")
        elif path == "/drop-reused" and self.requests > 1 and not self.server.dropped:
            self.server.dropped = True
            self.transport.close()
        else:
            self.reply(200, f"{name} {seen.target}".encode())

    async def big(self, size: int, chunked: bool) -> None:
        block = b"x" * 65536
        if chunked:
            self.transport.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        else:
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        left = size
        while left > 0:
            piece = block[: min(left, len(block))]
            left -= len(piece)
            if chunked:
                self.transport.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                self.transport.write(piece)
            self.server.body_sent += len(piece)
            if self.paused_writing:
                await self.drained.wait()
        if chunked:
            self.transport.write(b"0\r\n\r\n")


@dataclass
class Upstream:
    """Serve on 127.0.0.1 (a free port): ``await up.start()`` ... ``await up.aclose()``."""

    name: str = "up"
    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    conns: set[_Conn] = field(default_factory=set)
    body_bytes: int = 0
    body_sent: int = 0
    write_pauses: int = 0
    dropped: bool = False
    hold_reading: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None

    async def start(self) -> Upstream:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Conn(self), "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def pause_reading(self) -> None:
        """Stop reading request bodies (new connections too) until resume_reading()."""
        self.hold_reading.set()
        for conn in self.conns:
            conn.transport.pause_reading()

    def resume_reading(self) -> None:
        self.hold_reading.clear()
        for conn in self.conns:
            conn.transport.resume_reading()

    async def stop(self) -> None:
        """Stop listening and drop every connection (the instance dies)."""
        if self._server is not None:
            self._server.close()
            for conn in list(self.conns):
                conn.transport.abort()
            await self._server.wait_closed()
            self._server = None

    async def aclose(self) -> None:
        await self.stop()
