"""Responses: what a handler may return for full control, and the JSON error bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from distsys.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["JSON_TYPE", "Response", "error_body"]

JSON_TYPE: Final = b"application/json"

_encode = msgspec.json.Encoder().encode


class Response:
    """A complete HTTP response: status, headers and body.

    Return one from a handler for full control; a handler that returns anything else
    (a ``msgspec.Struct``, a dict, a list ...) is answered with that value as JSON.

    Args:
        body: the body; a ``str`` is encoded as UTF-8.
        status: the HTTP status, 100..599.
        headers: extra headers.
        media_type: the ``Content-Type``.

    Immutable once built; safe to share (a constant response may be returned by every
    call).
    """

    __slots__ = ("body", "raw_headers", "status")

    def __init__(
        self,
        body: bytes | str = b"",
        status: int = 200,
        *,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = "text/plain; charset=utf-8",
    ) -> None:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise InvalidArgumentError("status", status, "an HTTP status in 100..599")
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes | bytearray | memoryview):
            raise ArgumentTypeError("body", body, "bytes or str (use Response.json for data)")
        self.status = status
        self.body = bytes(body)
        raw: list[tuple[bytes, bytes]] = []
        if media_type is not None and self.body:
            raw.append((b"content-type", media_type.encode("latin-1")))
        for name, value in (headers or {}).items():
            raw.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        self.raw_headers = raw

    @classmethod
    def json(
        cls, data: Any, status: int = 200, *, headers: Mapping[str, str] | None = None
    ) -> Response:
        """Return a response whose body is ``data`` encoded as JSON by msgspec."""
        return cls(_encode(data), status, headers=headers, media_type="application/json")

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


def error_body(status: int, message: str, request_id: str, **extra: Any) -> bytes:
    """Return the JSON body of an error answer: ``{"error", "status", "request_id", ...}``."""
    return _encode({"error": message, "status": status, "request_id": request_id, **extra})
