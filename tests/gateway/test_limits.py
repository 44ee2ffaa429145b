"""Limits: header size and count (431), body size (413), slow headers (408), idle close."""

from __future__ import annotations

import asyncio

from distsys.registry import Registry
from tests.gateway.client import Client, get
from tests.gateway.conftest import config, port_of, running
from tests.gateway.upstream import Upstream

ROUTE = {"prefix": "/", "service": "other"}


async def test_headers_too_large_is_431(registry: Registry, upstreams: list[Upstream]) -> None:
    cfg = config(ROUTE, limits={"max_header_bytes": 2048, "max_headers": 10})
    async with running(cfg, registry) as gateway:
        port = port_of(gateway)
        big = await get(port, "/hello", {"X-Big": "x" * 4000})
        assert big.status == 431
        assert big.json()["status"] == 431
        many = await get(port, "/hello", {f"X-H{i}": "v" for i in range(20)})
        assert many.status == 431
        async with Client(port) as client:  # a header that never ends is cut off too
            await client.send(b"GET /hello HTTP/1.1\r\nX-Endless: " + b"y" * 8000)
            reply = await client.reply()
            assert reply.status == 431
            assert await client.closed()
        assert (await get(port, "/hello", {"X-Small": "ok"})).status == 200
    assert not upstreams[0].seen[:-1]  # only the last one reached the upstream


async def test_body_too_large_is_413(registry: Registry, upstreams: list[Upstream]) -> None:
    cfg = config(ROUTE, limits={"max_body_bytes": 1000})
    async with running(cfg, registry) as gateway:
        port = port_of(gateway)
        async with Client(port) as client:  # announced: refused before anything is sent
            await client.send(b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
            reply = await client.reply()
            assert reply.status == 413
            assert await client.closed()
        async with Client(port) as client:  # chunked: refused once it passes the limit
            await client.send(
                b"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            for _ in range(4):
                await client.send(b"200\r\n" + b"z" * 512 + b"\r\n")
            reply = await client.reply()
            assert reply.status == 413
            assert await client.closed()
        async with Client(port) as client:
            ok = await client.request("POST", "/count", body=b"q" * 1000)
            assert ok.body == b"1000"
            again = await client.request("POST", "/count", body=b"q" * 10)  # still open
            assert again.body == b"10"
    assert [s.body_size for s in upstreams[0].seen] == [1000, 10]


async def test_slow_headers_get_408_while_others_are_served(registry: Registry) -> None:
    cfg = config(ROUTE, limits={"header_timeout": 0.3})
    async with running(cfg, registry) as gateway:
        port = port_of(gateway)
        async with Client(port) as slow:
            await slow.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n")
            drip = asyncio.create_task(_drip(slow))
            served = [(await get(port, "/hello")).status for _ in range(5)]
            assert served == [200] * 5
            reply = await slow.reply()
            assert reply.status == 408
            assert reply.json()["error"] == "the request headers took too long"
            assert await slow.closed()
            drip.cancel()
        async with Client(port) as silent:  # connected, never said a word: just closed
            assert await silent.closed()


async def _drip(client: Client) -> None:
    try:
        for i in range(100):
            await asyncio.sleep(0.05)
            await client.send(b"X-Drip-%d: 1\r\n" % i)
    except (ConnectionError, RuntimeError):
        pass


async def test_idle_keep_alive_connections_are_closed(registry: Registry) -> None:
    cfg = config(ROUTE, limits={"idle_timeout": 0.2})
    async with running(cfg, registry) as gateway, Client(port_of(gateway)) as client:
        assert (await client.request("GET", "/hello")).status == 200
        assert await client.closed()


async def test_expect_100_continue(registry: Registry, upstreams: list[Upstream]) -> None:
    async with running(config(ROUTE), registry) as gateway, Client(port_of(gateway)) as client:
        await client.send(
            b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert client.reader is not None
        interim = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        await client.send(b"hello")
        assert (await client.reply()).body == b"5"
    assert "expect" not in upstreams[0].seen[-1].headers
