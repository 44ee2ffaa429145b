"""The HTTP/1.1 client transport shared by the gateway and ``ServiceClient``.

asyncio Protocols with the httptools (llhttp) response parser, pooled keep-alive
connections per upstream, streaming bodies both ways with backpressure, deadlines and
cancellation from a :class:`~distsys.context.Context`::

    async with HTTPClient() as client:
        pool = client.pool("127.0.0.1", 8080)       # keep it: one pool per upstream
        response = await pool.request("GET", "/hello", ctx=ctx)
        body = await response.read()                # or: async for chunk in response

One request per connection at a time (no pipelining). A connection returns to its pool
when its response has fully arrived and neither side asked to close. See
``docs/service-client.md`` for the design, limits and numbers.
"""

from distsys import _pure
from distsys.http import _pool, _response
from distsys.http._client import HTTPClient, split_url
from distsys.http._errors import (
    ConnectError,
    ConnectionLostError,
    ProtocolError,
    ResponseTooLargeError,
    UpstreamError,
)
from distsys.http._headers import HeaderInput, Headers
from distsys.http._options import PoolOptions
from distsys.http._pool import ConnectionPool
from distsys.http._request import IDEMPOTENT_METHODS, Body, Prepared, is_idempotent, prepare
from distsys.http._request_id import (
    REQUEST_ID_HEADER,
    new_request_id,
    request_id,
    with_request_id,
)
from distsys.http._response import DEFAULT_READ_LIMIT, Response
from distsys.http._statistics import ClientStatistics, PoolStatistics

_pure.restore_docstrings(_pool, _response)  # compiled by mypyc, which drops docstrings

__all__ = [
    # the transport
    "HTTPClient",
    "ConnectionPool",
    "PoolOptions",
    "Response",
    "Headers",
    "HeaderInput",
    "Body",
    "Prepared",
    "prepare",
    "split_url",
    "is_idempotent",
    "IDEMPOTENT_METHODS",
    "DEFAULT_READ_LIMIT",
    "PoolStatistics",
    "ClientStatistics",
    # errors
    "UpstreamError",
    "ConnectError",
    "ConnectionLostError",
    "ProtocolError",
    "ResponseTooLargeError",
    # request ids
    "REQUEST_ID_HEADER",
    "new_request_id",
    "request_id",
    "with_request_id",
]
