"""memory:// passes the KV contract, with leases on a ManualClock."""

from __future__ import annotations

from distsys.backends import KV, MemoryKV, open_kv
from distsys.testing import KVContract, ManualClock


class TestMemoryKV(KVContract):
    async def open_kv(self) -> KV:
        self.clock = ManualClock()
        return MemoryKV(clock=self.clock)

    async def elapse(self, kv: KV, seconds: float) -> None:
        self.clock.advance(seconds)


def test_open_kv_gives_separate_stores() -> None:
    first, second = open_kv("memory://"), open_kv("memory://")
    assert isinstance(first, MemoryKV)
    assert first is not second
