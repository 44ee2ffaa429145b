"""What every backend gets from the broker base: one fetch at a time, statistics, no copies."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from distsys.backends import parse_url
from distsys.context import background, with_timeout
from distsys.errors import ArgumentTypeError
from distsys.mq import (
    HEADER_DEADLINE,
    BrokerBase,
    BrokerStatistics,
    MemoryBroker,
    Outgoing,
    RawDelivery,
    Subscription,
)
from distsys.mq._message import Depth
from distsys.testing import ManualClock

WAIT = 30.0


class GatedFetcher:
    """A fetcher whose fetches wait for the test to hand them deliveries."""

    def __init__(self) -> None:
        self.fetches = 0
        self.gate: asyncio.Future[list[RawDelivery]] | None = None

    async def fetch(self, max_messages: int, timeout: float) -> list[RawDelivery]:
        self.fetches += 1
        self.gate = asyncio.get_running_loop().create_future()
        return await self.gate

    async def ack(self, deliveries: Sequence[RawDelivery]) -> list[bool]:
        return [True] * len(deliveries)

    async def nack(self, delivery: RawDelivery, delay: float) -> bool:
        return True

    async def close(self) -> None:
        return None


class GatedBroker(BrokerBase):
    def __init__(self) -> None:
        self.manual = ManualClock()
        super().__init__(parse_url("memory://"), clock=self.manual)
        self.fetcher = GatedFetcher()
        self.stored: list[Outgoing] = []

    async def _open_fetcher(self, subscription: Subscription) -> GatedFetcher:
        return self.fetcher

    async def _publish(self, topic: str, messages: list[Outgoing]) -> list[str]:
        self.stored.extend(messages)
        return [str(len(self.stored) - i) for i in range(len(messages))]

    async def _depth(self, topic: str, group: str) -> Depth:
        return Depth(0, 0)

    async def _aclose(self) -> None:
        return None


def raw(n: int) -> RawDelivery:
    return RawDelivery(str(n), "t", b"x", {}, None, 1, 0.0, n)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_concurrent_receives_share_one_fetch() -> None:
    broker = GatedBroker()
    sub = broker.subscribe("t", "g", prefetch=8)
    receives = [asyncio.ensure_future(sub.receive()) for _ in range(8)]
    await settle()
    assert broker.fetcher.fetches == 1  # one fetch leases a prefetch, not eight
    assert broker.fetcher.gate is not None
    broker.fetcher.gate.set_result([raw(n) for n in range(8)])
    async with asyncio.timeout(WAIT):
        got = await asyncio.gather(*receives)
    assert sorted(d.id for d in got if d is not None) == [str(n) for n in range(8)]
    assert broker.fetcher.fetches == 1
    await broker.aclose()


async def test_a_receive_waiting_on_anothers_fetch_keeps_its_own_timeout() -> None:
    broker = GatedBroker()
    sub = broker.subscribe("t", "g")
    fetching = asyncio.ensure_future(sub.receive())
    await settle()
    short = asyncio.ensure_future(sub.receive(timeout=5))
    await settle()
    broker.manual.advance(5)
    async with asyncio.timeout(WAIT):
        assert await short is None  # gave up on time, though the fetch goes on
    assert not fetching.done()
    assert broker.fetcher.fetches == 1
    fetching.cancel()
    await broker.aclose()


async def test_a_cancelled_receive_leaves_the_fetch_to_the_others() -> None:
    broker = GatedBroker()
    sub = broker.subscribe("t", "g")
    fetching = asyncio.ensure_future(sub.receive())
    await settle()
    joined = asyncio.ensure_future(sub.receive())
    await settle()
    fetching.cancel()  # the receive that fetched goes away: another one takes over
    await settle()
    assert broker.fetcher.fetches == 2
    assert broker.fetcher.gate is not None
    broker.fetcher.gate.set_result([raw(1)])
    async with asyncio.timeout(WAIT):
        delivery = await joined
    assert delivery is not None
    assert delivery.id == "1"
    await broker.aclose()


async def test_statistics_count_what_the_client_did() -> None:
    broker = MemoryBroker(clock=ManualClock())
    await broker.publish("t", b"one")
    await broker.publish_batch("t", [b"two", Outgoing(b"three")])
    await broker.publish_batch("t", [])
    sub = broker.subscribe("t", "g", max_deliveries=1)
    delivery = await sub.receive()
    assert delivery is not None
    await delivery.nack(error="boom")  # its last delivery: dead-lettered
    stats = broker.statistics()
    assert isinstance(stats, BrokerStatistics)
    assert (stats.published, stats.dead_lettered, stats.subscriptions) == (3, 1, 1)
    assert dict(stats.backend) == {}
    with pytest.raises(AttributeError):
        stats.published = 0  # type: ignore[misc]
    await broker.aclose()
    assert broker.statistics().subscriptions == 0


async def test_publish_batch_passes_valid_outgoing_messages_as_they_are() -> None:
    broker = GatedBroker()
    valid = [Outgoing(b"a"), Outgoing(b"b", {"h": "1"}, "key", 2.5)]
    await broker.publish_batch("t", valid)
    assert all(stored is given for stored, given in zip(broker.stored, valid, strict=True))
    odd = [Outgoing(bytearray(b"c")), Outgoing(b"d", delay=3)]  # type: ignore[arg-type]
    await broker.publish_batch("t", odd)
    assert broker.stored[2:] == [Outgoing(b"c"), Outgoing(b"d", delay=3.0)]
    assert type(broker.stored[3].delay) is float
    live, cancel = with_timeout(background(), 60)
    await broker.publish_batch("t", valid[:1], ctx=live)
    cancel()
    assert HEADER_DEADLINE in broker.stored[4].headers
    assert valid[0].headers == {}  # the deadline went on a copy
    with pytest.raises(ArgumentTypeError):
        await broker.publish_batch("t", [Outgoing(b"e", {"h": 1})])  # type: ignore[dict-item]
    await broker.aclose()


async def test_the_memory_broker_keeps_its_own_copy_of_the_headers() -> None:
    broker = MemoryBroker(clock=ManualClock())
    headers = {"h": "before"}
    await broker.publish_batch("t", [Outgoing(b"x", headers), Outgoing(b"y", headers, delay=1)])
    headers["h"] = "after"
    broker.clock.advance(1)  # type: ignore[attr-defined]
    async with broker.subscribe("t", "g") as sub:
        for _ in range(2):
            delivery = await sub.receive()
            assert delivery is not None
            assert delivery.headers["h"] == "before"
            await delivery.ack()
    await broker.aclose()
