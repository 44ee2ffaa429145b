"""Response: status and headers at once, the body as a stream with backpressure."""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Final

from distsys.http._errors import ConnectionLostError, ResponseTooLargeError
from distsys.http._headers import Headers

if TYPE_CHECKING:
    from distsys.http._connection import Connection
    from distsys.http._guard import Guard

__all__ = ["DEFAULT_READ_LIMIT", "Response"]

DEFAULT_READ_LIMIT: Final = 16 * 1024 * 1024
"""The default limit of :meth:`Response.read`: 16 MiB."""

_NO_BODY_STATUS: Final = frozenset({204, 304})


class Response:
    """An HTTP response: ``status`` and ``headers`` now, the body as it arrives.

    Read the body whole with ``await response.read()`` (bounded by ``limit``), or stream
    it with ``async for chunk in response``; a consumer that lags makes the connection
    stop reading its socket (backpressure: at most about ``read_buffer`` bytes are held
    per response). The connection returns to its pool as soon as the whole response has
    arrived — usually before the caller even reads it — so a response whose body is not
    wanted must be closed (``await response.aclose()``, or ``async with response:``):
    closing a response that is still arriving closes its connection.

    Safe within one event loop; one consumer at a time.

    The connection feeds it through four methods, called from its protocol callbacks:
    ``_head(status, headers)``, ``_feed(chunk)``, ``_complete()`` (the whole response has
    arrived; the connection goes back to its pool right after) and ``_fail(exc)``. A
    subclass started with :meth:`ConnectionPool.start_nowait` may extend them to act on
    the response as it arrives (keeping what they do to the response's state); they
    must not raise. Where this module is compiled (see ``docs/gateway.md``), such a
    subclass must be compiled with it: a plain Python one raises ``TypeError`` when made
    (with ``DISTSYS_PURE_PYTHON=1`` any subclass works).

    Attributes:
        status: the status code (1xx responses are skipped, so >= 200).
        method: the request's method (``b"GET"`` ...).
        address: the upstream's ``host:port``.
        raw_headers: the header pairs as received, ``bytes``.
    """

    __slots__ = (
        "_chunks",
        "_closed",
        "_conn",
        "_done",
        "_error",
        "_guard",
        "_handed",
        "_headers",
        "_high",
        "_low",
        "_size",
        "_waiter",
        "address",
        "method",
        "raw_headers",
        "status",
    )

    def __init__(
        self, method: bytes, address: str, conn: Connection, guard: Guard | None, read_buffer: int
    ) -> None:
        self.method = method
        self.address = address
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self._headers: Headers | None = None
        self._conn: Connection | None = conn
        self._guard = guard
        self._handed = False  # the caller has it: a failure now ends the request
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._high = read_buffer
        self._low = read_buffer // 4
        self._done = False  # the whole response has arrived
        self._closed = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    # ---------------------------------------------------------------- reading

    @property
    def headers(self) -> Headers:
        """The headers, looked up without regard to case."""
        headers = self._headers
        if headers is None:
            headers = self._headers = Headers(self.raw_headers)
        return headers

    @property
    def complete(self) -> bool:
        """Whether the whole response has arrived (its connection is back in the pool)."""
        return self._done

    @property
    def buffered(self) -> int:
        """Bytes of body received and not read yet (bounded by the pool's ``read_buffer``
        plus one socket read: past it, the connection stops reading)."""
        return self._size

    @property
    def content_length(self) -> int | None:
        """The ``Content-Length`` the server announced, or None."""
        for name, value in self.raw_headers:
            if len(name) == 14 and name.lower() == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None

    async def read(self, limit: int | None = DEFAULT_READ_LIMIT) -> bytes:
        """Return the whole body.

        Args:
            limit: the most bytes accepted (default 16 MiB); None for no limit.

        Raises:
            ResponseTooLargeError: the body is larger than ``limit`` (the connection is
                closed; nothing more is read).
            UpstreamError / DeadlineExceededError / CanceledError: the response failed
                or the request's context ended.
        """
        chunks = self._chunks
        if self._done and self._error is None and (limit is None or self._size <= limit):
            self._size = 0
            if len(chunks) == 1:
                return chunks.popleft()
            data = b"".join(chunks)
            chunks.clear()
            return data
        if limit is not None:
            announced = self.content_length
            if announced is not None and announced > limit:
                self._abandon()
                raise ResponseTooLargeError(self.address, limit, size=announced)
        parts: list[bytes] = []
        total = 0
        while True:
            if chunks:
                total += self._size
                if limit is not None and total > limit:
                    self._abandon()
                    raise ResponseTooLargeError(self.address, limit)
                parts.extend(chunks)
                chunks.clear()
                self._size = 0
                conn = self._conn
                if conn is not None:
                    conn.resume_reading()
            if self._error is not None:
                raise self._error
            if self._done:
                return b"".join(parts)
            await self._wait()

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> bytes:
        chunks = self._chunks
        while not chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                raise StopAsyncIteration
            await self._wait()
        chunk = chunks.popleft()
        size = self._size = self._size - len(chunk)
        if size <= self._low:
            conn = self._conn
            if conn is not None:
                conn.resume_reading()
        return chunk

    async def _wait(self) -> None:
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    # ---------------------------------------------------------------- closing

    async def aclose(self) -> None:
        """Stop reading: close the connection if the response is still arriving."""
        self.close()

    def close(self) -> None:
        """The synchronous :meth:`aclose` (idempotent; never blocks)."""
        if not self._closed:
            self._closed = True
            if not self._done:
                self._abandon()
            self._chunks.clear()
            self._size = 0

    def _abandon(self) -> None:
        conn = self._conn
        if self._error is None and not self._done:
            self._error = ConnectionLostError(
                self.address, "the response was closed before its end", request_sent=True
            )
        if conn is not None:
            self._conn = None
            conn.response = None
            conn.abort()
        self._release_guard()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------ fed by the connection

    def _head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.raw_headers = headers
        self._wake()

    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size > self._high:
            conn = self._conn
            if conn is not None:
                conn.pause_reading()
        self._wake()

    def _complete(self) -> None:
        self._done = True
        self._conn = None
        self._release_guard()
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        self._conn = None
        if not self._done and self._error is None:
            self._error = exc
        guard = self._guard
        if guard is not None:
            guard.conn = None  # the connection is gone; the pool may still retry with it
            if self._handed:
                self._release_guard()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _release_guard(self) -> None:
        guard = self._guard
        if guard is not None:
            self._guard = None
            guard.close()

    def _delimited_by_close(self) -> bool:
        """Whether the body ends when the connection closes (no length, not chunked)."""
        if self.method == b"HEAD" or self.status in _NO_BODY_STATUS:
            return True
        for name, _ in self.raw_headers:
            if len(name) in (14, 17) and name.lower() in (b"content-length", b"transfer-encoding"):
                return False
        return True

    def __repr__(self) -> str:
        state = "complete" if self._done else "streaming"
        return f"<Response {self.status} from {self.address} {state}>"
