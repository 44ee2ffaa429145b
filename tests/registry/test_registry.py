"""Registry: register with a lease, heartbeats, graceful and ungraceful departures."""

from __future__ import annotations

import asyncio
import logging

import pytest

from distsys.backends import MemoryKV
from distsys.errors import ArgumentTypeError, InvalidArgumentError, UnknownSchemeError
from distsys.registry import ChangeKind, Instance, Registry, Status, open_registry
from distsys.testing import ManualClock


async def settle(rounds: int = 10) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def registry(clock: ManualClock) -> Registry:
    reg = Registry(MemoryKV(clock=clock), clock=clock, owns_kv=True)
    yield reg  # type: ignore[misc]
    await reg.aclose()


def orders(n: int, **fields: object) -> Instance:
    return Instance("orders", f"o{n}", "127.0.0.1", 8000 + n, **fields)  # type: ignore[arg-type]


async def test_register_list_and_deregister(registry: Registry) -> None:
    async with await registry.register(orders(1), ttl=10) as registration:
        await registry.register(orders(2, zone="b", weight=3), ttl=10)
        listed = await registry.instances("orders")
        assert [i.id for i in listed] == ["o1", "o2"]
        assert listed[1].zone == "b"
        assert listed[1].weight == 3
        assert await registry.services() == ["orders"]
        entry = await registry.kv.get("distsys/services/orders/o1")
        assert entry is not None
        assert entry.lease == registration.lease
    assert [i.id for i in await registry.instances("orders")] == ["o2"]


async def test_heartbeats_keep_an_instance_alive(registry: Registry, clock: ManualClock) -> None:
    registration = await registry.register(orders(1), ttl=3, heartbeat=1)
    await settle()
    for _ in range(10):
        clock.advance(1)
        await settle()
    assert [i.id for i in await registry.instances("orders")] == ["o1"]
    assert registration.statistics().heartbeats >= 9
    await registration.aclose()


async def test_a_crashed_instance_expires_and_watchers_see_it_expired(
    registry: Registry, clock: ManualClock
) -> None:
    registration = await registry.register(orders(1), ttl=3, heartbeat=1)
    changes = registry.watch("orders")
    reset = await anext(changes)
    assert reset.kind is ChangeKind.RESET
    assert [i.id for i in reset.instances] == ["o1"]
    assert registration._task is not None
    registration._task.cancel()  # the process "dies": no more heartbeats, no goodbye
    await settle()
    clock.advance(3)
    removed = await asyncio.wait_for(anext(changes), 5)
    assert removed.kind is ChangeKind.REMOVED
    assert removed.expired is True
    assert removed.instances == ()
    await changes.aclose()  # type: ignore[attr-defined]


async def test_a_graceful_deregistration_is_not_an_expiry(registry: Registry) -> None:
    registration = await registry.register(orders(1), ttl=3)
    changes = registry.watch("orders")
    await anext(changes)
    await registration.aclose()
    down = await asyncio.wait_for(anext(changes), 5)
    assert down.kind is ChangeKind.UPDATED
    assert down.instance is not None
    assert down.instance.status is Status.DOWN
    removed = await asyncio.wait_for(anext(changes), 5)
    assert (removed.kind, removed.expired) == (ChangeKind.REMOVED, False)
    await registration.aclose()  # idempotent
    await changes.aclose()  # type: ignore[attr-defined]


async def test_status_changes_are_published(registry: Registry) -> None:
    registration = await registry.register(orders(1))
    await registration.set_status(Status.DRAINING)
    (listed,) = await registry.instances("orders")
    assert listed.status is Status.DRAINING
    assert not listed.available
    assert registration.instance.status is Status.DRAINING


async def test_a_lost_lease_is_replaced_at_the_next_heartbeat(
    registry: Registry, clock: ManualClock
) -> None:
    registration = await registry.register(orders(1), ttl=3, heartbeat=1)
    await settle()  # the heartbeat task is now waiting for its first beat
    first_lease = registration.lease
    await registry.kv.revoke(first_lease)  # e.g. the backend expired it during a partition
    assert await registry.instances("orders") == []
    clock.advance(1)
    await settle()
    assert [i.id for i in await registry.instances("orders")] == ["o1"]
    stats = registration.statistics()
    assert stats.reregistrations == 1
    assert stats.lease != first_lease


async def test_foreign_and_corrupt_entries_are_skipped_with_a_warning(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    await registry.register(orders(1))
    await registry.kv.put("distsys/services/orders/garbage", b"{not json")
    await registry.kv.put("distsys/services/orders/alien", b'{"some": "other app"}')
    await registry.kv.put(  # a valid record under the wrong key
        "distsys/services/orders/o9",
        b'{"service":"orders","id":"o7","host":"h","port":1}',
    )
    with caplog.at_level(logging.WARNING, logger="distsys.registry"):
        listed = await registry.instances("orders")
    assert [i.id for i in listed] == ["o1"]
    assert registry.skipped_entries == 3
    assert "garbage" in caplog.text
    changes = registry.watch("orders")
    reset = await anext(changes)
    assert [i.id for i in reset.instances] == ["o1"]
    await changes.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("ttl", "heartbeat", "field"),
    [
        (0, None, "ttl"),
        (-1, None, "ttl"),
        (3, 3, "heartbeat"),
        (3, 5, "heartbeat"),
        (3, 0, "heartbeat"),
    ],
)
async def test_bad_timing_is_refused(
    registry: Registry, ttl: float, heartbeat: float | None, field: str
) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        await registry.register(orders(1), ttl=ttl, heartbeat=heartbeat)
    assert info.value.field == field
    assert await registry.instances("orders") == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"service": ""}, "service"),
        ({"service": "has space"}, "service"),
        ({"id": ""}, "id"),
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"weight": 0}, "weight"),
        ({"host": ""}, "host"),
    ],
)
def test_bad_instances_are_refused_naming_the_field(fields: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"service": "s", "id": "i", "host": "h", "port": 1}
    with pytest.raises(InvalidArgumentError) as info:
        Instance(**{**base, **fields})  # type: ignore[arg-type]
    assert info.value.field == field


async def test_bad_service_names_are_refused_when_reading(registry: Registry) -> None:
    with pytest.raises(InvalidArgumentError, match="service"):
        await registry.instances("")
    with pytest.raises(ArgumentTypeError, match="instance"):
        await registry.register("orders")  # type: ignore[arg-type]


def test_open_registry_by_url() -> None:
    registry = open_registry("memory://", clock=ManualClock())
    assert isinstance(registry.kv, MemoryKV)
    with pytest.raises(UnknownSchemeError, match="did you mean etcd"):
        open_registry("etc://localhost")


def test_instance_address_and_json_round_trip() -> None:
    assert orders(1).address == "127.0.0.1:8001"
    assert Instance("s", "i", "::1", 80).address == "[::1]:80"
