"""redis:// broker against the raw redis-py client doing the same Streams work.

Four workloads of ``--messages`` (default 100,000) messages of 100 bytes, each run first
with redis.asyncio directly (XADD / XREADGROUP / XACK) and then through
:class:`distsys.mq._redis.RedisBroker`, in the same process and event loop:

1. publish one at a time (one task awaiting each publish);
2. publish in batches of 100 (raw: a pipeline of 100 XADDs; distsys: ``publish_batch``,
   one atomic script);
3. consume and ack with one consumer and a prefetch of 100 (raw: XREADGROUP COUNT 100,
   then one XACK of the ids read; distsys: a subscription with ``prefetch=100``; the
   consumer takes what one fetch brought — ``receive()``, then ``receive(timeout=0)``
   while deliveries are buffered — and acks them concurrently, which the subscription
   writes as one script call, while it takes the next batch);
4. both at once: 2 producers publishing one at a time and 2 consumers (as in 3) of one
   group, all in the same event loop.

Raw and distsys runs alternate (``--repeat`` of each, default 3) so that both see the
same load on the machine, and the best run of each counts. It prints messages per
second, the ratio distsys / raw (PASS at >= 0.7, and nothing lost) and, for the consuming
workloads, messages lost and duplicates (deliveries beyond one per message) summed over
all runs. Every run uses a fresh namespace on the server and deletes its keys afterwards.

    .venv/bin/python benchmarks/bench_mq_redis.py [--url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from distsys.mq import Delivery
from distsys.mq._redis import RedisBroker

SIZE = 100
BATCH = 100
PREFETCH = 100
TARGET = 0.7
GROUP = "bench"


@dataclass
class Result:
    seconds: float
    lost: int | None = None
    duplicates: int | None = None


def payloads(n: int) -> list[bytes]:
    return [f"{i:010d}".encode().ljust(SIZE, b".") for i in range(n)]


def seq(payload: bytes) -> int:
    return int(payload[:10])


def tally(n: int, seen: list[int], start: float) -> Result:
    elapsed = time.perf_counter() - start
    return Result(elapsed, lost=n - len(set(seen)), duplicates=len(seen) - len(set(seen)))


class Workspace:
    """A fresh namespace per run, deleted afterwards."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.namespace = f"bench-{uuid.uuid4().hex[:12]}"
        self.stream = f"{{{self.namespace}}}stream:t"

    def broker_url(self) -> str:
        sep = "&" if "?" in self.url else "?"
        return f"{self.url}{sep}namespace={self.namespace}"

    async def purge(self, client: Redis) -> None:
        keys = [k async for k in client.scan_iter(match=f"{{{self.namespace}}}*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])


# ----------------------------------------------------------------------- raw redis-py


async def raw_publish_one(client: Redis, ws: Workspace, data: list[bytes]) -> Result:
    start = time.perf_counter()
    for p in data:
        await client.xadd(ws.stream, {"p": p})
    return Result(time.perf_counter() - start)


async def raw_publish_batch(client: Redis, ws: Workspace, data: list[bytes]) -> Result:
    start = time.perf_counter()
    for i in range(0, len(data), BATCH):
        pipe = client.pipeline(transaction=False)
        for p in data[i : i + BATCH]:
            pipe.xadd(ws.stream, {"p": p})
        await pipe.execute()
    return Result(time.perf_counter() - start)


async def raw_consumer(client: Redis, ws: Workspace, name: str, n: int, seen: list[int]) -> None:
    while len(seen) < n:
        reply: Any = await client.xreadgroup(
            GROUP, name, {ws.stream: ">"}, count=PREFETCH, block=200
        )
        if not reply:
            continue
        entries = reply[0][1]
        seen.extend(seq(fields[b"p"]) for _, fields in entries)
        await client.xack(ws.stream, GROUP, *[sid for sid, _ in entries])


async def raw_consume(client: Redis, ws: Workspace, data: list[bytes]) -> Result:
    await client.xgroup_create(ws.stream, GROUP, id="0", mkstream=True)
    await raw_publish_batch(client, ws, data)
    seen: list[int] = []
    start = time.perf_counter()
    await raw_consumer(client, ws, "c1", len(data), seen)
    return tally(len(data), seen, start)


async def raw_mixed(client: Redis, ws: Workspace, data: list[bytes]) -> Result:
    await client.xgroup_create(ws.stream, GROUP, id="0", mkstream=True)
    seen: list[int] = []
    half = len(data) // 2
    start = time.perf_counter()

    async def produce(part: list[bytes]) -> None:
        for p in part:
            await client.xadd(ws.stream, {"p": p})

    await asyncio.gather(
        produce(data[:half]),
        produce(data[half:]),
        raw_consumer(client, ws, "c1", len(data), seen),
        raw_consumer(client, ws, "c2", len(data), seen),
    )
    return tally(len(data), seen, start)


# ----------------------------------------------------------------------- distsys


async def ours_publish_one(broker: RedisBroker, data: list[bytes]) -> Result:
    start = time.perf_counter()
    for p in data:
        await broker.publish("t", p)
    return Result(time.perf_counter() - start)


async def ours_publish_batch(broker: RedisBroker, data: list[bytes]) -> Result:
    start = time.perf_counter()
    for i in range(0, len(data), BATCH):
        await broker.publish_batch("t", data[i : i + BATCH])
    return Result(time.perf_counter() - start)


async def ours_consumer(broker: RedisBroker, n: int, seen: list[int], acked: list[int]) -> None:
    """Take what one fetch brought, handle it, ack it together while fetching on."""

    async def ack(batch: list[Delivery]) -> None:
        # concurrent acks: the subscription writes them as one script call
        results = await asyncio.gather(*(d.ack() for d in batch))
        acked.extend(1 for ok in results if ok)

    acking: asyncio.Future[None] | None = None
    async with broker.subscribe("t", GROUP, prefetch=PREFETCH) as sub:
        while len(seen) < n:
            delivery = await sub.receive(timeout=0.2)
            if delivery is None:
                continue
            batch = [delivery]
            while len(batch) < PREFETCH:  # what is already fetched: no waiting
                more = await sub.receive(timeout=0)
                if more is None:
                    break
                batch.append(more)
            seen.extend(seq(d.payload) for d in batch)
            if acking is not None:
                await acking  # one batch of acks in flight at a time
            acking = asyncio.ensure_future(ack(batch))
        if acking is not None:
            await acking


async def ours_consume(broker: RedisBroker, data: list[bytes]) -> Result:
    await broker.create_group("t", GROUP)
    await ours_publish_batch(broker, data)
    seen: list[int] = []
    acked: list[int] = []
    start = time.perf_counter()
    await ours_consumer(broker, len(data), seen, acked)
    result = tally(len(data), seen, start)
    assert len(acked) == len(data), f"{len(acked)} acks confirmed of {len(data)}"
    return result


async def ours_mixed(broker: RedisBroker, data: list[bytes]) -> Result:
    await broker.create_group("t", GROUP)
    seen: list[int] = []
    acked: list[int] = []
    half = len(data) // 2
    start = time.perf_counter()

    async def produce(part: list[bytes]) -> None:
        for p in part:
            await broker.publish("t", p)

    await asyncio.gather(
        produce(data[:half]),
        produce(data[half:]),
        ours_consumer(broker, len(data), seen, acked),
        ours_consumer(broker, len(data), seen, acked),
    )
    return tally(len(data), seen, start)


# ----------------------------------------------------------------------- driver


RawRun = Callable[[Redis, Workspace, list[bytes]], Awaitable[Result]]
OursRun = Callable[[RedisBroker, list[bytes]], Awaitable[Result]]

WORKLOADS: list[tuple[str, RawRun, OursRun]] = [
    ("publish one at a time", raw_publish_one, ours_publish_one),
    (f"publish batched ({BATCH})", raw_publish_batch, ours_publish_batch),
    (f"consume + ack (prefetch {PREFETCH})", raw_consume, ours_consume),
    ("2 producers + 2 consumers", raw_mixed, ours_mixed),
]


async def run_raw(url: str, run: RawRun, data: list[bytes]) -> Result:
    ws = Workspace(url)
    client = Redis.from_url(url, protocol=2)
    try:
        return await run(client, ws, data)
    finally:
        await ws.purge(client)
        await client.aclose()


async def run_ours(url: str, run: OursRun, data: list[bytes]) -> Result:
    ws = Workspace(url)
    broker = RedisBroker(ws.broker_url())
    client = Redis.from_url(url, protocol=2)
    try:
        return await run(broker, data)
    finally:
        await broker.aclose()
        await ws.purge(client)
        await client.aclose()


def summarize(results: list[Result]) -> Result:
    """The best time of the runs, and what all of them lost or duplicated."""
    best = min(r.seconds for r in results)
    if results[0].lost is None:
        return Result(best)
    return Result(
        best,
        lost=sum(r.lost or 0 for r in results),
        duplicates=sum(r.duplicates or 0 for r in results),
    )


def describe(result: Result) -> str:
    if result.lost is None:
        return ""
    return f"lost {result.lost}, duplicates {result.duplicates}"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--only", help="run only workloads whose name contains this")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each side; the best one counts"
    )
    options = parser.parse_args()
    data = payloads(options.messages)
    print(f"{options.messages:,} messages of {SIZE} bytes; PASS at distsys/raw >= {TARGET}")
    header = f"{'workload':<32} {'raw msg/s':>11} {'distsys msg/s':>14} {'ratio':>6}"
    print(f"{header}  verdict  delivery (raw | distsys)")
    failed = False
    for name, raw_run, ours_run in WORKLOADS:
        if options.only and options.only not in name:
            continue
        raws, ourss = [], []
        for _ in range(options.repeat):  # interleaved, so both see the same machine load
            raws.append(await run_raw(options.url, raw_run, data))
            ourss.append(await run_ours(options.url, ours_run, data))
        raw, ours = summarize(raws), summarize(ourss)
        raw_rate, ours_rate = len(data) / raw.seconds, len(data) / ours.seconds
        ratio = ours_rate / raw_rate
        ok = ratio >= TARGET and not ours.lost
        failed |= not ok
        delivery = f"{describe(raw)} | {describe(ours)}" if ours.lost is not None else ""
        print(
            f"{name:<32} {raw_rate:>11,.0f} {ours_rate:>14,.0f} {ratio:>6.2f}"
            f"  {'PASS' if ok else 'FAIL':<7}  {delivery}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
