"""ServiceClient against three real servers on loopback, found through a memory registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest

from distsys.context import background, with_timeout
from distsys.errors import (
    DeadlineExceededError,
    DistsysError,
    InvalidArgumentError,
    NoInstancesError,
)
from distsys.http import ConnectError, ConnectionLostError, HTTPClient, with_request_id
from distsys.registry import Instance, Registry, Status, open_registry
from distsys.resilience import Backoff, BreakerState, CircuitBreaker, RetryBudget
from distsys.service import ServiceClient, UpstreamStatusError
from distsys.testing import ManualClock
from tests.http.conftest import eventually
from tests.http.server import Exchange, TestServer


class ZeroRandom:
    """Backoff without waiting: every jittered delay is 0."""

    def random(self) -> float:
        return 0.0


def no_wait() -> Backoff:
    return Backoff(0.025, 0.25, rng=ZeroRandom())


@pytest.fixture
async def servers() -> AsyncIterator[list[TestServer]]:
    started = [await TestServer(name=f"s{i}").start() for i in range(3)]
    yield started
    for server in started:
        await server.aclose()


@pytest.fixture
async def registry(servers: list[TestServer]) -> AsyncIterator[Registry]:
    async with open_registry("memory://") as opened:
        for i, server in enumerate(servers):
            await opened.register(Instance("echo", f"i{i}", "127.0.0.1", server.port), ttl=60)
        yield opened


def client_of(registry: Registry, **options: Any) -> ServiceClient:
    options.setdefault("backoff", no_wait())
    return ServiceClient("echo", registry, **options)


def served(servers: list[TestServer]) -> list[int]:
    return [len(s.requests) for s in servers]


def state_of(client: ServiceClient, instance_id: str) -> BreakerState | None:
    breaker = client.breaker(instance_id)
    return None if breaker is None else breaker.state


def route(servers: list[TestServer], path: str, handler: Callable[[Exchange], Any]) -> None:
    for server in servers:
        server.routes[path] = handler


# ------------------------------------------------------------------ balancing


async def test_round_robin_spreads_calls_evenly(
    registry: Registry, servers: list[TestServer]
) -> None:
    async with client_of(registry, balancer="round_robin") as client:
        for _ in range(30):
            response = await client.get("/hello")
            assert response.status == 200
    assert served(servers) == [10, 10, 10]


async def test_the_default_balancer_reaches_every_instance(
    registry: Registry, servers: list[TestServer]
) -> None:
    async with client_of(registry) as client:
        assert client.balancer.name == "p2c_ewma"
        async with asyncio.timeout(10):
            while min(served(servers)) == 0:
                await client.get("/hello")


async def test_the_client_follows_the_registry(
    registry: Registry, servers: list[TestServer]
) -> None:
    async with TestServer(name="late") as late, client_of(registry, balancer="round_robin") as c:
        registration = await registry.register(
            Instance("echo", "i3", "127.0.0.1", late.port), ttl=60
        )
        await eventually(lambda: len(c.balancer.instances) == 4)
        for _ in range(8):
            await c.get("/hello")
        assert len(late.requests) == 2
        await registration.aclose()
        await eventually(lambda: len(c.balancer.instances) == 3)
        for _ in range(6):
            await c.get("/hello")
        assert len(late.requests) == 2
        assert [s.id for s in c.statistics().instances] == ["i0", "i1", "i2"]


# ------------------------------------------------------------------- failover


async def test_a_killed_instance_is_failed_over(
    registry: Registry, servers: list[TestServer]
) -> None:
    budget = RetryBudget(min_retries=100)  # round robin keeps picking the dead one
    async with client_of(registry, balancer="round_robin", retry_budget=budget) as client:
        for _ in range(6):
            await client.get("/hello")
        await servers[1].stop()
        before = served(servers)
        for _ in range(30):
            response = await client.get("/echo")
            assert response.status == 200
            assert response.json()["server"] in ("s0", "s2")
        assert served(servers)[1] == before[1]
        stats = client.statistics()
        assert stats.retries > 0
        assert stats.succeeded == 36
        dead = next(s for s in stats.instances if s.id == "i1")
        assert dead.errors > 0


async def test_post_is_retried_when_nothing_was_sent(
    registry: Registry, servers: list[TestServer]
) -> None:
    await servers[0].stop()
    async with client_of(registry, balancer="round_robin") as client:
        for _ in range(3):
            response = await client.post("/echo", json={"n": 1})
            assert response.status == 200
        stats = client.statistics()
        assert stats.retries >= 1  # round robin came to the dead one at least once
        assert stats.attempts == 3 + stats.retries


async def test_post_is_not_retried_once_sent(registry: Registry, servers: list[TestServer]) -> None:
    async with client_of(registry) as client:
        with pytest.raises(ConnectionLostError) as caught:
            await client.post("/drop", content=b"order")
        assert caught.value.service == "echo"
        assert caught.value.instance in ("i0", "i1", "i2")
        assert f"echo/{caught.value.instance} at 127.0.0.1:" in str(caught.value)
        assert sum(served(servers)) == 1
        response = await client.post("/status/503")
        assert (response.status, response.attempts) == (503, 1)


async def test_post_marked_idempotent_is_retried(
    registry: Registry, servers: list[TestServer]
) -> None:
    async with client_of(registry) as client:
        response = await client.post("/status/503", idempotent=True)
        assert (response.status, response.attempts) == (503, 3)


async def test_idempotent_calls_try_each_instance_then_give_the_last_error(
    registry: Registry, servers: list[TestServer]
) -> None:
    async with client_of(registry) as client:
        with pytest.raises(ConnectionLostError) as caught:
            await client.get("/drop")
        assert served(servers) == [1, 1, 1]  # another instance each time
        assert caught.value.service == "echo"
        stats = client.statistics()
        assert (stats.attempts, stats.retries, stats.failed) == (3, 2, 1)


async def test_every_instance_down_raises_a_connect_error_naming_one(
    registry: Registry, servers: list[TestServer]
) -> None:
    for server in servers:
        await server.stop()
    async with client_of(registry) as client:
        with pytest.raises(ConnectError, match="connection refused") as caught:
            await client.get("/hello")
        assert caught.value.service == "echo"
        assert client.statistics().attempts == 3


# ------------------------------------------------------ breakers and ejection


async def test_breaker_opens_ejects_the_instance_and_readmits_it_after_recovery(
    registry: Registry, servers: list[TestServer]
) -> None:
    clock = ManualClock()

    def breaker(name: str) -> CircuitBreaker:
        return CircuitBreaker(
            name, minimum_calls=2, wait_duration=5.0, half_open_max_calls=1, clock=clock
        )

    budget = RetryBudget(min_retries=1000, clock=clock)
    port = servers[1].port
    async with client_of(
        registry, balancer="round_robin", breaker=breaker, retry_budget=budget, clock=clock
    ) as client:
        await servers[1].stop()
        async with asyncio.timeout(10):
            while state_of(client, "i1") is not BreakerState.OPEN:
                assert (await client.get("/hello")).status == 200
        stats = {s.id: s for s in client.statistics().instances}
        assert stats["i1"].ejected
        assert stats["i1"].breaker is BreakerState.OPEN
        tried = stats["i1"].requests
        for _ in range(10):
            await client.get("/hello")
        assert {s.id: s for s in client.statistics().instances}["i1"].requests == tried

        revived = await TestServer(name="s1", port=port).start()
        try:
            clock.advance(5.0)  # the ejection ends when the breaker admits a trial
            for _ in range(6):
                assert (await client.get("/hello")).status == 200
            stats = {s.id: s for s in client.statistics().instances}
            assert stats["i1"].breaker is BreakerState.CLOSED
            assert not stats["i1"].ejected
            assert len(revived.requests) >= 2
        finally:
            await revived.aclose()


async def test_a_forced_open_breaker_ejects_until_reset(registry: Registry) -> None:
    async with client_of(registry, balancer="round_robin") as client:
        for _ in range(3):
            await client.get("/hello")
        for key in ("i0", "i1", "i2"):
            breaker = client.breaker(key)
            assert breaker is not None
            breaker.force_open()
        with pytest.raises(NoInstancesError, match="all 3 instances are ejected"):
            await client.get("/hello")
        breaker = client.breaker("i2")
        assert breaker is not None
        breaker.reset()
        assert (await client.get("/echo")).json()["server"] == "s2"
        assert client.statistics().unavailable == 1


# --------------------------------------------------------- retries and budget


async def test_retries_are_bounded_by_the_budget(
    registry: Registry, servers: list[TestServer]
) -> None:
    budget = RetryBudget(share=0.0, min_retries=1)
    async with client_of(registry, retry_budget=budget) as client:
        first = await client.get("/status/503")
        second = await client.get("/status/503")
        assert (first.status, first.attempts) == (503, 2)
        assert (second.status, second.attempts) == (503, 1)
        stats = client.statistics()
        assert (stats.attempts, stats.retries, stats.retries_denied) == (3, 1, 2)
        assert stats.budget.denied == 2
        assert stats.failed == 2
    assert sum(served(servers)) == 3


async def test_retries_are_bounded_by_attempts(
    registry: Registry, servers: list[TestServer]
) -> None:
    async with client_of(registry, attempts=2) as client:
        response = await client.get("/status/502")
        assert (response.status, response.attempts) == (502, 2)
    assert sum(served(servers)) == 2


async def test_error_statuses_that_are_not_retried(
    registry: Registry, servers: list[TestServer]
) -> None:
    async with client_of(registry) as client:
        assert (await client.get("/status/500")).attempts == 1
        assert (await client.get("/status/404")).attempts == 1
    assert sum(served(servers)) == 2


async def test_no_retry_when_the_backoff_would_pass_the_deadline(
    registry: Registry, servers: list[TestServer]
) -> None:
    clock = ManualClock()
    backoff = Backoff(5.0, 5.0, jitter=False)
    async with client_of(registry, backoff=backoff, clock=clock, timeout=2.0) as client:
        response = await client.get("/status/503")
        assert response.attempts == 1
    assert sum(served(servers)) == 1


# -------------------------------------------------- deadlines and request ids


async def test_the_remaining_budget_is_forwarded(registry: Registry) -> None:
    clock = ManualClock()
    async with client_of(registry) as client:
        ctx, _ = with_timeout(background(clock=clock), 5.0)
        echoed = (await client.get("/echo", ctx=ctx)).json()
        assert echoed["headers"]["x-request-timeout-ms"] == "5000"
        clock.advance(1.5)
        echoed = (await client.get("/echo", ctx=ctx)).json()
        assert echoed["headers"]["x-request-timeout-ms"] == "3500"
        default = (await client.get("/echo")).json()["headers"]["x-request-timeout-ms"]
        assert 9000 < int(default) <= 10000  # the client's own 10 s
        unbounded = (await client.get("/echo", timeout=None)).json()["headers"]
        assert "x-request-timeout-ms" not in unbounded


async def test_the_deadline_is_respected(registry: Registry, servers: list[TestServer]) -> None:
    clock = ManualClock()
    async with client_of(registry, clock=clock, timeout=3.0) as client:
        call = asyncio.create_task(client.get("/hang"))
        await eventually(lambda: sum(served(servers)) == 1)
        clock.advance(3.0)
        with pytest.raises(DeadlineExceededError, match="'echo'"):
            async with asyncio.timeout(5):
                await call
        assert sum(served(servers)) == 1  # the caller's deadline is not retried
        assert client.statistics().failed == 1


async def test_an_attempt_timeout_moves_the_call_to_another_instance(
    registry: Registry, servers: list[TestServer]
) -> None:
    hung: list[str] = []

    async def first_hangs(ex: Exchange) -> None:
        if not hung:
            hung.append(ex.server.name)
            await asyncio.Event().wait()
        ex.reply(200, ex.server.name.encode())

    route(servers, "/maybe", first_hangs)
    clock = ManualClock()
    async with client_of(registry, clock=clock, attempt_timeout=1.0) as client:
        call = asyncio.create_task(client.get("/maybe"))
        await eventually(lambda: bool(hung))
        clock.advance(1.0)
        async with asyncio.timeout(5):
            response = await call
        assert response.status == 200
        assert response.attempts == 2
        assert response.text != hung[0]
        slow = next(s for s in client.statistics().instances if s.requests and s.errors)
        assert slow.errors == 1


async def test_request_id_from_the_caller_the_context_or_new(
    registry: Registry, servers: list[TestServer]
) -> None:
    async with client_of(registry) as client:
        given = await client.get("/echo", headers={"x-request-id": "from-header"})
        assert given.json()["headers"]["x-request-id"] == "from-header"
        ctx = with_request_id(background(), "from-context")
        carried = await client.get("/echo", ctx=ctx)
        assert carried.json()["headers"]["x-request-id"] == "from-context"
        made = (await client.get("/echo")).json()["headers"]["x-request-id"]
        other = (await client.get("/echo")).json()["headers"]["x-request-id"]
        assert made
        assert made != other
        await client.get("/status/503")  # three attempts, one id
        ids = {r.headers["x-request-id"] for s in servers for r in s.requests[-1:]}
        assert len(ids) == 1


# ------------------------------------------------------------------- errors


async def test_no_instance_registered() -> None:
    async with ServiceClient("nobody", "memory://") as client:
        with pytest.raises(NoInstancesError) as caught:
            await client.get("/")
        assert caught.value.service == "nobody"
        assert caught.value.reason == "no instance is registered"


async def test_all_instances_draining(servers: list[TestServer]) -> None:
    async with open_registry("memory://") as registry:
        for i, server in enumerate(servers[:2]):
            instance = Instance("echo", f"d{i}", "127.0.0.1", server.port, status=Status.DRAINING)
            await registry.register(instance, ttl=60)
        async with client_of(registry) as client:
            with pytest.raises(NoInstancesError, match="all 2 instances are draining"):
                await client.get("/hello")


async def test_status_errors_are_returned_and_raised_on_demand(registry: Registry) -> None:
    async with client_of(registry) as client:
        response = await client.get("/status/404")
        assert not response.ok
        with pytest.raises(UpstreamStatusError) as caught:
            response.raise_for_status()
        error = caught.value
        assert (error.status, error.service, error.response) == (404, "echo", response)
        assert error.instance == response.instance.id
        assert f"echo/{error.instance} at {error.address} answered 404 to GET /status/404" == str(
            error
        )
        ok = await client.get("/hello")
        assert ok.raise_for_status() is ok


async def test_json_in_and_out(registry: Registry) -> None:
    class Echo(msgspec.Struct):
        method: str
        body: str
        query: dict[str, str]

    async with client_of(registry) as client:
        response = await client.put("/echo", json={"a": [1, 2]}, params={"q": "x y"})
        echoed = response.json(Echo)
        assert (echoed.method, echoed.body, echoed.query) == ("PUT", '{"a":[1,2]}', {"q": "x y"})
        assert response.json()["headers"]["content-type"] == "application/json"
        assert (await client.delete("/echo")).json()["method"] == "DELETE"
        assert "ServiceResponse 200" in repr(response)
        with pytest.raises(InvalidArgumentError, match="json"):
            await client.post("/echo", json={}, content=b"{}")


# ---------------------------------------------------------------- lifecycle


async def test_statistics_per_instance(registry: Registry) -> None:
    async with client_of(registry, balancer="round_robin") as client:
        for _ in range(6):
            await client.get("/hello")
        stats = client.statistics()
        assert stats.service == "echo"
        assert (stats.requests, stats.succeeded, stats.attempts, stats.retries) == (6, 6, 6, 0)
        assert [s.requests for s in stats.instances] == [2, 2, 2]
        for record in stats.instances:
            assert record.latency_mean is not None
            assert record.latency_max is not None
            assert record.latency_max >= record.latency_mean > 0
            assert record.breaker is BreakerState.CLOSED
        assert stats.budget.requests == 6
        assert not stats.stale


async def test_shared_resolver_and_transport_are_not_closed(registry: Registry) -> None:
    resolver = registry.resolver("echo")
    await resolver.start()
    http = HTTPClient()
    async with ServiceClient("echo", resolver=resolver, http=http) as client:
        assert (await client.get("/hello")).status == 200
    assert not http.closed
    assert len(resolver.available()) == 3
    await resolver.aclose()
    await http.aclose()


async def test_calls_start_the_client_and_a_closed_client_refuses(registry: Registry) -> None:
    client = client_of(registry)
    assert (await client.get("/hello")).status == 200
    await client.aclose()
    await client.aclose()
    with pytest.raises(DistsysError, match="closed"):
        await client.get("/hello")


def test_settings_are_validated(registry: Registry) -> None:
    with pytest.raises(InvalidArgumentError, match="registry"):
        ServiceClient("echo")
    with pytest.raises(InvalidArgumentError, match="attempts"):
        ServiceClient("echo", registry, attempts=0)
    with pytest.raises(InvalidArgumentError, match="balancer"):
        ServiceClient("echo", registry, balancer="fastest")
    with pytest.raises(InvalidArgumentError, match="timeout"):
        ServiceClient("echo", registry, timeout=0)
    with pytest.raises(InvalidArgumentError, match="retry_statuses"):
        ServiceClient("echo", registry, retry_statuses=[700])
    with pytest.raises(InvalidArgumentError, match="resolver"):
        ServiceClient("echo", resolver=registry.resolver("other"))
