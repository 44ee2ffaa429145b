"""RequestBody: a request's body on its way upstream, as it arrives, with backpressure.

The downstream connection feeds the chunks httptools hands it; the upstream transport
(``Connection.send_stream``) iterates them. When more than ``HIGH`` bytes wait — the
upstream's socket is full and its writer waits for it to drain — the downstream
connection stops reading its socket, and reads again once they fall under ``LOW``: at
most about ``HIGH`` plus one socket read of a body is ever held, whatever its size.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Final

from distsys.errors import DistsysError

if TYPE_CHECKING:
    from distsys.gateway._downstream import Downstream

__all__ = ["HIGH", "LOW", "BodyTooLargeError", "ClientGoneError", "RequestBody"]

HIGH: Final = 256 * 1024
"""Body bytes held before the downstream socket stops being read."""
LOW: Final = 64 * 1024
"""Body bytes held under which it is read again."""


class BodyTooLargeError(DistsysError):
    """The request body is larger than ``limits.max_body_bytes`` (the client gets 413)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the request body is larger than {limit} bytes")


class ClientGoneError(DistsysError, ConnectionError):
    """The client closed its connection before sending the whole request body."""


class RequestBody:
    """The body of one request, streamed. Safe within one event loop; one reader."""

    __slots__ = ("_chunks", "_conn", "_done", "_error", "_held", "_limit", "_waiter", "received")

    def __init__(self, conn: Downstream, limit: int) -> None:
        self._conn = conn
        self._limit = limit
        self._chunks: deque[bytes] = deque()
        self._held = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.received = 0

    @property
    def complete(self) -> bool:
        """Whether the whole body has arrived (it may not all have been read)."""
        return self._done

    @property
    def failed(self) -> bool:
        """Whether the body ended in error (too large, or the client left)."""
        return self._error is not None

    # ------------------------------------------------------- fed by the connection

    def feed(self, chunk: bytes) -> None:
        """Add a chunk (from ``on_body``)."""
        if self._error is not None:
            return
        self.received += len(chunk)
        if self.received > self._limit:
            self.fail(BodyTooLargeError(self._limit))
            return
        self._chunks.append(chunk)
        self._held += len(chunk)
        if self._held > HIGH:
            self._conn.pause_for_body()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def end(self) -> None:
        """The body is complete (from ``on_message_complete``)."""
        self._done = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, error: BaseException) -> None:
        """End the body with ``error``; the reader gets it (what is held is dropped)."""
        if self._error is None and not self._done:
            self._error = error
            self._chunks.clear()
            self._held = 0
            self._conn.resume_for_body()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ reading

    def __aiter__(self) -> RequestBody:
        return self

    async def __anext__(self) -> bytes:
        chunks = self._chunks
        while not chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                raise StopAsyncIteration
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        chunk = chunks.popleft()
        held = self._held = self._held - len(chunk)
        if held <= LOW:
            self._conn.resume_for_body()
        return chunk
