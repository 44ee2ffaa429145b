"""The request as a handler sees it, and the per-request Context and request id."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qsl

import msgspec

from distsys.context import Context
from distsys.http import REQUEST_ID_HEADER, request_id
from distsys.service._errors import HTTPError

__all__ = [
    "CONTEXT_SCOPE_KEY",
    "REQUEST_ID_HEADER",
    "REQUEST_ID_SCOPE_KEY",
    "Headers",
    "Request",
    "context_of",
    "request_id_of",
]

CONTEXT_SCOPE_KEY: Final = "distsys.context"
"""The ASGI scope key under which the service puts the request's :class:`Context`."""

REQUEST_ID_SCOPE_KEY: Final = "distsys.request_id"
"""The ASGI scope key under which the service puts the request id (a str)."""


def request_id_of(source: Any) -> str | None:
    """Return the request id of a Context, an ASGI scope, or a request with a ``.scope``.

    Works inside a distsys handler (``request_id_of(ctx)``) and inside a wrapped FastAPI or
    Starlette endpoint (``request_id_of(request)``); None outside a request.
    """
    if isinstance(source, Context):
        return request_id(source)
    scope = getattr(source, "scope", source)
    if isinstance(scope, Mapping):
        value = scope.get(REQUEST_ID_SCOPE_KEY)
        return value if isinstance(value, str) else None
    return None


def context_of(source: Any) -> Context | None:
    """Return the per-request Context from an ASGI scope or a request with a ``.scope``.

    In a wrapped FastAPI or Starlette endpoint, ``context_of(request)`` gives the Context
    built from the ``X-Request-Timeout-Ms`` header (with the request id as a value); pass
    it on to downstream calls so they share the deadline.
    """
    scope = getattr(source, "scope", source)
    if isinstance(scope, Mapping):
        ctx = scope.get(CONTEXT_SCOPE_KEY)
        return ctx if isinstance(ctx, Context) else None
    return None


class Headers(Mapping[str, str]):
    """Request headers, looked up case-insensitively; repeated headers are joined by ``, ``.

    Immutable; safe to share.
    """

    __slots__ = ("_map", "_raw")

    def __init__(self, raw: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...]) -> None:
        self._raw = raw
        self._map: dict[str, str] | None = None

    def _index(self) -> dict[str, str]:
        index = self._map
        if index is None:
            index = {}
            for name, value in self._raw:
                key = name.decode("latin-1").lower()
                text = value.decode("latin-1")
                index[key] = f"{index[key]}, {text}" if key in index else text
            self._map = index
        return index

    def __getitem__(self, name: str) -> str:
        return self._index()[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index()

    def __iter__(self) -> Iterator[str]:
        return iter(self._index())

    def __len__(self) -> int:
        return len(self._index())

    def raw(self) -> list[tuple[bytes, bytes]]:
        """Return the headers as the ASGI server gave them (lower-case names, bytes)."""
        return list(self._raw)

    def __repr__(self) -> str:
        return f"Headers({self._index()!r})"


class Request:
    """One HTTP request: method, path, headers, query, body, and its Context.

    Belongs to the task that handles the request; read it from that task only.

    Everything is parsed lazily: a handler that never reads the headers or the query
    does not pay for them.

    Attributes:
        path_params: the converted path parameters.
        request_id: the request's id (from ``X-Request-ID``, or generated).
        ctx: the request's Context: its deadline comes from ``X-Request-Timeout-Ms``, and
            ``request_id_of(ctx)`` gives the request id.

    Belongs to the task that handles the request.
    """

    __slots__ = (
        "_body",
        "_headers",
        "_max_body",
        "_query",
        "_receive",
        "ctx",
        "path_params",
        "request_id",
        "scope",
    )

    def __init__(
        self,
        scope: MutableMapping[str, Any],
        receive: Any,
        *,
        path_params: dict[str, Any],
        request_id: str,
        ctx: Context,
        max_body: int,
    ) -> None:
        self.scope = scope
        self._receive = receive
        self.path_params = path_params
        self.request_id = request_id
        self.ctx = ctx
        self._max_body = max_body
        self._headers: Headers | None = None
        self._query: list[tuple[str, str]] | None = None
        self._body: bytes | None = None

    @property
    def method(self) -> str:
        """The HTTP method, upper-case."""
        method: str = self.scope["method"]
        return method

    @property
    def path(self) -> str:
        """The request path (percent-decoded)."""
        path: str = self.scope["path"]
        return path

    @property
    def client(self) -> tuple[str, int] | None:
        """The peer's ``(host, port)``, if the server knows it."""
        client = self.scope.get("client")
        return None if client is None else (client[0], client[1])

    @property
    def headers(self) -> Headers:
        """The request headers (case-insensitive mapping)."""
        if self._headers is None:
            self._headers = Headers(self.scope["headers"])
        return self._headers

    def _query_pairs(self) -> list[tuple[str, str]]:
        if self._query is None:
            raw: bytes = self.scope.get("query_string", b"")
            self._query = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
        return self._query

    @property
    def query(self) -> dict[str, str]:
        """The query parameters; for a repeated name, its first value."""
        found: dict[str, str] = {}
        for name, value in self._query_pairs():
            found.setdefault(name, value)
        return found

    def query_list(self, name: str) -> list[str]:
        """Return every value of the query parameter ``name``, in order."""
        return [value for key, value in self._query_pairs() if key == name]

    async def body(self) -> bytes:
        """Read the whole request body (once; later calls return it again).

        Raises:
            HTTPError: 413 when the body is larger than the service's ``max_body_size``.
        """
        if self._body is None:
            self._body = await read_body(self._receive, self._max_body)
        return self._body

    async def json(self, type: Any = Any) -> Any:
        """Decode the body as JSON, validated as ``type`` (any JSON value by default).

        Raises:
            msgspec.DecodeError: the body is not JSON.
            msgspec.ValidationError: it does not match ``type``.
        """
        return msgspec.json.decode(await self.body(), type=type)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path} id={self.request_id}>"


class ClientDisconnected(Exception):
    """The client went away before sending the whole body."""


async def read_body(receive: Any, limit: int) -> bytes:
    """Read an ASGI request body up to ``limit`` bytes (413 beyond)."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise HTTPError(413, f"request body larger than {limit} bytes")
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
