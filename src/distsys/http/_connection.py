"""Connection: one keep-alive HTTP/1.1 client connection, an asyncio Protocol.

Responses are parsed by httptools (llhttp, in C) straight from ``data_received``; the
parser's callbacks fill the in-flight :class:`Response`. One request at a time (no
pipelining). The connection goes back to its pool the moment the response is complete
— not when the caller gets round to reading it — and only if the server did not ask to
close, the request did not either, and the request was wholly sent.

Framing rules (RFC 9112 §6.3), as llhttp applies them: a response to HEAD, and every 1xx,
204 and 304, has no body; otherwise ``Transfer-Encoding: chunked``, then
``Content-Length``, then "until the server closes" (such a connection is never reused).
1xx responses are skipped; 101 (upgrade) is refused as a :class:`ProtocolError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING, Final

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from distsys.errors import InvalidArgumentError
from distsys.http._errors import ConnectionLostError, ProtocolError, UpstreamError

if TYPE_CHECKING:
    from distsys.http._pool import ConnectionPool
    from distsys.http._response import Response

__all__ = ["Connection"]

_SMALL_BODY: Final = 65536  # below this a body is copied into the head's write


class _HeadDone(Exception):
    """Raised from on_headers_complete to stop llhttp after a HEAD response's headers."""


