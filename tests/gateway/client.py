"""A small raw HTTP/1.1 client for gateway tests: one connection, answers parsed by httptools."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import httptools


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-cased names; the last value wins
    body: bytes
    raw_headers: list[tuple[str, str]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)


class _Parser:
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.replies: list[Reply] = []
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self.body_bytes = 0  # of the reply being received
        self.head: asyncio.Event = asyncio.Event()

    def on_message_begin(self) -> None:
        self._headers = []
        self._body = []
        self.body_bytes = 0
        self.head.clear()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.head.set()

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.keep_body:
            self._body.append(body)

    keep_body = True

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            return
        headers = {k.lower(): v for k, v in self._headers}
        body = b"".join(self._body) if self.keep_body else b"%d" % self.body_bytes
        self.replies.append(Reply(status, headers, body, list(self._headers)))


class Client:
    """One keep-alive connection to 127.0.0.1:port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.parsed = _Parser()

    async def connect(self) -> Client:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        *,
        timeout: float = 10.0,
    ) -> Reply:
        await self.send(encode(method, path, headers, body))
        if method == "HEAD":
            return await self.head_reply(timeout=timeout)
        return await self.reply(timeout=timeout)

    async def head_reply(self, *, timeout: float = 10.0) -> Reply:
        """Read an answer to HEAD: a head and no body (httptools cannot be told)."""
        assert self.reader is not None
        async with asyncio.timeout(timeout):
            raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        pairs = [tuple(line.split(": ", 1)) for line in lines[1:] if line]
        headers = {k.lower(): v for k, v in pairs}
        return Reply(int(lines[0].split()[1]), headers, b"", list(pairs))  # type: ignore[arg-type]

    async def reply(self, *, timeout: float = 10.0) -> Reply:
        """Wait for the next answer (bounded)."""
        assert self.reader is not None
        parsed = self.parsed
        count = len(parsed.replies)
        async with asyncio.timeout(timeout):
            while len(parsed.replies) <= count:
                data = await self.reader.read(65536)
                if not data:
                    with contextlib.suppress(httptools.HttpParserError):
                        parsed.parser.feed_data(b"")
                    if len(parsed.replies) > count:
                        break
                    raise ConnectionResetError("the gateway closed the connection")
                parsed.parser.feed_data(data)
        return parsed.replies[count]

    async def closed(self, *, timeout: float = 10.0) -> bool:
        """Wait until the server closes the connection (bounded); True if it did."""
        assert self.reader is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await self.reader.read(65536)
                    if not data:
                        return True
                    self.parsed.parser.feed_data(data)
        except (TimeoutError, ConnectionResetError):
            return False

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()

    async def __aenter__(self) -> Client:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def encode(
    method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1"]
    given = {k.lower() for k in (headers or {})}
    if "host" not in given:
        lines.append("Host: test")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body and "content-length" not in given and "transfer-encoding" not in given:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def get(port: int, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Reply:
    """One request on a fresh connection."""
    async with Client(port) as client:
        return await client.request("GET", path, headers, **kw)


async def call(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> Reply:
    async with Client(port) as client:
        return await client.request(method, path, headers, body)
