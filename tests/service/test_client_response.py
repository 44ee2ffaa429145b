"""ServiceResponse: body helpers and raise_for_status."""

from __future__ import annotations

import msgspec
import pytest

from distsys.http import Headers
from distsys.registry import Instance
from distsys.service import ServiceResponse, UpstreamStatusError


def response(status: int, content: bytes = b"") -> ServiceResponse:
    return ServiceResponse(
        status,
        Headers([(b"Content-Type", b"application/json")]),
        content,
        service="orders",
        instance=Instance("orders", "o-1", "10.0.0.7", 8080),
        method="GET",
        path="/orders/7",
    )


def test_body_helpers() -> None:
    answer = response(200, b'{"id": 7, "note": "caf\xc3\xa9"}')
    assert answer.ok
    assert answer.json() == {"id": 7, "note": "café"}
    assert answer.text == '{"id": 7, "note": "café"}'
    assert answer.headers["content-type"] == "application/json"
    assert answer.attempts == 1
    with pytest.raises(msgspec.ValidationError):
        answer.json(list[int])
    with pytest.raises(msgspec.DecodeError):
        response(200, b"not json").json()


@pytest.mark.parametrize("status", [400, 404, 500, 503])
def test_raise_for_status(status: int) -> None:
    with pytest.raises(UpstreamStatusError) as caught:
        response(status).raise_for_status()
    error = caught.value
    assert (error.service, error.instance, error.address, error.status) == (
        "orders",
        "o-1",
        "10.0.0.7:8080",
        status,
    )
    assert str(error) == f"orders/o-1 at 10.0.0.7:8080 answered {status} to GET /orders/7"


def test_success_statuses_pass() -> None:
    for status in (200, 204, 301, 399):
        ok = response(status)
        assert ok.raise_for_status() is ok