class Connection(asyncio.Protocol):
    """One pooled connection (internal; the pool creates and owns it). Loop-bound."""

    __slots__ = (
        "_drain",
        "_head_bytes",
        "_head_done",
        "_headers",
        "_is_head",
        "_must_close",
        "_parser",
        "_pool",
        "_reading_paused",
        "_write_paused",
        "address",
        "closed",
        "idle_since",
        "received",
        "requests",
        "response",
        "sending",
        "transport",
    )

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self.address = pool.address
        self._parser = HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_done = False
        self._head_bytes = 0
        self._is_head = False
        self._must_close = False
        self._reading_paused = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self.received = False  # a byte of the current response arrived
        self.sending = False  # a streamed request body is being written
        self.closed = False
        self.requests = 0  # exchanges started on it
        self.idle_since = 0.0

    # ------------------------------------------------------------- the exchange

    def start(self, response: Response, head: bytes, body: bytes | None, close: bool) -> None:
        """Begin an exchange: write the head (and a bytes body) for ``response``."""
        self.response = response
        self.requests += 1
        self._headers = []
        self._head_done = False
        self._head_bytes = 0
        self.received = False
        self._is_head = response.method == b"HEAD"
        self._must_close = close
        transport = self.transport
        assert transport is not None
        if body is None or not body:
            transport.write(head)
        elif len(body) < _SMALL_BODY:
            transport.write(head + body)
        else:
            transport.writelines((head, body))

    async def send_stream(self, body: AsyncIterable[bytes], length: int | None) -> None:
        """Write a streamed body: chunked if ``length`` is None, else exactly ``length`` bytes.

        Stops early, quietly, if the response completes or fails meanwhile (the server
        answered before reading it all: the connection is then closed, not reused).

        Raises:
            InvalidArgumentError: the body is not bytes chunks, or does not match
                ``length``.
        """
        response = self.response
        transport = self.transport
        assert response is not None
        assert transport is not None
        sent = 0
        self.sending = True
        chunks: AsyncIterable[object] = body  # checked below, item by item
        try:
            async for chunk in chunks:
                if self.response is not response or transport.is_closing():
                    break  # answered (or failed) already: the rest is not wanted
                if not isinstance(chunk, bytes | bytearray | memoryview):
                    raise InvalidArgumentError(
                        "body", chunk, "an async iterable of bytes chunks (str: encode it)"
                    )
                size = len(chunk)
                if not size:
                    continue
                sent += size
                if length is None:
                    transport.writelines((b"%x\r\n" % size, chunk, b"\r\n"))
                else:
                    if sent > length:
                        raise InvalidArgumentError(
                            "body", f"{sent}+ bytes", f"exactly {length} bytes (Content-Length)"
                        )
                    transport.write(chunk)
                if self._write_paused:
                    await self._wait_drain()
            else:
                if self.response is response and not transport.is_closing():
                    if length is None:
                        transport.write(b"0\r\n\r\n")
                    elif sent != length:
                        raise InvalidArgumentError(
                            "body", f"{sent} bytes", f"exactly {length} bytes (Content-Length)"
                        )
        except BaseException:
            self.abort()
            raise
        finally:
            self.sending = False
        if self.response is not response:
            self.abort()  # answered before the body was all sent: never reuse it

    async def _wait_drain(self) -> None:
        if self.closed:
            raise ConnectionLostError(self.address, "the connection closed while sending")
        drain = self._drain
        if drain is None:
            drain = self._drain = asyncio.get_running_loop().create_future()
        await drain

    def fail(self, exc: BaseException) -> None:
        """End the exchange with ``exc`` (a deadline, a protocol error) and drop the link."""
        response = self.response
        if response is not None:
            self.response = None
            response._fail(exc)
        self.abort()

    def abort(self) -> None:
        """Close now and leave the pool (idempotent)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.abort()
        self._gone()

    def close(self) -> None:
        """Close gracefully (pending writes are flushed) and leave the pool (idempotent)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()
        self._gone()

    def _gone(self) -> None:
        if not self.closed:
            self.closed = True
            self._pool._discard(self)
        drain = self._drain
        if drain is not None:
            self._drain = None
            if not drain.done():
                drain.set_exception(
                    ConnectionLostError(self.address, "the connection closed while sending")
                )

    def _finish(self, keep_alive: bool) -> None:
        """The response is complete: hand it over; pool or close the connection."""
        response = self.response
        assert response is not None
        self.response = None
        keep = keep_alive and not self._must_close and not self.sending and not self.closed
        if self._reading_paused:
            self._reading_paused = False
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()
        response._complete()
        if keep:
            self._pool._release(self)
        elif self.sending:
            self._must_close = True  # send_stream closes it once it notices
        else:
            self.close()

    # ---------------------------------------------------------- flow control

    def pause_reading(self) -> None:
        """Stop reading the socket: the response's consumer lags."""
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read the socket again."""
        if self._reading_paused:
            self._reading_paused = False
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()

    # ------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:
            # Bytes nobody asked for (a 408 before closing, or garbage): never reuse.
            self.abort()
            return
        self.received = True
        try:
            if self._head_done:
                self._parser.feed_data(data)
                return
            self._head_bytes += len(data)
            self._parser.feed_data(data)
        except HttpParserUpgrade:
            self.fail(ProtocolError(self.address, "the server switched protocols (upgrade)"))
            return
        except HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, _HeadDone):
                self._parser = HttpResponseParser(self)  # llhttp stopped: a fresh one
                self._finish(True)
                return
            if isinstance(cause, UpstreamError):
                self.fail(cause)
            else:
                self.fail(ProtocolError(self.address, f"malformed response: {exc}"))
            return
        if not self._head_done and self._head_bytes > self._pool._max_header_bytes:
            self.fail(
                ProtocolError(
                    self.address,
                    f"response header section larger than {self._pool._max_header_bytes} bytes",
                )
            )

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost decides what it meant

    def connection_lost(self, exc: Exception | None) -> None:
        # The transport is gone: finish a close-delimited response or fail the exchange.
        response = self.response
        if response is not None:
            if self._head_done and response._delimited_by_close():
                self._finish(False)
            else:
                self.response = None
                if not self.received:
                    reason = "the server closed the connection before responding"
                elif not self._head_done:
                    reason = "the server closed the connection in the response's headers"
                else:
                    reason = "the server closed the connection before the response's end"
                if exc is not None:
                    reason = f"{reason} ({exc})"
                response._fail(ConnectionLostError(self.address, reason))
        self._gone()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None:
            self._drain = None
            if not drain.done():
                drain.set_result(None)

    # ------------------------------------------------------ httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            self._headers = []  # 1xx: informational, skipped (llhttp expects no body)
            return
        response = self.response
        if response is None:
            raise ProtocolError(self.address, "a response arrived that nobody asked for")
        headers = self._headers
        self._headers = []
        if len(headers) > self._pool._max_headers:
            raise ProtocolError(
                self.address, f"response has more than {self._pool._max_headers} headers"
            )
        if self._head_bytes > self._pool._max_header_bytes:  # maybe: count exactly
            size = sum(len(n) + len(v) + 4 for n, v in headers)
            if size > self._pool._max_header_bytes:
                raise ProtocolError(
                    self.address,
                    f"response header section larger than {self._pool._max_header_bytes} bytes",
                )
        self._head_done = True
        response._head(status, headers)
        if self._is_head:
            self._must_close = self._must_close or not self._parser.should_keep_alive()
            raise _HeadDone

    def on_body(self, body: bytes) -> None:
        response = self.response
        if response is not None:
            response._feed(body)

    def on_message_complete(self) -> None:
        if self._head_done:
            self._finish(self._parser.should_keep_alive())
        # else: the end of a 1xx response; the real one follows
