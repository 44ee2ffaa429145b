"""The envelope around every handler: request ids, deadlines, metrics, health, readiness."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from prometheus_client import Counter

from distsys.context import Context
from distsys.errors import DeadlineExceededError
from distsys.service import Request, Service, State, request_id_of
from tests.service.wire import WAIT, Connection, request, serving


@dataclass
class Probe:
    """What the handlers saw, for the test to check."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    calls: int = 0
    remaining: list[float | None] = field(default_factory=list)


def build(probe: Probe) -> Service:
    svc = Service("envelope", "2.0")
    orders_served = Counter(
        "orders_served", "Orders served by the handler", registry=svc.metrics.registry
    )

    @svc.get("/hang")
    async def hang() -> dict[str, str]:
        probe.calls += 1
        probe.started.set()
        try:
            await asyncio.Event().wait()  # never set: only the deadline ends this
        except asyncio.CancelledError:
            probe.cancelled.set()
            raise
        return {"never": "reached"}

    @svc.get("/budget")
    async def budget(ctx: Context) -> dict[str, object]:
        probe.remaining.append(ctx.remaining())
        return {"request_id": request_id_of(ctx)}

    @svc.get("/id")
    async def show_id(request: Request) -> dict[str, str]:
        return {"request_id": request.request_id}

    @svc.get("/downstream-timeout")
    async def downstream() -> dict[str, str]:
        raise DeadlineExceededError("the inventory call ran out of time")

    @svc.get("/orders/{id:int}")
    async def order(id: int) -> dict[str, int]:
        orders_served.inc()
        return {"id": id}

    return svc


@pytest.fixture
async def probe() -> Probe:
    return Probe()


@pytest.fixture
async def port(probe: Probe) -> AsyncIterator[int]:
    async with serving(build(probe)) as bound:
        yield bound


async def test_a_request_id_is_generated_when_absent_and_echoed(port: int) -> None:
    first = await request(port, "GET", "/id")
    second = await request(port, "GET", "/id")
    generated = first.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", generated)
    assert first.json() == {"request_id": generated}
    assert second.headers["x-request-id"] != generated


async def test_a_callers_request_id_is_kept_and_put_in_the_context(port: int) -> None:
    reply = await request(port, "GET", "/budget", headers={"X-Request-ID": "checkout-7f3a"})
    assert reply.headers["x-request-id"] == "checkout-7f3a"
    assert reply.json() == {"request_id": "checkout-7f3a"}


@pytest.mark.parametrize("bad", ["x" * 200, "tab\there"])
async def test_an_unreasonable_request_id_is_replaced(port: int, bad: str) -> None:
    reply = await request(port, "GET", "/id", headers={"X-Request-ID": bad})
    assert reply.headers["x-request-id"] != bad
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", reply.headers["x-request-id"])


async def test_each_request_log_line_carries_the_request_id(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="distsys.service.access"):
        await request(port, "GET", "/orders/5", headers={"X-Request-ID": "log-me"})
    lines = [r.getMessage() for r in caplog.records if r.name == "distsys.service.access"]
    assert any(re.fullmatch(r"log-me GET /orders/5 200 [\d.]+ms", line) for line in lines), lines


