"""Response framing over real sockets: lengths, chunks, close-delimited, no-body statuses."""

from __future__ import annotations

import pytest

from distsys.http import (
    ConnectionLostError,
    ConnectionPool,
    ProtocolError,
    ResponseTooLargeError,
)
from tests.http.conftest import eventually
from tests.http.server import TestServer


async def test_content_length_body_and_connection_reuse(pool: ConnectionPool) -> None:
    for _ in range(3):
        response = await pool.request("GET", "/hello")
        assert response.status == 200
        assert response.headers["content-type"] == "text/plain"
        assert response.content_length == len(b"hello from test")
        assert await response.read() == b"hello from test"
    stats = pool.statistics()
    assert (stats.opened, stats.reused, stats.idle) == (1, 2, 1)


async def test_chunked_body_streams_chunk_by_chunk(pool: ConnectionPool) -> None:
    response = await pool.request("GET", "/chunked?n=40&size=100")
    received = [chunk async for chunk in response]
    assert b"".join(received) == b"".join(bytes([97 + i % 26]) * 100 for i in range(40))
    assert response.content_length is None
    assert response.complete
    assert pool.statistics().idle == 1  # chunked framing ends the message: kept


async def test_close_delimited_body_ends_at_eof_and_is_not_reused(pool: ConnectionPool) -> None:
    response = await pool.request("GET", "/eof")
    assert await response.read() == b"until the end"
    await eventually(lambda: pool.statistics().connections == 0)
    assert pool.statistics().closed == 1


async def test_connection_close_response_is_read_then_closed(pool: ConnectionPool) -> None:
    response = await pool.request("GET", "/close")
    assert await response.read() == b"bye"
    assert pool.statistics().connections == 0
    again = await pool.request("GET", "/hello")
    assert await again.read() == b"hello from test"
    assert pool.statistics().opened == 2


async def test_request_asking_to_close_is_not_reused(
    pool: ConnectionPool, server: TestServer
) -> None:
    response = await pool.request("GET", "/hello", {"Connection": "close"})
    assert await response.read() == b"hello from test"
    assert pool.statistics().connections == 0
    assert server.requests[0].headers["connection"] == "close"


async def test_head_response_has_no_body_even_with_a_length(pool: ConnectionPool) -> None:
    response = await pool.request("HEAD", "/head")
    assert response.headers["content-length"] == "11"
    assert await response.read() == b""
    after = await pool.request("GET", "/hello")  # the connection stays in step
    assert await after.read() == b"hello from test"
    assert pool.statistics().reused == 1


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses_complete_at_their_headers(
    pool: ConnectionPool, status: int
) -> None:
    response = await pool.request("GET", f"/status/{status}")
    assert response.status == status
    assert response.complete
    assert await response.read() == b""
    after = await pool.request("GET", "/hello")
    assert await after.read() == b"hello from test"
    assert pool.statistics().opened == 1


async def test_informational_responses_are_skipped(pool: ConnectionPool) -> None:
    response = await pool.request("GET", "/continue")
    assert response.status == 200
    assert await response.read() == b"after 100"


async def test_large_body_is_streamed_with_backpressure(
    server: TestServer,
) -> None:
    size = 32 * 1024 * 1024
    async with ConnectionPool("127.0.0.1", server.port, read_buffer=65536) as pool:
        response = await pool.request("GET", f"/big?size={size}")
        # Do not read: the kernel buffers fill, then the server has to hold the rest.
        await eventually(lambda: server.pending_writes() > 0, timeout=20)
        assert response.buffered < 1024 * 1024  # read_buffer plus a read or two, not 32 MiB
        total = 0
        async for chunk in response:
            total += len(chunk)
            assert response.buffered < 1024 * 1024
        assert total == size
        assert pool.statistics().idle == 1


async def test_read_refuses_a_body_announced_larger_than_the_limit(
    pool: ConnectionPool,
) -> None:
    response = await pool.request("GET", "/big?size=10000000")
    with pytest.raises(ResponseTooLargeError) as caught:
        await response.read(limit=1000)
    assert caught.value.limit == 1000
    assert "10000000" in str(caught.value)
    assert pool.statistics().connections == 0  # still arriving: the connection is closed


async def test_read_stops_a_chunked_body_at_the_limit(pool: ConnectionPool) -> None:
    response = await pool.request("GET", "/chunked?n=20&size=200")
    with pytest.raises(ResponseTooLargeError):
        await response.read(limit=1000)
    await eventually(lambda: pool.statistics().connections == 0)


async def test_reset_in_the_middle_of_the_body(pool: ConnectionPool) -> None:
    response = await pool.request("GET", "/reset")
    assert response.status == 200
    with pytest.raises(ConnectionLostError, match="before the response's end"):
        await response.read()
    assert pool.statistics().connections == 0


async def test_garbage_status_line_is_a_protocol_error(pool: ConnectionPool) -> None:
    with pytest.raises(ProtocolError, match="malformed response") as caught:
        await pool.request("GET", "/garbage")
    assert caught.value.address == pool.address
    assert pool.statistics().connections == 0
    fine = await pool.request("GET", "/hello")  # a fresh connection works
    assert await fine.read() == b"hello from test"


async def test_upgrade_is_refused(pool: ConnectionPool) -> None:
    with pytest.raises(ProtocolError, match="switched protocols"):
        await pool.request("GET", "/upgrade")
    assert pool.statistics().connections == 0


async def test_too_many_headers(pool: ConnectionPool) -> None:
    with pytest.raises(ProtocolError, match="more than 100 headers"):
        await pool.request("GET", "/many-headers?n=200")
    assert pool.statistics().connections == 0


async def test_header_count_limit_is_configurable(server: TestServer) -> None:
    async with ConnectionPool("127.0.0.1", server.port, max_headers=300) as pool:
        response = await pool.request("GET", "/many-headers?n=200")
        assert len(response.headers) == 201  # and Content-Length
        assert await response.read() == b"ok"


@pytest.mark.parametrize("size", [70_000, 300_000, 2_000_000])
async def test_header_section_larger_than_the_limit(pool: ConnectionPool, size: int) -> None:
    with pytest.raises(ProtocolError, match="larger than 65536 bytes"):
        await pool.request("GET", f"/big-header?size={size}")
    assert pool.statistics().connections == 0


async def test_closing_an_unread_response_closes_its_connection(pool: ConnectionPool) -> None:
    response = await pool.request("GET", "/big?size=10000000")
    async with response:
        first = await response.__anext__()
        assert first
    assert pool.statistics().connections == 0
    with pytest.raises(ConnectionLostError, match="closed before its end"):
        await response.read()


async def test_closing_a_complete_response_keeps_its_connection(pool: ConnectionPool) -> None:
    response = await pool.request("GET", "/hello")
    await response.aclose()
    assert pool.statistics().idle == 1
