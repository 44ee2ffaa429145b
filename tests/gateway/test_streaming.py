"""Bodies stream through both ways, with backpressure, never held whole.

A 50 MB body is larger than the transport's whole-body read limit (16 MiB) and than the
gateway's body buffer (256 KiB) by far: it can only pass if it streams. Backpressure is
seen from the outside: a client that stops reading makes the upstream's writes stall,
and an upstream that stops reading makes the client's writes stall — the gateway holds
no more than its buffers in between.
"""

from __future__ import annotations

import asyncio
import socket

from distsys.http import DEFAULT_READ_LIMIT
from distsys.registry import Registry
from tests.gateway.client import Client
from tests.gateway.conftest import config, eventually, port_of, running
from tests.gateway.upstream import Upstream

SIZE = 50 * 1024 * 1024
ROUTE = {"prefix": "/", "service": "other", "timeout": 60}


async def test_a_50_mb_upload_streams_through(
    registry: Registry, upstreams: list[Upstream]
) -> None:
    assert SIZE > DEFAULT_READ_LIMIT
    cfg = config(ROUTE, limits={"max_body_bytes": "64MiB"})
    async with running(cfg, registry) as gateway, Client(port_of(gateway)) as client:
        await client.send(b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % SIZE)
        block = b"u" * (1024 * 1024)
        for _ in range(SIZE // len(block)):
            await client.send(block)
        reply = await client.reply(timeout=60)
        assert reply.status == 200
        assert reply.body == str(SIZE).encode()
        chunked = await client.request(  # chunked in, chunked out to the upstream
            "POST", "/count", {"Transfer-Encoding": "chunked"}, b"5\r\nhello\r\n0\r\n\r\n"
        )
        assert chunked.body == b"5"
    assert upstreams[0].seen[0].headers["content-length"] == str(SIZE)
    assert upstreams[0].seen[1].headers["transfer-encoding"] == "chunked"


async def test_a_50_mb_download_streams_through(
    registry: Registry, upstreams: list[Upstream]
) -> None:
    async with running(config(ROUTE), registry) as gateway:
        for chunked in (0, 1):
            async with Client(port_of(gateway)) as client:
                client.parsed.keep_body = False  # count it, do not keep it
                reply = await client.request(
                    "GET", f"/big?size={SIZE}&chunked={chunked}", timeout=60
                )
                assert reply.status == 200
                assert reply.body == str(SIZE).encode()


async def test_a_client_that_does_not_read_stalls_the_upstream(
    registry: Registry, upstreams: list[Upstream]
) -> None:
    async with running(config(ROUTE), registry) as gateway:
        sock = socket.create_connection(("127.0.0.1", port_of(gateway)))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_sendall(sock, b"GET /big?size=%d HTTP/1.1\r\nHost: t\r\n\r\n" % SIZE)
            # The client reads nothing: the gateway's socket buffer fills, it stops
            # reading the upstream, whose writes stall (it sees pause_writing).
            up = upstreams[0]
            await eventually(lambda: up.write_pauses > 0, timeout=20)
            stalled_at = up.body_sent
            await asyncio.sleep(0.3)
            assert up.body_sent - stalled_at < 4 * 1024 * 1024  # it stays stalled
            assert up.body_sent < SIZE // 2
            received = 0
            while received < SIZE:  # now read it all
                data = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 20)
                assert data
                received += len(data)
            assert up.body_sent == SIZE
        finally:
            sock.close()


async def test_an_upstream_that_does_not_read_stalls_the_client(
    registry: Registry, upstreams: list[Upstream]
) -> None:
    up = upstreams[0]
    cfg = config(ROUTE, limits={"max_body_bytes": "64MiB"})
    async with running(cfg, registry) as gateway:
        up.pause_reading()
        sock = socket.create_connection(("127.0.0.1", port_of(gateway)))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        sock.setblocking(False)
        try:
            sock.send(b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % SIZE)
            block = memoryview(b"d" * (1024 * 1024))
            sent = 0
            stuck_since = None
            loop = asyncio.get_running_loop()
            give_up = loop.time() + 20
            while loop.time() < give_up:  # write without waiting until nothing more goes
                try:
                    sent += sock.send(block)
                    stuck_since = None
                except BlockingIOError:
                    stuck_since = stuck_since or loop.time()
                    if loop.time() - stuck_since > 0.5:
                        break
                    await asyncio.sleep(0.01)
            # Kernel buffers on both hops plus the gateway's 256 KiB: far from 50 MB.
            assert 0 < sent < 16 * 1024 * 1024
            up.resume_reading()
            await loop.sock_sendall(sock, bytes(SIZE - sent))
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += await asyncio.wait_for(loop.sock_recv(sock, 65536), 30)
            assert answer.startswith(b"HTTP/1.1 200")
            assert answer.endswith(str(SIZE).encode())
        finally:
            sock.close()