async def test_no_request_log_line_at_info(port: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        await request(port, "GET", "/orders/5")
    assert not [r for r in caplog.records if r.name == "distsys.service.access"]


async def test_the_deadline_cancels_the_handler_and_answers_504(port: int, probe: Probe) -> None:
    reply = await request(port, "GET", "/hang", headers={"X-Request-Timeout-Ms": "50"})
    assert reply.status == 504
    assert reply.json()["error"] == "deadline exceeded"
    assert reply.json()["request_id"] == reply.headers["x-request-id"]
    assert probe.started.is_set()
    await asyncio.wait_for(probe.cancelled.wait(), WAIT)  # the handler was cancelled, not left


async def test_a_spent_budget_is_504_without_starting_the_handler(port: int, probe: Probe) -> None:
    reply = await request(port, "GET", "/hang", headers={"X-Request-Timeout-Ms": "0"})
    assert reply.status == 504
    assert probe.calls == 0


@pytest.mark.parametrize("bad", ["-5", "1.5", "10s", "abc", "12345678901"])
async def test_an_invalid_timeout_header_is_400_naming_it(
    port: int, probe: Probe, bad: str
) -> None:
    reply = await request(port, "GET", "/hang", headers={"X-Request-Timeout-Ms": bad})
    assert reply.status == 400
    assert reply.json()["field"] == "X-Request-Timeout-Ms"
    assert "X-Request-Timeout-Ms" in reply.json()["error"]
    assert probe.calls == 0


async def test_the_handler_sees_the_budget_in_its_context(port: int, probe: Probe) -> None:
    await request(port, "GET", "/budget", headers={"X-Request-Timeout-Ms": "60000"})
    await request(port, "GET", "/budget")
    with_budget, without = probe.remaining
    assert with_budget is not None
    assert 0 < with_budget <= 60
    assert without is None


async def test_a_deadline_error_from_downstream_is_504(port: int) -> None:
    reply = await request(port, "GET", "/downstream-timeout")
    assert reply.status == 504


async def test_metrics_count_requests_by_route_template_and_status(port: int) -> None:
    for n in (1, 2, 3):
        await request(port, "GET", f"/orders/{n}")
    await request(port, "GET", "/orders/x")  # no route: counted as unmatched
    await request(port, "GET", "/hang", headers={"X-Request-Timeout-Ms": "0"})
    reply = await request(port, "GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.body.decode()
    assert 'http_requests_total{method="GET",route="/orders/{id:int}",status="200"} 3.0' in text
    assert 'http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    assert 'http_requests_total{method="GET",route="/hang",status="504"} 1.0' in text
    labels = 'method="GET",route="/orders/{id:int}",status="200"'
    assert f"http_request_duration_seconds_count{{{labels}}} 3.0" in text
    assert f'http_request_duration_seconds_bucket{{le="+Inf",{labels}}} 3.0' in text
    assert "http_requests_in_flight 0.0" in text
    assert 'distsys_service_state{state="running"} 1.0' in text
    info = r'instance="envelope-[0-9a-f]{8}",service="envelope",version="2.0"'
    assert re.search(r"distsys_service_info\{" + info + r"\} 1.0", text)
    assert "orders_served_total 3.0" in text  # the handler's own metric, same registry
    assert "/metrics" not in text  # scrapes and probes are not counted


async def test_the_in_flight_gauge_counts_a_request_in_progress(port: int, probe: Probe) -> None:
    conn = await Connection.open(port)
    try:
        await conn.send("GET", "/hang", headers={"X-Request-Timeout-Ms": "60000"})
        await asyncio.wait_for(probe.started.wait(), WAIT)
        text = (await request(port, "GET", "/metrics")).body.decode()
        assert "http_requests_in_flight 1.0" in text
    finally:
        await conn.close()


async def test_health_and_readiness_while_running(port: int) -> None:
    health = await request(port, "GET", "/healthz")
    assert health.status == 200
    assert health.json() == {"status": "ok", "state": "running"}
    ready = await request(port, "GET", "/readyz")
    assert ready.status == 200
    assert ready.json() == {"status": "ready", "state": "running"}
    assert (await request(port, "POST", "/healthz")).status == 405


async def test_readiness_is_503_before_running_and_while_draining() -> None:
    svc = Service("probe")
    release = asyncio.Event()
    seen: dict[str, object] = {}

    @svc.get("/slow")
    async def slow() -> dict[str, str]:
        await release.wait()
        return {"done": "yes"}

    async def during_stop() -> None:
        assert svc.address is not None
        ready = await request(svc.address[1], "GET", "/readyz")
        seen["ready"] = (ready.status, ready.json())
        health = await request(svc.address[1], "GET", "/healthz")
        seen["health"] = health.status
        release.set()

    def on_change(change: object) -> None:
        if svc.state is State.STOPPING:
            asyncio.get_running_loop().create_task(during_stop())

    svc.lifecycle.add_listener(on_change)
    async with serving(svc, drain_timeout=WAIT) as port:
        conn = await Connection.open(port)
        await conn.send("GET", "/slow")
        await asyncio.sleep(0.05)  # let the request arrive (it is only held in flight)
    # the block's exit stopped the service; the slow request kept the drain open
    assert seen["ready"] == (503, {"status": "draining", "state": "stopping"})
    assert seen["health"] == 200
    assert (await conn.read()).json() == {"done": "yes"}
    await conn.close()
    assert svc.state is State.TERMINATED


async def test_statistics_reports_state_address_and_counts(port: int) -> None:
    # the fixture's service is not reachable from here: build a second one
    svc = Service("stats")

    @svc.get("/ok")
    async def ok() -> dict[str, str]:
        return {}

    assert svc.statistics().state is State.NEW
    async with serving(svc) as bound:
        await request(bound, "GET", "/ok")
        await request(bound, "GET", "/missing")
        stats = svc.statistics()
        assert stats.state is State.RUNNING
        assert stats.address == ("127.0.0.1", bound)
        assert stats.requests == 2
        assert stats.in_flight == 0
        assert stats.server_errors == 0
        assert stats.registered is False
        assert stats.registry_reachable is None
    assert svc.statistics().state is State.TERMINATED


async def test_the_request_id_is_where_outgoing_calls_look_for_it() -> None:
    """distsys.http (and ServiceClient) forward the id they find in the Context."""
    from distsys.http import request_id

    svc = Service("ids")

    @svc.get("/id")
    async def show(ctx: Context) -> dict[str, str | None]:
        return {"in_context": request_id(ctx)}

    async with serving(svc) as port:
        reply = await request(port, "GET", "/id", headers={"X-Request-ID": "fwd-1"})
        assert reply.json() == {"in_context": "fwd-1"}
