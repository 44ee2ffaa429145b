"""What the gateway writes itself: status lines, response heads, JSON errors.

The statuses it answers on its own, each with a JSON body
``{"error": "...", "status": 503, "request_id": "..."}``:

=====  ==================================================================================
400    a malformed request (bad HTTP, a path with dot segments)
404    no route matches the path (and Host)
405    routes match the path, not the method (``Allow`` lists theirs)
408    the client took longer than ``limits.header_timeout`` to send the headers
413    the body is larger than ``limits.max_body_bytes``
429    the route's rate limit (``Retry-After``: seconds until a token is due)
431    the request line and headers are larger than ``limits.max_header_bytes``, or more
       than ``limits.max_headers``
502    the instance broke the protocol or dropped the connection after it got the request
503    no instance is available, every breaker is open (``Retry-After``), or none could be
       connected to; the message says which
504    the deadline passed (the route's ``timeout``, or the client's
       ``X-Request-Timeout-Ms`` if shorter)
=====  ==================================================================================
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

import msgspec

__all__ = [
    "HOP_BY_HOP",
    "RESPONSE_SKIP",
    "error_body",
    "status_line",
]

_LINES: Final = {
    int(s): b"HTTP/1.1 %d %s\r\n" % (int(s), s.phrase.encode("latin-1")) for s in HTTPStatus
}

HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
"""Headers that concern one connection only (RFC 9110 §7.6.1): never forwarded."""

RESPONSE_SKIP: Final = {name: True for name in HOP_BY_HOP}
"""Response headers dropped on the way down (a dict: one probe per header)."""

_encode = msgspec.json.Encoder().encode


class _Error(msgspec.Struct):
    error: str
    status: int
    request_id: str


def status_line(status: int) -> bytes:
    """Return ``HTTP/1.1 <status> <reason>\\r\\n``."""
    line = _LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d Unknown\r\n" % status
    return line


def error_body(status: int, message: str, request_id: bytes) -> bytes:
    """Return the JSON body of an error the gateway answers itself."""
    return _encode(_Error(message, status, request_id.decode("latin-1")))
