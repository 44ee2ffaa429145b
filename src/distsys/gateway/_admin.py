"""The admin API: a small HTTP/1.1 server on a loopback port, JSON and Prometheus text.

=================  ==================================================================
``GET /routes``    the routes in force, the configuration file, reload counts and the
                   last reload error
``GET /services``  per service (and balancer): its instances, each with its breaker
                   state, EWMA latency, requests in flight, ejection
``GET /stats``     per route: requests per second by status class over the last 10 s,
                   totals, errors by kind, requests in flight
``GET /metrics``   Prometheus text (the gateway's own ``CollectorRegistry``)
``GET /healthz``   200 while the process serves
``GET /readyz``    200 ``ready``, 200 ``degraded`` (the registry is unreachable: routing
                   goes on with the last known instances), 503 ``starting``/``stopping``
``POST /reload``   reload the configuration file now (as SIGHUP does)
=================  ==================================================================

The endpoints are cheap to compute and answered in order on each connection. Nothing
here is on the data path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
from httptools import HttpParserError, HttpRequestParser

from distsys.gateway._responses import status_line

__all__ = ["AdminHandler", "AdminServer", "Reply"]

Reply = tuple[int, bytes, bytes]
"""An admin answer: status, content type, body."""

AdminHandler = Callable[[str, str], Awaitable[Reply]]
"""Answers ``(method, path)``."""

JSON: Final = b"application/json"
_encode = msgspec.json.Encoder().encode


def json_reply(status: int, document: Any) -> Reply:
    """Return a JSON reply."""
    return status, JSON, _encode(document) + b"\n"


class _AdminConnection(asyncio.Protocol):
    """One admin client connection (internal)."""

    def __init__(self, handler: AdminHandler, tasks: set[asyncio.Task[None]]) -> None:
        self._handler = handler
        self._tasks = tasks
        self._parser = HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._size = 0
        self._chain: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > 1 << 20:  # the admin API takes no bodies
            self._close()
            return
        try:
            self._parser.feed_data(data)
        except HttpParserError:
            self._close()

    def on_message_begin(self) -> None:
        self._url = b""

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_message_complete(self) -> None:
        method = self._parser.get_method().decode("latin-1")
        path = self._url.decode("latin-1").split("?", 1)[0]
        keep = self._parser.should_keep_alive()
        self._size = 0
        before = self._chain
        task = asyncio.get_running_loop().create_task(self._answer(before, method, path, keep))
        self._chain = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(
        self, before: asyncio.Future[None] | None, method: str, path: str, keep: bool
    ) -> None:
        if before is not None:
            await asyncio.wait([before])  # answers go out in the order asked
        try:
            status, kind, body = await self._handler(method, path)
        except Exception as exc:  # an admin bug must not take the gateway down
            status, kind, body = json_reply(500, {"error": repr(exc), "status": 500})
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        head = status_line(status) + b"Content-Type: %s\r\nContent-Length: %d\r\n" % (
            kind,
            len(body),
        )
        if not keep:
            head += b"Connection: close\r\n"
        transport.write(head + b"\r\n" + body)
        if not keep:
            transport.close()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


class AdminServer:
    """Serve the admin API on ``host:port``. Safe within one event loop."""

    def __init__(self, handler: AdminHandler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.address: tuple[str, int] | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen (port 0: any free port; :attr:`address` tells which)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _AdminConnection(self._handler, self._tasks), host, port
        )
        sockname = self._server.sockets[0].getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))

    async def aclose(self) -> None:
        """Stop listening and cancel the answers in progress (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)
