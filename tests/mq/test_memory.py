"""memory:// passes the broker contract, with deadlines and delays on a ManualClock."""

from __future__ import annotations

from distsys.mq import Broker, MemoryBroker, open_broker
from distsys.testing import BrokerContract, ManualClock


class TestMemoryBroker(BrokerContract):
    async def open_broker(self) -> Broker:
        self.clock = ManualClock()
        return MemoryBroker(clock=self.clock)

    async def elapse(self, broker: Broker, seconds: float) -> None:
        self.clock.advance(seconds)


def test_open_broker_gives_separate_brokers() -> None:
    first, second = open_broker("memory://"), open_broker("memory://")
    assert isinstance(first, MemoryBroker)
    assert first is not second
