"""Reload: new routes for new requests, old routes for those in flight, bad configs refused."""

from __future__ import annotations

import asyncio
import logging
import os
import textwrap
from pathlib import Path

import pytest

from distsys.gateway import Gateway
from distsys.registry import Registry
from tests.gateway.client import Client, get
from tests.gateway.conftest import admin_port, config, eventually, port_of, running
from tests.gateway.upstream import Upstream


async def test_a_good_reload_reroutes_while_requests_in_flight_finish(
    registry: Registry, upstreams: list[Upstream]
) -> None:
    before = config({"prefix": "/", "service": "other"})  # u0
    after = config({"prefix": "/", "service": "echo", "balancer": "round_robin"})
    async with running(before, registry) as gateway:
        port = port_of(gateway)
        in_flight = [asyncio.create_task(get(port, "/slow?ms=300")) for _ in range(5)]
        await eventually(lambda: len(upstreams[0].seen) == 5)
        assert await gateway.reload(after)
        moved = {(await get(port, "/hello")).body for _ in range(6)}
        assert moved == {b"hello from u0", b"hello from u1", b"hello from u2"}
        done = await asyncio.gather(*in_flight)
        assert [r.body for r in done] == [b"slow from u0"] * 5  # finished on the old route
        stats = gateway.statistics()
        assert (stats.reloads, stats.reload_errors, stats.last_reload_error) == (1, 0, None)


async def test_a_bad_reload_keeps_the_routes_in_force(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    good = config({"prefix": "/api", "service": "other"})
    async with running(good, registry) as gateway:
        port = port_of(gateway)
        bad = config({"prefix": "/api", "service": "other", "timeout": "2x"})
        with caplog.at_level(logging.ERROR, logger="distsys.gateway"):
            assert not await gateway.reload(bad)
        (logged,) = [r for r in caplog.records if r.name == "distsys.gateway"]
        assert "reload refused, keeping the configuration in force" in logged.getMessage()
        assert "routes[0].timeout='2x'" in logged.getMessage()
        assert (await get(port, "/api/hello")).status == 200
        stats = gateway.statistics()
        assert stats.reload_errors == 1
        assert stats.last_reload_error is not None
        assert stats.last_reload_error.startswith("routes[0].timeout='2x'")
        routes = (await get(admin_port(gateway), "/routes")).json()
        assert routes["last_reload_error"] == stats.last_reload_error
        assert [r["prefix"] for r in routes["routes"]] == ["/api"]
        moved = config({"prefix": "/api", "service": "other"}, listen="127.0.0.1:1")
        assert not await gateway.reload(moved)
        assert "listen" in str(gateway.statistics().last_reload_error)
        assert "restart" in str(gateway.statistics().last_reload_error)


def _toml(port: int, prefix: str, service: str, extra: str = "") -> str:
    return textwrap.dedent(
        f"""
        registry = "memory://"
        listen = "127.0.0.1:{port}"
        admin = "127.0.0.1:0"
        reload_interval = "50ms"

        [[routes]]
        prefix = "{prefix}"
        service = "{service}"
        {extra}
        """
    )


async def test_the_file_is_watched(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(_toml(0, "/old", "other"))
    gateway = Gateway(path, registry=registry)
    await gateway.start()
    try:
        port = port_of(gateway)
        assert (await get(port, "/old/hello")).status == 200
        path.write_text(_toml(0, "/new", "other"))
        os.utime(path, ns=(1, 2_000_000_000))  # a new mtime even on a coarse clock
        await eventually(lambda: gateway.statistics().reloads == 1)
        assert (await get(port, "/new/hello")).status == 200
        assert (await get(port, "/old/hello")).status == 404
        path.write_text(_toml(0, "/broken", "other", 'timeout = "soon"'))
        os.utime(path, ns=(1, 3_000_000_000))
        await eventually(lambda: gateway.statistics().reload_errors == 1)
        error = gateway.statistics().last_reload_error
        assert error is not None
        assert error.startswith(f"{path}: routes[0].timeout='soon'")
        assert (await get(port, "/new/hello")).status == 200
        async with Client(admin_port(gateway)) as admin:  # POST /reload does it by hand
            path.write_text(_toml(0, "/manual", "other"))
            reply = await admin.request("POST", "/reload")
            assert reply.status == 200
        assert (await get(port, "/manual/hello")).status == 200
    finally:
        await gateway.stop()


async def test_stop_lets_requests_in_flight_finish(
    registry: Registry, upstreams: list[Upstream]
) -> None:
    gateway = Gateway(config({"prefix": "/", "service": "other"}), registry=registry)
    await gateway.start()
    port = port_of(gateway)
    async with Client(port) as idle:
        assert (await idle.request("GET", "/hello")).status == 200
        slow = asyncio.create_task(get(port, "/slow?ms=300"))
        await eventually(lambda: len(upstreams[0].seen) == 2)
        await gateway.stop(drain_timeout=5)
        reply = await slow
        assert reply.status == 200
        assert reply.headers["connection"] == "close"
        assert await idle.closed()
    assert gateway.statistics().state == "stopped"
