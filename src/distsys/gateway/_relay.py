"""Relaying answers to the client: the upstream's answer, or the gateway's own error.

The answer's head is rebuilt from the upstream's: status line, its end-to-end headers
(hop-by-hop ones dropped, with those its ``Connection`` header names), ``X-Request-ID``
when the upstream gave none, and the framing redone. An answer whose body has wholly
arrived — most small ones — goes down in one write with a ``Content-Length``; one still
arriving is relayed chunk by chunk, waiting for the client's socket to drain whenever
its buffer is full, which stops the upstream connection from being read.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from distsys.gateway._responses import HOP_BY_HOP, error_body, status_line

if TYPE_CHECKING:
    from distsys.gateway._downstream import Downstream
    from distsys.gateway._exchange import Exchange
    from distsys.gateway._stats import RouteStats
    from distsys.http import Response

__all__ = ["NO_BODY", "answer_error", "stream", "write_whole"]

NO_BODY: Final = frozenset({204, 304})
_SKIP: Final = 0
_LENGTH: Final = 1
_ID: Final = 2
_CONNECTION: Final = 3
_RESPONSE: Final = {
    **{name: _SKIP for name in HOP_BY_HOP},
    b"content-length": _LENGTH,
    b"x-request-id": _ID,
    b"connection": _CONNECTION,
}
_monotonic = time.monotonic


def _head(
    conn: Downstream, ex: Exchange, response: Response
) -> tuple[list[bytes], bytes | None, bool]:
    """Start the answer's head: status line, the upstream's end-to-end headers.

    Returns:
        The parts, the upstream's Content-Length (None if it gave none), and whether
        the connection may stay open.
    """
    keep = ex.keep_alive and ex.received and not conn.closing and not conn.front.draining
    parts = [status_line(response.status)]
    length: bytes | None = None
    has_id = False
    listed: bytes | None = None
    for name, value in response.raw_headers:
        kind = _RESPONSE.get(name.lower())
        if kind is None:
            parts += (name, b": ", value, b"\r\n")
        elif kind == _LENGTH:
            length = value
        elif kind == _ID:
            has_id = True
            parts += (name, b": ", value, b"\r\n")
        elif kind == _CONNECTION:
            listed = value
    if listed is not None:
        parts = _drop_listed(parts, listed)
    if not has_id:
        parts += (b"X-Request-ID: ", ex.request_id or b"-", b"\r\n")
    return parts, length, keep


def write_whole(conn: Downstream, ex: Exchange, response: Response, content: bytes) -> bool:
    """Write an answer whose body has wholly arrived, in one write."""
    transport = conn.transport
    parts, length, keep = _head(conn, ex, response)
    status = response.status
    if ex.method == b"HEAD" or status in NO_BODY or status < 200:
        if length is not None:
            parts += (b"Content-Length: ", length, b"\r\n")
        content = b""
    else:
        parts += (b"Content-Length: ", b"%d" % len(content), b"\r\n")
    if not keep:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    ex.status = status
    ex.head_sent = True
    if transport is None or transport.is_closing():
        return False
    if len(content) < 65536:
        parts.append(content)
        transport.write(b"".join(parts))
    else:
        transport.writelines((b"".join(parts), content))
    return keep


async def stream(conn: Downstream, ex: Exchange, response: Response) -> bool:
    """Write an answer whose body is still arriving, chunk by chunk, with backpressure.

    Raises:
        UpstreamError: the response broke off (the head was written).
        ClientGoneError: the client left.
    """
    transport = conn.transport
    assert transport is not None
    parts, length, keep = _head(conn, ex, response)
    chunked = False
    if length is not None:
        parts += (b"Content-Length: ", length, b"\r\n")
    elif ex.http11:
        parts.append(b"Transfer-Encoding: chunked\r\n")
        chunked = True
    else:
        keep = False  # an HTTP/1.0 client: the body ends when the connection does
    if not keep:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    ex.status = response.status
    ex.head_sent = True
    transport.write(b"".join(parts))
    async for chunk in response:
        if chunked:
            transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
        else:
            transport.write(chunk)
        if conn.write_paused:
            await conn.drain()
    if chunked:
        transport.write(b"0\r\n\r\n")
    if conn.write_paused:
        await conn.drain()
    return keep and (ex.body is None or ex.body.complete)


def answer_error(
    conn: Downstream,
    ex: Exchange,
    stats: RouteStats,
    status: int,
    message: str,
    *,
    retry_after: float | None = None,
    allow: str | None = None,
) -> bool:
    """Answer with the gateway's own JSON error; return whether the connection stays open."""
    request_id = ex.request_id or b"-"
    body = error_body(status, message, request_id)
    keep = (
        ex.keep_alive
        and ex.received
        and ex.reject is None
        and not conn.closing
        and not conn.front.draining
    )
    parts = [
        status_line(status),
        b"Content-Type: application/json\r\nContent-Length: %d\r\nX-Request-ID: %s\r\n"
        % (len(body), request_id),
    ]
    if retry_after is not None:
        parts.append(b"Retry-After: %d\r\n" % max(1, -int(-retry_after // 1)))
    if allow:
        parts.append(b"Allow: %s\r\n" % allow.encode("ascii"))
    if not keep:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    if ex.method != b"HEAD":
        parts.append(body)
    transport = conn.transport
    if transport is not None and not transport.is_closing():
        transport.write(b"".join(parts))
    ex.status = status
    ex.head_sent = True
    stats.record(status, _monotonic() - ex.started)
    return keep


def _drop_listed(parts: list[bytes], connection: bytes) -> list[bytes]:
    """Drop the response headers a ``Connection`` header names."""
    listed = {token.strip().lower() for token in connection.split(b",")}
    listed -= {b"close", b"keep-alive", b""}
    if not listed:
        return parts
    kept = parts[:1]
    for i in range(1, len(parts), 4):
        if parts[i].lower() not in listed:
            kept += parts[i : i + 4]
    return kept
