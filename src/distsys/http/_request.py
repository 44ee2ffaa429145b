"""Encoding a request: the head in one ``bytes``, and how its body is framed.

The transport owns the framing. A ``bytes`` body is sent with its ``Content-Length``; a
body given as an async iterator of chunks is sent chunked, unless the caller set a
``Content-Length`` (a proxy forwarding a body of known size), which is then kept and
enforced. Caller headers ``Content-Length`` and ``Transfer-Encoding`` are otherwise
dropped; ``Host`` is added unless given. CR or LF in any name, value or the target is
refused (no header injection), checked with one count over the encoded head.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from typing import Final, TypeAlias

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.http._headers import HeaderInput, Headers

__all__ = ["IDEMPOTENT_METHODS", "Body", "Prepared", "is_idempotent", "prepare"]

Body: TypeAlias = bytes | bytearray | memoryview | AsyncIterable[bytes] | None
"""A request body: bytes (sent with Content-Length), an async iterator of chunks, or None."""

IDEMPOTENT_METHODS: Final = frozenset({b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"})
"""Methods whose repetition has the effect of one request (RFC 9110 §9.2.2)."""

_WANTS_LENGTH: Final = frozenset({b"POST", b"PUT", b"PATCH"})  # send "Content-Length: 0"
# Header names the transport looks at, by length, so most names cost one len() and a set test.
_SPECIAL_LENGTHS: Final = frozenset({4, 10, 14, 17})
_HOST, _CONNECTION, _LENGTH, _ENCODING = (
    b"host",
    b"connection",
    b"content-length",
    (b"transfer-encoding"),
)
_METHODS: Final[dict[str | bytes, bytes]] = {
    name: name.encode() for name in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
} | {name.encode(): name.encode() for name in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH")}
_HEADERS_ACCEPTED: Final = "a mapping of str to str, or (name, value) pairs of str or bytes"


def is_idempotent(method: str | bytes) -> bool:
    """Return whether ``method`` is idempotent (GET, HEAD, PUT, DELETE, OPTIONS, TRACE)."""
    raw = method.encode("ascii") if isinstance(method, str) else method
    return raw.upper() in IDEMPOTENT_METHODS


class Prepared:
    """A request ready to write: its head and how its body goes.

    Made for one exchange and used by the task that sends it; never shared.
    """

    __slots__ = ("body", "chunked", "close", "head", "idempotent", "is_head", "length", "method")

    def __init__(
        self,
        method: bytes,
        head: bytes,
        body: bytes | AsyncIterable[bytes] | None,
        length: int | None,
        chunked: bool,
        close: bool,
    ) -> None:
        self.method = method
        self.head = head
        self.body = body
        self.length = length
        self.chunked = chunked
        self.close = close
        self.is_head = method == b"HEAD"
        self.idempotent = method in IDEMPOTENT_METHODS

    @property
    def replayable(self) -> bool:
        """Whether the request can be written again (its body is not a consumed stream)."""
        return not isinstance(self.body, AsyncIterable)


def _as_bytes(value: str | bytes, field: str) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, str):
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidArgumentError(field, value, "Latin-1 text (encode it first)") from None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise ArgumentTypeError(field, value, _HEADERS_ACCEPTED)


def prepare(
    method: str | bytes,
    target: str | bytes,
    authority: bytes,
    headers: HeaderInput,
    body: Body,
) -> Prepared:
    """Encode a request's head and decide its body's framing.

    Args:
        method: the method, such as ``"GET"`` (upper-cased).
        target: the origin-form target: a path starting with ``/``, with its query.
        authority: the ``Host`` header's value to add when ``headers`` has none.
        headers: the caller's headers.
        body: the body.

    Raises:
        InvalidArgumentError / ArgumentTypeError: a part of the request is not acceptable
            (the message names it).
    """
    try:
        m = _METHODS.get(method)
    except TypeError:  # unhashable
        raise ArgumentTypeError("method", method, "a str or bytes such as 'GET'") from None
    if m is None:
        m = (method if type(method) is bytes else _as_bytes(method, "method")).upper()
    t = target if type(target) is bytes else _as_bytes(target, "target")
    if (not t.startswith(b"/") and t != b"*") or t.find(b" ") >= 0:  # find, not "in" (cheaper)
        raise InvalidArgumentError(
            "target", target, "a path starting with '/' (with its query), without spaces"
        )
    parts = [m, b" ", t, b" HTTP/1.1\r\n"]
    lines = 1
    host = True
    close = False
    given_length: bytes | None = None
    if headers is not None:
        if type(headers) is list:
            pairs: object = headers
        elif type(headers) is dict or isinstance(headers, Mapping):
            pairs = headers.items()
        elif isinstance(headers, Headers):
            pairs = headers.raw
        else:
            pairs = headers
        try:
            for name, value in pairs:  # type: ignore[attr-defined]
                if type(name) is not bytes:
                    name = _as_bytes(name, "headers")
                if type(value) is not bytes:
                    value = _as_bytes(value, "headers")
                if len(name) in _SPECIAL_LENGTHS:
                    lower = name.lower()
                    if lower == _HOST:
                        host = False
                    elif lower == _LENGTH:
                        given_length = value
                        continue
                    elif lower == _ENCODING:
                        continue
                    elif lower == _CONNECTION and b"close" in value.lower():
                        close = True
                parts += (name, b": ", value, b"\r\n")
                lines += 1
        except (TypeError, ValueError) as exc:
            if isinstance(exc, InvalidArgumentError):
                raise
            raise ArgumentTypeError("headers", headers, _HEADERS_ACCEPTED) from None
    if host:
        parts += (b"Host: ", authority, b"\r\n")
        lines += 1
    length: int | None = None
    chunked = False
    data: bytes | AsyncIterable[bytes] | None
    if body is None:
        data = None
        if m in _WANTS_LENGTH:
            parts.append(b"Content-Length: 0\r\n")
            lines += 1
    elif type(body) is bytes or isinstance(body, bytes | bytearray | memoryview):
        data = body if type(body) is bytes else bytes(body)
        length = len(data)
        if length or m in _WANTS_LENGTH:
            parts += (b"Content-Length: ", b"%d" % length, b"\r\n")
            lines += 1
    elif isinstance(body, AsyncIterable):
        data = body
        if given_length is not None:
            try:
                length = int(given_length)
            except ValueError:
                length = -1
            if length < 0 or not given_length.strip().isdigit():
                raise InvalidArgumentError(
                    "headers", given_length, "a Content-Length of decimal digits"
                )
            parts += (b"Content-Length: ", b"%d" % length, b"\r\n")
        else:
            chunked = True
            parts.append(b"Transfer-Encoding: chunked\r\n")
        lines += 1
    else:
        raise ArgumentTypeError(
            "body", body, "bytes, an async iterable of bytes chunks, or None (str: encode it)"
        )
    parts.append(b"\r\n")
    lines += 1
    head = b"".join(parts)
    if head.count(b"\n") != lines or head.count(b"\r") != lines:
        raise InvalidArgumentError(
            "headers", headers, "names, values and a target without CR or LF characters"
        )
    return Prepared(m, head, data, length, chunked, close)
