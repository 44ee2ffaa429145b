"""The transport's errors: where they sit in the tree, and what they say."""

from __future__ import annotations

from distsys.errors import DistsysError
from distsys.http import (
    ConnectError,
    ConnectionLostError,
    ProtocolError,
    ResponseTooLargeError,
    UpstreamError,
)


def test_every_error_is_an_upstream_error_and_a_connection_error() -> None:
    for cls in (ConnectError, ConnectionLostError, ProtocolError, ResponseTooLargeError):
        assert issubclass(cls, UpstreamError)
    assert issubclass(UpstreamError, DistsysError)
    assert issubclass(UpstreamError, ConnectionError)


def test_messages_name_the_address_and_once_known_the_instance() -> None:
    error = ConnectError("10.0.0.1:80", "connection refused")
    assert str(error) == "10.0.0.1:80: connection refused"
    error.service, error.instance = "orders", "o-1"
    assert str(error) == "orders/o-1 at 10.0.0.1:80: connection refused"
    error.instance = None
    assert str(error) == "orders at 10.0.0.1:80: connection refused"
    lost = ConnectionLostError("h:1", "gone", request_sent=False)
    assert not lost.request_sent
    too_big = ResponseTooLargeError("h:1", 10, size=11)
    assert too_big.limit == 10
    assert "limit of 10 bytes (Content-Length 11)" in str(too_big)
