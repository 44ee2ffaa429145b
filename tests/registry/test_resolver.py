"""Resolver: a cached view that serves stale data through outages, and self-preservation."""

from __future__ import annotations

import asyncio

import pytest

from distsys.backends import MemoryKV
from distsys.errors import BackendUnavailableError, InvalidArgumentError
from distsys.registry import Instance, Registration, Registry, Resolver, Status
from distsys.testing import ManualClock
from tests.registry.faults import SwitchableKV


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


class World:
    """A registry on a switchable memory backend, driven by a ManualClock."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.kv = SwitchableKV(MemoryKV(clock=self.clock))
        self.registry = Registry(self.kv, clock=self.clock)  # type: ignore[arg-type]
        self.registrations: dict[str, Registration] = {}

    async def start(self, n: int, *, ttl: float = 3, heartbeat: float = 1) -> None:
        for i in range(n):
            instance = Instance("api", f"a{i:02}", "127.0.0.1", 9000 + i)
            self.registrations[instance.id] = await self.registry.register(
                instance, ttl=ttl, heartbeat=heartbeat
            )
        await settle()

    async def crash(self, *ids: str) -> None:
        for instance_id in ids:
            task = self.registrations.pop(instance_id)._task
            assert task is not None
            task.cancel()
        await settle()

    async def advance(self, seconds: float, step: float = 0.5) -> None:
        elapsed = 0.0
        while elapsed < seconds:
            self.clock.advance(step)
            elapsed += step
            await settle()

    async def close(self) -> None:
        for registration in self.registrations.values():
            if registration._task is not None:
                registration._task.cancel()
        await self.kv.aclose()


@pytest.fixture
async def world() -> World:
    w = World()
    yield w  # type: ignore[misc]
    await w.close()


def ids(instances: tuple[Instance, ...]) -> list[str]:
    return [i.id for i in instances]


async def test_follows_registrations_and_status(world: World) -> None:
    await world.start(2)
    seen: list[list[str]] = []
    async with world.registry.resolver("api") as resolver:
        resolver.subscribe(lambda available: seen.append(ids(available)))
        assert ids(resolver.available()) == ["a00", "a01"]
        await world.registry.register(Instance("api", "a02", "h", 1))
        await resolver.wait_for(lambda r: len(r.available()) == 3, timeout=5)
        await world.registrations["a00"].set_status(Status.DRAINING)
        await resolver.wait_for(lambda r: ids(r.available()) == ["a01", "a02"], timeout=5)
        assert len(resolver.instances()) == 3  # DRAINING is known, just not available
        await world.registrations.pop("a01").aclose()
        await resolver.wait_for(lambda r: len(r.instances()) == 2, timeout=5)
        assert ids(resolver.available()) == ["a02"]
        stats = resolver.statistics()
        assert (stats.instances, stats.available, stats.stale, stats.preserved) == (2, 1, False, 0)
    assert seen[0] == ["a00", "a01"]
    assert seen[-1] == ["a02"]


async def test_serves_the_last_known_view_while_the_backend_is_down(world: World) -> None:
    await world.start(3, ttl=30, heartbeat=10)
    async with world.registry.resolver("api", health_interval=1) as resolver:
        world.kv.down()
        await world.advance(2)
        stats = resolver.statistics()
        assert stats.stale
        assert stats.stale_since is not None
        assert stats.errors >= 1
        assert ids(resolver.available()) == ["a00", "a01", "a02"]  # still served
        await world.registrations.pop("a02").aclose()  # fails quietly: backend is down
        world.kv.restore()
        await world.registry.register(Instance("api", "a03", "h", 1))
        await world.advance(2)
        await resolver.wait_for(lambda r: not r.statistics().stale, timeout=5)
        await resolver.wait_for(lambda r: "a03" in ids(r.available()), timeout=5)
        assert resolver.statistics().resyncs >= 1
        assert resolver.statistics().stale_since is None


async def test_start_fails_clearly_when_the_backend_is_down(world: World) -> None:
    world.kv.down()
    resolver = world.registry.resolver("api")
    with pytest.raises(BackendUnavailableError, match="no snapshot"):
        await resolver.start(timeout=0.05)


async def test_a_few_expiries_are_removed_normally(world: World) -> None:
    await world.start(10)
    async with world.registry.resolver("api") as resolver:
        await world.crash("a03")
        await world.advance(4)
        await resolver.wait_for(lambda r: len(r.instances()) == 9, timeout=5)
        assert not resolver.statistics().self_preservation


async def test_mass_expiry_triggers_self_preservation(world: World) -> None:
    await world.start(10)
    async with world.registry.resolver("api", window=30, max_preservation=60) as resolver:
        await world.crash("a01", "a02", "a03")
        await world.advance(4)
        stats = resolver.statistics()
        assert stats.self_preservation
        assert stats.preserved == 3  # the first expiry (10%) was restored once it tripped
        assert len(resolver.available()) == 10
        # One comes back: it is no longer preserved.
        world.registrations["a02"] = await world.registry.register(
            Instance("api", "a02", "127.0.0.1", 9002), ttl=3, heartbeat=1
        )
        await resolver.wait_for(lambda r: r.statistics().preserved == 2, timeout=5)
        # The others never return: they are dropped after max_preservation.
        await world.advance(62, step=2)
        stats = resolver.statistics()
        assert not stats.self_preservation
        assert stats.preserved == 0
        assert ids(resolver.available()) == [f"a{i:02}" for i in range(10) if i not in (1, 3)]


async def test_a_partition_that_expires_everyone_is_held_until_they_return(world: World) -> None:
    await world.start(4, ttl=3, heartbeat=2.5)
    async with world.registry.resolver("api", health_interval=0.5) as resolver:
        world.kv.down()  # the instances cannot heartbeat; their leases run out meanwhile
        await world.advance(4)
        assert await world.kv.inner.list("distsys/services/api/") == []
        world.kv.restore()
        await world.advance(0.5)  # the next health check succeeds: resynchronise
        await resolver.wait_for(lambda r: not r.statistics().stale, timeout=5)
        stats = resolver.statistics()
        assert stats.self_preservation
        assert stats.preserved == 4
        assert len(resolver.available()) == 4  # held, not dropped
        # The instances' next heartbeats find their leases gone and register again.
        await world.advance(3)
        await resolver.wait_for(lambda r: r.statistics().preserved == 0, timeout=5)
        assert len(resolver.available()) == 4
        assert not resolver.statistics().self_preservation


async def test_self_preservation_can_be_disabled(world: World) -> None:
    await world.start(4)
    async with world.registry.resolver("api", self_preservation=1.0) as resolver:
        await world.crash("a00", "a01", "a02")
        await world.advance(4)
        assert ids(resolver.available()) == ["a03"]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("self_preservation", 1.5),
        ("self_preservation", -0.1),
        ("window", 0),
        ("health_interval", -1),
    ],
)
def test_bad_options_are_refused(world: World, option: str, value: float) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        Resolver(world.registry, "api", **{option: value})  # type: ignore[arg-type]
    assert info.value.field == option
