"""A Resolver through a real backend outage: stale data served, then resynchronised.

Each test starts a server of its own on another loopback port (the shared ones are
never stopped), registers instances, kills the server with SIGKILL, checks that the
Resolver keeps serving the last known instances and says it is stale, restarts the
server and checks that the Resolver takes a fresh snapshot.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from distsys.registry import Instance, open_registry
from tests.servers import OwnEtcd, OwnRedis

OUTAGE_TIMEOUT = 60.0  # generous: etcd re-elects itself after a restart


async def ride_out_an_outage(url: str, kill: object, restart: object) -> None:
    async with open_registry(url) as registry:
        for n in range(3):
            await registry.register(Instance("api", f"a{n}", "127.0.0.1", 9000 + n), ttl=30)
        writer = open_registry(url)
        async with registry.resolver("api", health_interval=0.2) as resolver:
            await resolver.wait_for(lambda r: len(r.available()) == 3, timeout=OUTAGE_TIMEOUT)
            kill()  # type: ignore[operator]
            await resolver.wait_for(lambda r: r.statistics().stale, timeout=OUTAGE_TIMEOUT)
            stats = resolver.statistics()
            assert stats.stale_since is not None
            assert [i.id for i in resolver.available()] == ["a0", "a1", "a2"]  # still served
            await restart()  # type: ignore[operator]
            await resolver.wait_for(lambda r: not r.statistics().stale, timeout=OUTAGE_TIMEOUT)
            # A change made after the outage reaches the resolver: it resynchronised.
            await writer.register(Instance("api", "a9", "127.0.0.1", 9009), ttl=30)
            await resolver.wait_for(
                lambda r: "a9" in [i.id for i in r.available()], timeout=OUTAGE_TIMEOUT
            )
            assert resolver.statistics().resyncs >= 1
        await writer.aclose()


@pytest.mark.backend("redis")
async def test_resolver_survives_a_redis_outage(tmp_path: Path) -> None:
    server = OwnRedis(tmp_path)
    server.start()
    await server.ready()

    async def restart() -> None:
        server.start()
        await server.ready()

    try:
        # Redis keeps no data across the restart (no persistence): the registrations
        # come back through their heartbeats, and the resolver must not drop them meanwhile.
        await ride_out_an_outage(server.url(namespace="outage"), server.kill, restart)
    finally:
        server.kill()


@pytest.mark.backend("etcd")
async def test_resolver_survives_an_etcd_outage(tmp_path: Path) -> None:
    server = OwnEtcd(tmp_path)
    server.start()

    async def restart() -> None:
        await asyncio.to_thread(server.start)

    try:
        await ride_out_an_outage(server.url, server.kill, restart)
    finally:
        server.kill()
