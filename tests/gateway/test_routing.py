"""Routing over real sockets: prefixes, strip and rewrite, methods, hosts, forwarded headers."""

from __future__ import annotations

from distsys.registry import Registry
from tests.gateway.client import Client, call, get
from tests.gateway.conftest import config, port_of, running
from tests.gateway.upstream import Upstream


async def test_prefix_strip_and_rewrite(registry: Registry, upstreams: list[Upstream]) -> None:
    cfg = config(
        {"prefix": "/", "service": "echo"},
        {"prefix": "/api", "service": "echo", "strip_prefix": True},
        {"prefix": "/api/orders", "service": "echo", "rewrite": "/v1/orders"},
    )
    async with running(cfg, registry) as gateway:
        port = port_of(gateway)
        assert (await get(port, "/api/echo?q=1")).json()["target"] == "/echo?q=1"
        assert (await get(port, "/api/orders/7?x=y")).body.endswith(b" /v1/orders/7?x=y")
        assert (await get(port, "/echo")).json()["target"] == "/echo"
        assert (await get(port, "/apiary")).body.startswith(b"u")  # "/" took it, as is


async def test_methods_and_hosts(registry: Registry, upstreams: list[Upstream]) -> None:
    cfg = config(
        {"prefix": "/w", "service": "echo", "methods": ["POST"]},
        {"prefix": "/h", "service": "other", "host": "admin.example.com"},
        {"prefix": "/h", "service": "echo", "name": "any-host"},
    )
    async with running(cfg, registry) as gateway:
        port = port_of(gateway)
        assert (await call(port, "POST", "/w/echo", body=b"x")).status == 200
        refused = await get(port, "/w/echo")
        assert refused.status == 405
        assert refused.headers["allow"] == "POST"
        assert refused.json()["status"] == 405
        admin = await get(port, "/h/echo", {"Host": "Admin.Example.com:8080"})
        assert admin.json()["server"] == "u0"  # "other" has u0 only
        seen_by = {(await get(port, "/h/echo", {"Host": "x"})).json()["server"] for _ in range(12)}
        assert len(seen_by) > 1  # "echo" has three


async def test_unknown_route_is_a_json_404(registry: Registry) -> None:
    async with running(config({"prefix": "/api", "service": "echo"}), registry) as gateway:
        reply = await get(port_of(gateway), "/nowhere", {"X-Request-ID": "req-42"})
        assert reply.status == 404
        assert reply.headers["content-type"] == "application/json"
        assert reply.json() == {
            "error": "no route matches the path",
            "status": 404,
            "request_id": "req-42",
        }


async def test_forwarded_headers(registry: Registry, upstreams: list[Upstream]) -> None:
    async with running(config({"prefix": "/", "service": "other"}), registry) as gateway:
        port = port_of(gateway)
        reply = await get(
            port,
            "/echo",
            {
                "X-Request-ID": "abc-123",
                "X-Forwarded-For": "10.1.2.3",
                "Connection": "keep-alive, X-Secret",
                "X-Secret": "hop",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
                "X-Custom": "kept",
            },
        )
        seen = reply.json()["headers"]
        assert seen["x-request-id"] == "abc-123"
        assert reply.headers["x-request-id"] == "abc-123"
        assert seen["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
        assert seen["x-forwarded-proto"] == "http"
        assert seen["x-custom"] == "kept"
        assert seen["host"] == "test"
        for hop in ("x-secret", "keep-alive", "te"):
            assert hop not in seen
        assert "connection" not in seen  # HTTP/1.1 upstream: keep-alive needs no header
        fresh = (await get(port, "/echo", {"X-Request-ID": "bad id with spaces"})).json()
        assert fresh["headers"]["x-request-id"] != "bad id with spaces"
        assert fresh["headers"]["x-request-id"]


async def test_keep_alive_both_sides(registry: Registry, upstreams: list[Upstream]) -> None:
    async with running(config({"prefix": "/", "service": "other"}), registry) as gateway:
        async with Client(port_of(gateway)) as client:
            for i in range(20):
                reply = await client.request("GET", f"/hello?i={i}")
                assert reply.status == 200
                assert "connection" not in reply.headers
        assert len(upstreams[0].seen) == 20
        assert len({s.headers["x-request-id"] for s in upstreams[0].seen}) == 20
        # one upstream connection served them all (pooled, kept alive)
        assert len(upstreams[0].conns) == 1


async def test_pipelined_requests_are_answered_in_order(registry: Registry) -> None:
    cfg = config({"prefix": "/", "service": "other"})
    async with running(cfg, registry) as gateway, Client(port_of(gateway)) as client:
        data = b"".join(
            b"GET /slow?ms=%d HTTP/1.1\r\nHost: t\r\nX-Request-ID: r%d\r\n\r\n" % (ms, i)
            for i, ms in enumerate((60, 1, 30))
        )
        await client.send(data)
        ids = [(await client.reply()).headers["x-request-id"] for _ in range(3)]
        assert ids == ["r0", "r1", "r2"]


async def test_http10_and_connection_close(registry: Registry) -> None:
    async with running(config({"prefix": "/", "service": "other"}), registry) as gateway:
        async with Client(port_of(gateway)) as client:
            await client.send(b"GET /big?size=70000&chunked=1 HTTP/1.0\r\n\r\n")
            reply = await client.reply()
            assert reply.status == 200
            assert len(reply.body) == 70000
            assert await client.closed()
        async with Client(port_of(gateway)) as client:
            reply = await client.request("GET", "/hello", {"Connection": "close"})
            assert reply.headers["connection"] == "close"
            assert await client.closed()


async def test_head_and_no_body_statuses(registry: Registry) -> None:
    cfg = config({"prefix": "/", "service": "other"})
    async with running(cfg, registry) as gateway, Client(port_of(gateway)) as client:
        head = await client.request("HEAD", "/hello")
        assert head.status == 200
        assert head.body == b""
        assert head.headers["content-length"] == "13"  # len(b"hello from u0")
        after = await client.request("GET", "/hello")
        assert after.body == b"hello from u0"


async def test_dot_segments_and_garbage_are_refused(registry: Registry) -> None:
    async with running(config({"prefix": "/public", "service": "other"}), registry) as gateway:
        port = port_of(gateway)
        assert (await get(port, "/public/../admin")).status == 400
        assert (await get(port, "/public/%2e%2e/admin")).status == 400
        async with Client(port) as client:
            await client.send(b"NOT HTTP AT ALL\r\n\r\n")
            reply = await client.reply()
            assert reply.status == 400
            assert await client.closed()
