"""Failures: breakers, dead instances, retries, deadlines, affinity, rate limits."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from distsys.registry import Instance, Registry, open_registry
from tests.gateway.client import Client, get
from tests.gateway.conftest import config, port_of, running
from tests.gateway.upstream import Upstream


async def test_a_dead_instance_is_retried_elsewhere(
    registry: Registry, upstreams: list[Upstream]
) -> None:
    await upstreams[1].stop()
    cfg = config({"prefix": "/", "service": "echo", "balancer": "round_robin", "retries": 2})
    async with running(cfg, registry) as gateway:
        port = port_of(gateway)
        replies = [await get(port, "/hello") for _ in range(9)]
        assert {r.status for r in replies} == {200}
        assert {r.body for r in replies} == {b"hello from u0", b"hello from u2"}
        stats = await get(gateway.admin_address[1], "/stats")  # type: ignore[index]
        assert stats.json()["routes"]["/"]["errors"]["connect"] >= 1


async def test_all_instances_down_is_503(registry: Registry, upstreams: list[Upstream]) -> None:
    for up in upstreams:
        await up.stop()
    async with running(config({"prefix": "/", "service": "echo", "retries": 3}), registry) as gw:
        reply = await get(port_of(gw), "/hello")
        assert reply.status == 503
        assert "no instance could be reached" in reply.json()["error"]
        assert reply.json()["request_id"] == reply.headers["x-request-id"]


async def test_no_instance_registered_is_503(registry: Registry) -> None:
    async with running(config({"prefix": "/", "service": "ghost"}), registry) as gateway:
        reply = await get(port_of(gateway), "/hello")
        assert reply.status == 503
        assert reply.json()["error"] == (
            "no instance of 'ghost' is available: no instance is registered"
        )


async def test_an_open_breaker_is_503_with_its_reason(
    registry: Registry, upstreams: list[Upstream]
) -> None:
    route = {
        "prefix": "/",
        "service": "other",
        "retries": 1,
        "breaker": {"minimum_calls": 3, "failure_rate": 0.5, "wait": "30s"},
    }
    async with running(config(route), registry) as gateway:
        port = port_of(gateway)
        for _ in range(3):
            assert (await get(port, "/status/500")).status == 500  # passed through, counted
        reply = await get(port, "/hello")
        assert reply.status == 503
        assert "circuit breaker" in reply.json()["error"]
        assert "other/o0" in reply.json()["error"]
        assert int(reply.headers["retry-after"]) >= 29
        services = (await get(gateway.admin_address[1], "/services")).json()  # type: ignore[index]
        (instance,) = services["services"][0]["instances"]
        assert (instance["breaker"], instance["ejected"]) == ("open", True)
    assert len(upstreams[0].seen) == 3  # the open breaker sent nothing more


async def test_5xx_answers_of_idempotent_requests_are_retried(
    registry: Registry, upstreams: list[Upstream]
) -> None:
    cfg = config({"prefix": "/", "service": "echo", "balancer": "round_robin", "retries": 3})
    async with running(cfg, registry) as gateway:
        reply = await get(port_of(gateway), "/status/503")
        assert reply.status == 503  # every instance said so: the last answer is relayed
        assert reply.body == b"503 from u" + reply.body[-1:]
        assert sum(len(up.seen) for up in upstreams) == 3
        post = await Client(port_of(gateway)).connect()
        assert (await post.request("POST", "/status/503", body=b"x")).status == 503
        await post.aclose()
        assert sum(len(up.seen) for up in upstreams) == 4  # a POST is not repeated


async def test_the_deadline_is_504_and_the_budget_is_forwarded(
    registry: Registry, upstreams: list[Upstream]
) -> None:
    route = {"prefix": "/", "service": "other", "timeout": "10s", "retries": 1}
    async with running(config(route), registry) as gateway:
        port = port_of(gateway)
        echo = (await get(port, "/echo", {"X-Request-Timeout-Ms": "5000"})).json()
        budget = int(echo["headers"]["x-request-timeout-ms"])
        assert 0 < budget < 5000  # the client's budget, less what the gateway spent
        echo = (await get(port, "/echo")).json()
        assert 5000 < int(echo["headers"]["x-request-timeout-ms"]) < 10000
        slow = await get(port, "/slow?ms=3000", {"X-Request-Timeout-Ms": "100"})
        assert slow.status == 504
        assert slow.json()["error"] == "deadline exceeded: no answer within 0.1s"
        spent = await get(port, "/hello", {"X-Request-Timeout-Ms": "0"})
        assert spent.status == 504
        async with Client(port) as client:  # the connection survives a 504
            assert (
                await client.request("GET", "/hang", {"X-Request-Timeout-Ms": "50"})
            ).status == 504
            assert (await client.request("GET", "/hello")).status == 200


async def test_consistent_hashing_sends_a_key_to_one_instance(
    registry: Registry, upstreams: list[Upstream]
) -> None:
    route = {
        "prefix": "/",
        "service": "echo",
        "balancer": "consistent_hash",
        "hash_on": "header:X-User",
    }
    async with running(config(route), registry) as gateway:
        port = port_of(gateway)
        homes = {}
        for user in ("ada", "bob", "cyd", "dan", "eve", "fay"):
            servers = {
                (await get(port, "/echo", {"X-User": user})).json()["server"] for _ in range(5)
            }
            assert len(servers) == 1
            homes[user] = servers.pop()
        assert len(set(homes.values())) > 1  # different keys spread


async def test_consistent_hashing_on_a_cookie_with_bounded_loads(
    registry: Registry, upstreams: list[Upstream]
) -> None:
    route = {
        "prefix": "/",
        "service": "echo",
        "balancer": "consistent_hash",
        "hash_on": "cookie:session",
        "hash_factor": 1.5,
    }
    async with running(config(route), registry) as gateway:
        port = port_of(gateway)
        async with Client(port) as client:
            for session in ("s1", "s2", "s3", "s4"):
                cookie = {"Cookie": f"theme=dark; session={session}"}
                servers = {
                    (await client.request("GET", "/echo", cookie)).json()["server"]
                    for _ in range(4)
                }
                assert len(servers) == 1  # a session sticks to one instance
        services = (await get(gateway.admin_address[1], "/services")).json()  # type: ignore[index]
        assert services["services"][0]["balancer"] == "consistent_hash"
        routes = (await get(gateway.admin_address[1], "/routes")).json()  # type: ignore[index]
        assert routes["routes"][0]["hash_on"] == "cookie:session"
        assert routes["routes"][0]["hash_factor"] == 1.5


async def test_local_rate_limit_is_429_with_retry_after(registry: Registry) -> None:
    # One token per 10 s: the third request is refused however slow the machine is.
    route = {"prefix": "/", "service": "other", "rate_limit": {"rate": 0.1, "burst": 2}}
    async with running(config(route), registry) as gateway:
        port = port_of(gateway)
        statuses = [(await get(port, "/hello")).status for _ in range(2)]
        assert statuses == [200, 200]
        limited = await get(port, "/hello")
        assert limited.status == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 10
        assert limited.json()["error"] == "rate limit of route '/' exceeded"


async def test_rate_limit_by_header_keeps_clients_apart(registry: Registry) -> None:
    route = {
        "prefix": "/",
        "service": "other",
        "rate_limit": {"rate": 0.1, "burst": 1, "key": "header:X-Api-Key"},
    }
    async with running(config(route), registry) as gateway:
        port = port_of(gateway)
        assert (await get(port, "/hello", {"X-Api-Key": "a"})).status == 200
        assert (await get(port, "/hello", {"X-Api-Key": "a"})).status == 429
        assert (await get(port, "/hello", {"X-Api-Key": "b"})).status == 200


@pytest.mark.backend("redis")
async def test_redis_rate_limit_is_shared_by_gateways(registry: Registry) -> None:
    name = f"shared-{uuid.uuid4().hex[:8]}"
    route = {
        "prefix": "/",
        "name": name,
        "service": "other",
        "rate_limit": {
            "rate": 0.2,
            "burst": 3,
            "key": "global",
            "redis_url": "redis://127.0.0.1:6379/0",
            "fail_open": False,
        },
    }
    async with running(config(route), registry) as one, running(config(route), registry) as two:
        statuses = []
        for gateway in (one, two, one, two):
            statuses.append((await get(port_of(gateway), "/hello")).status)
        assert statuses == [200, 200, 200, 429]  # three tokens for both gateways together
        limited = await get(port_of(one), "/hello")
        assert limited.status == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 5


async def test_registry_changes_are_followed(upstreams: list[Upstream]) -> None:
    cfg = config({"prefix": "/", "service": "late"})
    async with open_registry("memory://") as registry, running(cfg, registry) as gateway:
        port = port_of(gateway)
        assert (await get(port, "/hello")).status == 503
        await registry.register(Instance("late", "l1", "127.0.0.1", upstreams[2].port), ttl=60)
        replies = []

        async def served() -> bool:
            replies.append(await get(port, "/hello"))
            return replies[-1].status == 200

        async with asyncio.timeout(10):  # bounded; polls until the watch delivered it
            while not await served():  # noqa: ASYNC110  (no event tells when it is in)
                await asyncio.sleep(0.01)
        assert replies[-1].body == b"hello from u2"
