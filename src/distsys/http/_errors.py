"""The errors of the HTTP transport, all rooted at :class:`UpstreamError`::

    DistsysError
    └── UpstreamError (ConnectionError)      an upstream HTTP server failed: .address, .reason,
        │                                    .service and .instance when a ServiceClient knows them
        ├── ConnectError                     no connection could be made (refused, unreachable,
        │                                    connect timeout): nothing was sent, any request
        │                                    may be retried elsewhere
        ├── ConnectionLostError              the connection closed or was reset before the
        │                                    response was complete: .request_sent
        ├── ProtocolError                    the response broke HTTP/1.1 (garbage status line,
        │                                    bad framing, header section over the limits)
        └── ResponseTooLargeError            the body is larger than ``read(limit=...)``: .limit

A deadline or cancellation of the request's :class:`~distsys.context.Context` raises
:class:`~distsys.errors.DeadlineExceededError` (a ``TimeoutError``) or
:class:`~distsys.errors.CanceledError`, never one of these.
"""

from __future__ import annotations

from distsys.errors import DistsysError

__all__ = [
    "ConnectError",
    "ConnectionLostError",
    "ProtocolError",
    "ResponseTooLargeError",
    "UpstreamError",
]


class UpstreamError(DistsysError, ConnectionError):
    """An upstream HTTP server could not be used: see the subclasses.

    Attributes:
        address: the upstream's ``host:port``.
        reason: what went wrong, in words.
        service: the service the upstream is an instance of, when the caller knows it
            (set by ``ServiceClient``), else None.
        instance: the instance id, when known, else None.
    """

    def __init__(
        self,
        address: str,
        reason: str,
        *,
        service: str | None = None,
        instance: str | None = None,
    ) -> None:
        super().__init__(address, reason)
        self.address = address
        self.reason = reason
        self.service = service
        self.instance = instance

    def __str__(self) -> str:
        where = self.address
        if self.service is not None:
            who = self.service if self.instance is None else f"{self.service}/{self.instance}"
            where = f"{who} at {self.address}"
        return f"{where}: {self.reason}"


class ConnectError(UpstreamError):
    """No connection could be made: refused, unreachable, or the connect timeout passed.

    Nothing of the request was sent, so any request (idempotent or not) may be retried on
    another instance.
    """


class ConnectionLostError(UpstreamError):
    """The connection closed or was reset before the whole response arrived.

    Attributes:
        request_sent: True if some of the request may have reached the server (so only an
            idempotent request may be retried), False if none of it was written.
    """

    def __init__(
        self,
        address: str,
        reason: str,
        *,
        request_sent: bool = True,
        service: str | None = None,
        instance: str | None = None,
    ) -> None:
        super().__init__(address, reason, service=service, instance=instance)
        self.request_sent = request_sent


class ProtocolError(UpstreamError):
    """The upstream's response is not valid HTTP/1.1, or exceeds the header limits.

    The connection it came on is closed, never reused.
    """


class ResponseTooLargeError(UpstreamError):
    """The response body is larger than the limit given to ``Response.read``.

    Attributes:
        limit: the limit in bytes.
    """

    def __init__(self, address: str, limit: int, *, size: int | None = None) -> None:
        told = f" (Content-Length {size})" if size is not None else ""
        super().__init__(address, f"response body larger than the limit of {limit} bytes{told}")
        self.limit = limit
