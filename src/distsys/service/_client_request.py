"""Building a ServiceClient call: its target, headers, body and request id, once per call.

What stays the same across the attempts of a call is built here, once; each attempt adds
only its remaining budget (``X-Request-Timeout-Ms``) and the transport its ``Host``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

import msgspec

from distsys.errors import InvalidArgumentError
from distsys.http import REQUEST_ID_HEADER, new_request_id, request_id

if TYPE_CHECKING:
    from distsys.context import Context
    from distsys.service._client_settings import ClientSettings

__all__ = ["UNSET", "Call", "build_call"]

UNSET: Any = object()
"""Marks an argument that was not given (``json=None`` sends ``null``)."""

_REQUEST_ID_NAME: Final = REQUEST_ID_HEADER.encode()
_REQUEST_ID_LOWER: Final = REQUEST_ID_HEADER.lower().encode()
_JSON_TYPE: Final = (b"Content-Type", b"application/json")
_encode_json = msgspec.json.Encoder().encode


class Call:
    """One call, ready for its attempts."""

    __slots__ = ("body", "headers", "method", "request_id", "target")

    def __init__(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterable[bytes] | None,
        request_id: str,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.request_id = request_id

    @property
    def replayable(self) -> bool:
        """Whether the body can be sent again (it is not a stream)."""
        return not isinstance(self.body, AsyncIterable)


def build_call(
    settings: ClientSettings,
    method: str,
    path: str,
    params: Mapping[str, str] | None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
    json: Any,
    content: bytes | AsyncIterable[bytes] | None,
    ctx: Context | None,
) -> Call:
    """Return the call's target, headers (the client's, the caller's, the request id's),
    and body (``json`` encoded with msgspec, or ``content``).

    The request id is the caller's ``X-Request-ID`` header, else the id ``ctx`` carries,
    else a new one.

    Raises:
        InvalidArgumentError: both ``json`` and ``content`` were given.
    """
    fixed = list(settings.headers)
    rid: str | None = None
    if headers is not None:
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in pairs:
            raw = name.encode("latin-1")
            if raw.lower() == _REQUEST_ID_LOWER:
                rid = value
                continue
            fixed.append((raw, value.encode("latin-1")))
    body: bytes | AsyncIterable[bytes] | None = content
    if json is not UNSET:
        if content is not None:
            raise InvalidArgumentError("json", json, "json= or content=, not both")
        body = _encode_json(json)
        fixed.append(_JSON_TYPE)
    if rid is None:
        rid = request_id(ctx) or new_request_id()
    fixed.append((_REQUEST_ID_NAME, rid.encode("latin-1")))
    target = path
    if params:
        target = f"{path}{'&' if '?' in path else '?'}{urlencode(params)}"
    return Call(method.upper(), target, fixed, body, rid)
