"""Request bodies: bytes with Content-Length, async iterators chunked or with a length."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import pytest

from distsys.context import background, with_timeout
from distsys.errors import DeadlineExceededError, InvalidArgumentError
from distsys.http import ConnectionPool
from distsys.http._connection import Connection
from distsys.testing import ManualClock
from tests.http.conftest import eventually
from tests.http.server import TestServer


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part


async def test_bytes_body_is_sent_with_its_length(pool: ConnectionPool, server: TestServer) -> None:
    response = await pool.request("POST", "/upload", body=b"x" * 1000)
    assert await response.read() == b"1000"
    received = server.requests[0]
    assert received.headers["content-length"] == "1000"
    assert "transfer-encoding" not in received.headers


async def test_large_bytes_body(pool: ConnectionPool) -> None:
    response = await pool.request("PUT", "/upload", body=bytearray(3_000_000))
    assert await response.read() == b"3000000"


async def test_post_without_a_body_says_length_zero(
    pool: ConnectionPool, server: TestServer
) -> None:
    await (await pool.request("POST", "/upload")).read()
    await (await pool.request("GET", "/upload")).read()
    assert server.requests[0].headers["content-length"] == "0"
    assert "content-length" not in server.requests[1].headers


async def test_iterator_body_is_sent_chunked(pool: ConnectionPool, server: TestServer) -> None:
    response = await pool.request("POST", "/upload", body=chunks(b"ab", b"", b"cde"))
    assert await response.read() == b"5"
    received = server.requests[0]
    assert received.headers["transfer-encoding"] == "chunked"
    assert received.body == b"abcde"
    again = await pool.request("GET", "/hello")  # the connection is still in step
    assert await again.read() == b"hello from test"
    assert pool.statistics().reused == 1


async def test_iterator_body_with_a_content_length_is_sent_as_is(
    pool: ConnectionPool, server: TestServer
) -> None:
    body = chunks(b"abc", b"de")
    response = await pool.request("POST", "/upload", {"Content-Length": "5"}, body)
    assert await response.read() == b"5"
    received = server.requests[0]
    assert received.headers["content-length"] == "5"
    assert "transfer-encoding" not in received.headers


@pytest.mark.parametrize("parts", [(b"abc",), (b"abc", b"defg")])
async def test_iterator_body_must_match_its_content_length(
    pool: ConnectionPool, parts: tuple[bytes, ...]
) -> None:
    with pytest.raises(InvalidArgumentError, match="exactly 5 bytes"):
        await pool.request("POST", "/upload", {"Content-Length": "5"}, chunks(*parts))
    assert pool.statistics().connections == 0


async def test_iterator_of_str_is_refused(pool: ConnectionPool) -> None:
    async def text() -> AsyncIterator[str]:
        yield "no"

    with pytest.raises(InvalidArgumentError, match="bytes chunks"):
        await pool.request("POST", "/upload", body=text())  # type: ignore[arg-type]
    assert pool.statistics().connections == 0


async def test_large_streamed_upload(pool: ConnectionPool) -> None:
    async def many() -> AsyncIterator[bytes]:
        block = b"z" * 65536
        for _ in range(64):
            yield block

    response = await pool.request("POST", "/upload", body=many())
    assert await response.read() == str(64 * 65536).encode()


async def test_a_body_iterator_that_blocks_is_cut_by_the_deadline(
    pool: ConnectionPool,
) -> None:
    clock = ManualClock()
    ctx, _ = with_timeout(background(clock=clock), 1.0)
    forever = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"start"
        await forever.wait()
        yield b"never"

    task = asyncio.create_task(pool.request("POST", "/upload", body=slow(), ctx=ctx))
    await eventually(lambda: pool.statistics().connections == 1)
    await asyncio.sleep(0.01)
    clock.advance(1.0)
    with pytest.raises(DeadlineExceededError):
        async with asyncio.timeout(5):
            await task
    assert pool.statistics().connections == 0


async def test_an_error_in_the_body_iterator_propagates(pool: ConnectionPool) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"abc"
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        await pool.request("POST", "/upload", body=broken())
    assert pool.statistics().connections == 0


def answered(pool: ConnectionPool) -> bool:
    """Whether the pool's connections have finished their response (a peek at internals)."""
    connections = [o for o in gc.get_objects() if isinstance(o, Connection) and o._pool is pool]
    return bool(connections) and all(c.response is None for c in connections)


async def test_early_answer_while_uploading_closes_the_connection(
    pool: ConnectionPool, server: TestServer
) -> None:
    release = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"first"
        await release.wait()
        yield b"second"

    task = asyncio.create_task(pool.request("POST", "/hello-early", body=body()))
    # The server answers as soon as the head arrives, before the body ends.
    await eventually(lambda: server.bytes_received > 0)
    for conn in list(server.open):
        assert conn.transport is not None
        conn.transport.write(b"HTTP/1.1 413 X\r\nContent-Length: 3\r\n\r\nbig")
    await eventually(
        lambda: answered(pool)
    )  # the client has the answer while its body is still going
    release.set()
    async with asyncio.timeout(5):
        response = await task
    assert response.status == 413
    assert await response.read() == b"big"
    assert pool.statistics().connections == 0  # answered mid-body: never reused
