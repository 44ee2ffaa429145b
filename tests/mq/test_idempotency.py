"""Deduplicator: claims, done marks and their windows, in memory and on KV stores.

Every behaviour is checked on the three stores (an LRU cache in memory, memory:// KV and
sqlite:// KV) with the same ManualClock; the atomic claim is also checked across
processes sharing one SQLite file.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from distsys.backends import KV, open_kv
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.mq import (
    ClaimStatus,
    Consumer,
    Deduplicator,
    Delivery,
    DuplicateInProgressError,
    MemoryBroker,
    default_key,
    idempotent,
)
from distsys.testing import ManualClock

WINDOW, CLAIM_TTL = 100.0, 10.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=["lru", "memory-kv", "sqlite-kv"])
async def dedup(
    request: pytest.FixtureRequest, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[Deduplicator]:
    store: KV | None = None
    if request.param == "memory-kv":
        store = open_kv("memory://", clock=clock)
    elif request.param == "sqlite-kv":
        store = open_kv(f"sqlite:///{tmp_path}/dedup.db", clock=clock)
    yield Deduplicator(store, window=WINDOW, claim_ttl=CLAIM_TTL, clock=clock)
    if store is not None:
        await store.aclose()


async def test_the_first_claim_wins_and_a_done_message_is_a_duplicate(
    dedup: Deduplicator,
) -> None:
    first = await dedup.claim("order-1")
    assert (first.status, first.first) == (ClaimStatus.FIRST, True)
    busy = await dedup.claim("order-1")
    assert busy.status is ClaimStatus.BUSY
    assert busy.retry_after is not None
    assert 0 < busy.retry_after <= CLAIM_TTL * 1.1
    await first.done()
    again = await dedup.claim("order-1")
    assert (again.status, again.first) == (ClaimStatus.DONE, False)
    assert (await dedup.claim("order-2")).first  # other keys are independent
    stats = dedup.statistics()
    assert (stats.first, stats.busy, stats.duplicates, stats.completed) == (2, 1, 1, 1)


async def test_a_done_mark_is_forgotten_after_the_window(
    dedup: Deduplicator, clock: ManualClock
) -> None:
    claim = await dedup.claim("k")
    await claim.done()
    clock.advance(WINDOW * 0.99)
    assert (await dedup.claim("k")).status is ClaimStatus.DONE
    clock.advance(WINDOW * 0.2)  # past the window, and past the leases' 10% slack
    assert (await dedup.claim("k")).status is ClaimStatus.FIRST


async def test_a_released_claim_can_be_taken_at_once(dedup: Deduplicator) -> None:
    claim = await dedup.claim("k")
    await claim.release()
    retry = await dedup.claim("k")
    assert retry.first
    await retry.done()
    assert (await dedup.claim("k")).status is ClaimStatus.DONE
    assert dedup.statistics().released == 1


async def test_a_claim_whose_holder_died_expires(dedup: Deduplicator, clock: ManualClock) -> None:
    await dedup.claim("k")  # the handler's process dies before done()
    assert (await dedup.claim("k")).status is ClaimStatus.BUSY
    clock.advance(CLAIM_TTL * 1.1)
    assert (await dedup.claim("k")).first  # a redelivery may handle it now


async def test_a_handler_that_outlives_its_claim_is_counted_as_an_overlap(
    dedup: Deduplicator, clock: ManualClock
) -> None:
    slow = await dedup.claim("k")
    clock.advance(CLAIM_TTL * 1.1)
    second = await dedup.claim("k")
    assert second.first  # the message is being handled twice now
    await slow.done()
    await second.done()
    assert (await dedup.claim("k")).status is ClaimStatus.DONE
    assert dedup.statistics().overlaps >= 1


async def test_once_marks_done_on_success_and_releases_on_failure(dedup: Deduplicator) -> None:
    async def fail() -> None:
        async with dedup.once("k") as first:
            assert first
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail()
    async with dedup.once("k") as first:
        assert first  # released: the retry handles it
    async with dedup.once("k") as first:
        assert not first
    stats = dedup.statistics()
    assert (stats.released, stats.completed, stats.duplicates) == (1, 1, 1)


async def test_once_refuses_a_message_another_handler_is_on(dedup: Deduplicator) -> None:
    claim = await dedup.claim("k")
    with pytest.raises(DuplicateInProgressError) as raised:
        async with dedup.once("k"):
            raise AssertionError("not reached")
    assert raised.value.key == "k"
    assert raised.value.retry_after is not None
    await claim.done()


async def test_an_lru_without_a_store_forgets_the_least_recently_used(clock: ManualClock) -> None:
    dedup = Deduplicator(maxsize=2, clock=clock)
    for key in ("a", "b", "c"):
        await (await dedup.claim(key)).done()
    assert (await dedup.claim("c")).status is ClaimStatus.DONE
    assert (await dedup.claim("a")).first  # evicted: the window holds only maxsize keys


async def test_idempotent_handler_under_a_consumer_applies_each_event_once(
    clock: ManualClock,
) -> None:
    applied: list[str] = []
    dedup = Deduplicator(key=lambda d: d.headers["event-id"], clock=clock)

    @idempotent(dedup)
    async def apply(delivery: Delivery) -> None:
        applied.append(delivery.payload.decode())

    async with MemoryBroker(clock=clock) as broker:
        # A relay that crashed after publishing event 2 publishes it again: two messages.
        for event in ("1", "2", "2", "3"):
            await broker.publish("events", event.encode(), headers={"event-id": event})
        consumer = Consumer(broker, "events", "billing", apply, concurrency=1)
        task = asyncio.ensure_future(consumer.run())
        for _ in range(1000):
            if consumer.statistics().acked == 4:
                break
            await asyncio.sleep(0)
        consumer.stop()
        stats = await task
    assert applied == ["1", "2", "3"]
    assert (stats.acked, dedup.statistics().duplicates) == (4, 1)
    assert apply.__name__ == "apply"


async def test_the_default_key_is_group_topic_and_id() -> None:
    async with MemoryBroker() as broker:
        message_id = await broker.publish("orders", b"x")
        async with broker.subscribe("orders", "billing") as sub:
            delivery = await sub.receive(timeout=1)
            assert delivery is not None
            assert default_key(delivery) == f"billing/orders/{message_id}"
            assert Deduplicator().key(delivery) == default_key(delivery)
            await delivery.ack()


@pytest.mark.parametrize(
    ("options", "field", "error"),
    [
        ({"window": 0}, "window", InvalidArgumentError),
        ({"window": "1h"}, "window", ArgumentTypeError),
        ({"claim_ttl": float("inf")}, "claim_ttl", InvalidArgumentError),
        ({"maxsize": 0}, "maxsize", InvalidArgumentError),
        ({"key": "event-id"}, "key", ArgumentTypeError),
        ({"store": "sqlite:///x.db"}, "store", ArgumentTypeError),
    ],
)
def test_bad_options_are_refused_naming_them(
    options: dict[str, object], field: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        Deduplicator(**options)  # type: ignore[arg-type]
    assert getattr(raised.value, "field", None) == field


async def test_a_key_must_be_a_non_empty_str() -> None:
    dedup = Deduplicator(key=lambda d: "")
    with pytest.raises(ArgumentTypeError):
        await dedup.claim(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        await dedup.claim("")


# ------------------------------------------------------------- across processes

CLAIMER = """
import asyncio, json, sys, time
from distsys.backends import open_kv
from distsys.mq import Deduplicator

