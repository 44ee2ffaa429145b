"""The admin API: routes, services, rolling stats, Prometheus metrics, health, readiness."""

from __future__ import annotations

from distsys.backends import MemoryKV
from distsys.registry import Instance, Registry
from tests.gateway.client import Client, call, get
from tests.gateway.conftest import admin_port, config, eventually, port_of, running
from tests.gateway.upstream import Upstream
from tests.registry.faults import SwitchableKV


async def test_routes_services_and_stats(registry: Registry, upstreams: list[Upstream]) -> None:
    cfg = config(
        {"prefix": "/api", "service": "echo", "name": "api", "strip_prefix": True},
        {"prefix": "/o", "service": "other", "balancer": "least_outstanding", "strip_prefix": True},
    )
    async with running(cfg, registry) as gateway:
        port, admin = port_of(gateway), admin_port(gateway)
        for _ in range(6):
            assert (await get(port, "/api/hello")).status == 200
        assert (await get(port, "/o/status/500")).status == 500
        assert (await get(port, "/missing")).status == 404

        routes = (await get(admin, "/routes")).json()
        assert [(r["name"], r["service"]) for r in routes["routes"]] == [
            ("api", "echo"),
            ("/o", "other"),
        ]
        assert routes["routes"][0]["timeout"] == 30.0

        services = {s["service"]: s for s in (await get(admin, "/services")).json()["services"]}
        assert services["echo"]["balancer"] == "p2c_ewma"
        echo = services["echo"]["instances"]
        assert sorted(i["id"] for i in echo) == ["u0", "u1", "u2"]
        called = [i for i in echo if i["requests"]]
        assert called
        assert all(i["breaker"] == "closed" and i["outstanding"] == 0 for i in called)
        assert all(i["ewma_ms"] is not None for i in called)
        assert services["other"]["balancer"] == "least_outstanding"

        stats = (await get(admin, "/stats")).json()
        assert stats["window_seconds"] == 10
        api = stats["routes"]["api"]
        assert api["total"]["2xx"] == 6
        assert api["rates"]["2xx"] > 0
        assert stats["routes"]["/o"]["total"]["5xx"] == 1
        assert stats["routes"]["(unmatched)"]["total"]["4xx"] == 1


async def test_prometheus_metrics(registry: Registry, upstreams: list[Upstream]) -> None:
    async with running(config({"prefix": "/", "service": "other"}), registry) as gateway:
        await get(port_of(gateway), "/hello")
        await upstreams[0].stop()
        await get(port_of(gateway), "/hello")
        reply = await get(admin_port(gateway), "/metrics")
        assert reply.headers["content-type"].startswith("text/plain")
        text = reply.body.decode()
        assert 'distsys_gateway_requests_total{code="200",route="/"} 1.0' in text
        assert 'distsys_gateway_requests_total{code="503",route="/"} 1.0' in text
        assert 'distsys_gateway_request_duration_seconds_count{route="/"} 2.0' in text
        assert 'distsys_gateway_upstream_errors_total{kind="connect",route="/"}' in text
        assert 'distsys_gateway_breaker_state{instance="o0",service="other",state="closed"}' in text
        assert "distsys_gateway_connections" in text
        assert 'distsys_gateway_reloads{result="ok"} 0.0' in text


async def test_health_and_readiness(upstreams: list[Upstream]) -> None:
    kv = SwitchableKV(MemoryKV())
    registry = Registry(kv)  # type: ignore[arg-type]
    await registry.register(Instance("echo", "u0", "127.0.0.1", upstreams[0].port), ttl=60)
    async with running(config({"prefix": "/", "service": "echo"}), registry) as gateway:
        admin = admin_port(gateway)
        assert (await get(admin, "/healthz")).json() == {"status": "ok"}
        assert (await get(admin, "/readyz")).json() == {"status": "ready"}
        kv.down()
        await eventually(lambda: gateway.statistics().stale_services == ("echo",))
        ready = await get(admin, "/readyz")
        assert ready.status == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["stale_services"] == ["echo"]
        # Routing goes on with the last known instances.
        assert (await get(port_of(gateway), "/hello")).body == b"hello from u0"
        kv.restore()
        await eventually(lambda: gateway.statistics().stale_services == ())
    await registry.aclose()


async def test_admin_odds_and_ends(registry: Registry) -> None:
    async with running(config({"prefix": "/", "service": "other"}), registry) as gateway:
        admin = admin_port(gateway)
        assert (await get(admin, "/nope")).status == 404
        assert (await call(admin, "DELETE", "/routes")).status == 405
        async with Client(admin) as client:  # keep-alive, answered in order
            assert (await client.request("GET", "/healthz")).status == 200
            assert (await client.request("GET", "/readyz")).status == 200
        reload = await call(admin, "POST", "/reload")
        assert reload.status == 422  # no file to reload from
        assert "no file" in reload.json()["last_reload_error"]
