"""Serving in-process: registration while RUNNING, readiness when the registry is down, the
lifecycle of serve(), startup and shutdown hooks."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from distsys.backends import MemoryKV
from distsys.registry import ChangeKind, Registry, Status, open_registry
from distsys.service import LifecycleError, Service, State, Transition
from distsys.testing import ManualClock
from tests.registry.faults import SwitchableKV
from tests.service.wire import WAIT, request, serving


def hello_service(name: str = "orders", **options: object) -> Service:
    svc = Service(name, "3.1.4", **options)  # type: ignore[arg-type]

    @svc.get("/hello")
    async def hello() -> dict[str, str]:
        return {"message": "hello"}

    return svc


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def wait_ready(port: int, status: str, registry: str | None = None) -> dict[str, object]:
    """Poll /readyz until it reports ``status`` (and ``registry``), within the test bound."""
    async with asyncio.timeout(WAIT):
        while True:
            body: dict[str, object] = (await request(port, "GET", "/readyz")).json()
            if body["status"] == status and (registry is None or body.get("registry") == registry):
                return body
            await asyncio.sleep(0.01)


async def test_registered_with_its_real_address_while_running_and_removed_on_stop() -> None:
    registry = open_registry("memory://")
    svc = hello_service(instance_id="orders-1", zone="eu-1", metadata={"team": "shop"})
    async with serving(svc, registry=registry) as port:
        (instance,) = await registry.instances("orders")
        assert (instance.id, instance.host, instance.port) == ("orders-1", "127.0.0.1", port)
        assert instance.metadata == {"version": "3.1.4", "team": "shop"}
        assert instance.zone == "eu-1"
        assert instance.status is Status.UP
        assert svc.instance == instance
        assert svc.registration is not None
        ready = await request(port, "GET", "/readyz")
        assert ready.json() == {"status": "ready", "state": "running", "registry": "ok"}
        assert svc.statistics().registered
    assert await registry.instances("orders") == []
    assert svc.registration is None
    await registry.aclose()


async def test_stopping_goes_draining_then_leaves_the_registry() -> None:
    registry = open_registry("memory://")
    svc = hello_service(instance_id="orders-1")
    changes: list[tuple[ChangeKind, Status | None]] = []
    watching = asyncio.Event()

    async def watch() -> None:
        async for change in registry.watch("orders"):
            watching.set()
            changes.append((change.kind, change.instance.status if change.instance else None))
            if change.kind is ChangeKind.REMOVED:
                return

    watcher = asyncio.create_task(watch())
    async with serving(svc, registry=registry):
        await asyncio.wait_for(watching.wait(), WAIT)
    await asyncio.wait_for(watcher, WAIT)
    kinds_and_statuses = [c for c in changes if c[0] is not ChangeKind.RESET]
    assert kinds_and_statuses[-3:] == [
        (ChangeKind.UPDATED, Status.DRAINING),
        (ChangeKind.UPDATED, Status.DOWN),
        (ChangeKind.REMOVED, Status.DOWN),
    ]
    await registry.aclose()


async def test_a_registry_url_is_opened_and_closed_by_the_service(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    svc = hello_service()
    async with serving(svc, registry=url) as port, open_registry(url) as reader:
        (instance,) = await reader.instances("orders")
        assert instance.port == port != 0
    async with open_registry(url) as reader:
        assert await reader.instances("orders") == []


async def test_readiness_degrades_but_stays_200_while_the_registry_is_unreachable() -> None:
    clock = ManualClock()
    kv = SwitchableKV(MemoryKV(clock=clock))
    registry = Registry(kv, clock=clock)  # type: ignore[arg-type]
    svc = hello_service(ttl=3, heartbeat=1)
    async with serving(svc, registry=registry) as port:
        await wait_ready(port, "ready", "ok")
        kv.down()
        for _ in range(3):  # three heartbeats fail
            clock.advance(1)
            await settle()
        reply = await request(port, "GET", "/readyz")
        assert reply.status == 200
        body = reply.json()
        assert body["status"] == "degraded"
        assert body["registry"] == "unreachable"
        assert body["since_heartbeat"] >= 2
        assert svc.statistics().registry_reachable is False
        assert (await request(port, "GET", "/hello")).status == 200  # still serving
        kv.restore()
        clock.advance(1)  # the next heartbeat goes through (re-registering: the lease ran out)
        await wait_ready(port, "ready", "ok")
        assert [i.status for i in await registry.instances("orders")] == [Status.UP]


async def test_a_registry_down_at_startup_does_not_stop_the_service_from_serving() -> None:
    clock = ManualClock()
    kv = SwitchableKV(MemoryKV(clock=clock))
    registry = Registry(kv, clock=clock)  # type: ignore[arg-type]
    kv.down()
    svc = hello_service(ttl=3, heartbeat=1)
    async with serving(svc, registry=registry) as port:
        body = await wait_ready(port, "degraded", "unregistered")
        assert body["state"] == "running"
        assert (await request(port, "GET", "/hello")).status == 200
        kv.restore()
        clock.advance(1)  # the background retry registers it
        await wait_ready(port, "ready", "ok")
        (instance,) = await registry.instances("orders")
        assert instance.port == port


async def test_serve_walks_the_lifecycle_and_runs_the_hooks_in_order() -> None:
    svc = hello_service()
    seen: list[str] = []
    svc.lifecycle.add_listener(lambda change: seen.append(change.new.name))

    @svc.on_startup
    async def open_pool() -> None:
        seen.append(f"startup hook in {svc.state.name}")

    @svc.on_shutdown
    async def close_pool() -> None:
        seen.append("shutdown hook 1")

    @svc.on_shutdown
    async def close_cache() -> None:
        seen.append("shutdown hook 2")

    async with serving(svc) as port:
        assert (await request(port, "GET", "/hello")).status == 200
    assert seen == [
        "STARTING",
        "startup hook in STARTING",
        "RUNNING",
        "STOPPING",
        "shutdown hook 2",
        "shutdown hook 1",
        "TERMINATED",
    ]


async def test_a_service_is_served_once() -> None:
    svc = hello_service()
    async with serving(svc):
        with pytest.raises(LifecycleError, match="served once"):
            await svc.serve(handle_signals=False)
    with pytest.raises(LifecycleError):
        await svc.serve(handle_signals=False)


def test_stopping_a_service_that_never_started_terminates_it() -> None:
    svc = hello_service()
    svc.stop()
    assert svc.state is State.TERMINATED


async def test_a_failing_startup_hook_fails_the_service_and_registers_nothing() -> None:
    registry = open_registry("memory://")
    svc = hello_service()
    heard: list[Transition] = []
    svc.lifecycle.add_listener(heard.append)

    @svc.on_startup
    async def broken() -> None:
        raise ConnectionRefusedError("the database is not there")

    with pytest.raises(ConnectionRefusedError, match="database"):
        await asyncio.wait_for(svc.serve(registry=registry, handle_signals=False), WAIT)
    assert svc.state is State.FAILED
    assert isinstance(svc.lifecycle.failure, ConnectionRefusedError)
    assert heard[-1].new is State.FAILED
    assert await registry.instances("orders") == []
    await registry.aclose()


async def test_a_port_in_use_fails_the_service() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        svc = hello_service()
        with pytest.raises(OSError, match="in use"):
            await svc.serve(port=taken.getsockname()[1], handle_signals=False)
    assert svc.state is State.FAILED


async def test_cancelling_serve_deregisters_and_terminates() -> None:
    registry = open_registry("memory://")
    svc = hello_service()
    task = asyncio.create_task(svc.serve(registry=registry, handle_signals=False))
    await asyncio.wait_for(svc.lifecycle.wait_for(State.RUNNING), WAIT)
    assert len(await registry.instances("orders")) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT)
    assert svc.state is State.TERMINATED
    assert await registry.instances("orders") == []
    await registry.aclose()


async def test_serve_validates_its_arguments() -> None:
    svc = hello_service()
    with pytest.raises(ValueError, match="port"):
        await svc.serve(port=70000)
    with pytest.raises(ValueError, match="drain_timeout"):
        await svc.serve(drain_timeout=-1)
    with pytest.raises(TypeError, match="registry"):
        await svc.serve(registry=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="did you mean sqlite"):
        await svc.serve(registry="sqlit:///x.db")
    assert svc.state is State.NEW  # refused before starting: it can still be served


async def test_during_the_drain_delay_the_instance_is_draining_and_still_serves() -> None:
    registry = open_registry("memory://")
    svc = hello_service()
    seen: dict[str, object] = {}

    async def while_draining() -> None:
        assert svc.address is not None
        async with asyncio.timeout(WAIT):
            async for change in registry.watch("orders"):
                if any(i.status is Status.DRAINING for i in change.instances):
                    break
        seen["hello"] = (await request(svc.address[1], "GET", "/hello")).status
        seen["ready"] = (await request(svc.address[1], "GET", "/readyz")).status
        svc.stop(force=True)  # cut the delay short, as a second SIGTERM does

    def on_change(change: Transition) -> None:
        if change.new is State.STOPPING:
            asyncio.get_running_loop().create_task(while_draining())

    svc.lifecycle.add_listener(on_change)
    async with serving(svc, registry=registry, drain_delay=WAIT):
        pass
    assert seen == {"hello": 200, "ready": 503}
    assert await registry.instances("orders") == []
    await registry.aclose()


async def test_stop_may_be_called_from_another_thread() -> None:
    svc = hello_service()
    task = asyncio.create_task(svc.serve(handle_signals=False))
    await asyncio.wait_for(svc.lifecycle.wait_for(State.RUNNING), WAIT)
    await asyncio.to_thread(svc.stop)
    await asyncio.wait_for(task, WAIT)
    assert svc.state is State.TERMINATED