async def main(path, keys, start):
    kv = open_kv(f"sqlite:///{path}")
    dedup = Deduplicator(kv, window=600, claim_ttl=600)
    time.sleep(max(start - time.monotonic(), 0))  # everyone starts together
    won = []
    for key in keys:
        claim = await dedup.claim(key)
        if claim.first:
            won.append(key)
            await claim.done()
    await kv.aclose()
    print(json.dumps(won))

asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])))
"""


def test_processes_sharing_a_sqlite_file_each_win_a_key_exactly_once(tmp_path: Path) -> None:
    keys = [f"event-{i}" for i in range(150)]
    path = tmp_path / "dedup.db"

    async def create() -> None:
        # The file is created (and switched to WAL) once, before the race: several
        # processes creating one file at the same instant can see "database is locked".
        kv = open_kv(f"sqlite:///{path}")
        await kv.ping()
        await kv.aclose()

    asyncio.run(create())
    start = time.monotonic() + 2.0  # CLOCK_MONOTONIC is system-wide on Linux
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CLAIMER,
                str(path),
                json.dumps(keys[::step]),  # different orders, so they collide mid-way
                str(start),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for step in (1, -1, 1, -1)
    ]
    won: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        won += json.loads(out)
    assert sorted(won) == sorted(keys)  # every key won once, by exactly one process
