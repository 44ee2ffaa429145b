"""Throughput of the ``nats://`` broker against the raw nats-py JetStream client.

Run: ``.venv/bin/python benchmarks/bench_mq_nats.py [--messages N] [--runs R] [--url URL]``

Both contenders do the same work on the same server, each on a fresh stream of the same
configuration (file storage, limits retention, a durable consumer with explicit acks) and
over its own connection:

- **publish, one at a time**: awaited publishes (distsys ``publish``; raw ``js.publish``).
- **publish, batched**: batches of ``--batch`` (distsys ``publish_batch``; raw
  ``js.publish_async`` for each message of the batch, then the PubAcks awaited together).
- **consume + ack**: messages already stored, consumed by one member of the group with
  ``--prefetch`` (distsys ``Subscription.receive`` then ``Delivery.ack``; raw
  ``pull_subscribe_bind`` + ``fetch(prefetch)`` then ``msg.ack()`` for each).
- **2 producers + 2 consumers**: two tasks publish N/2 each in batches while two members
  of one group consume and ack, until all N are acked.

The machine may be shared (other processes, and the server itself, compete for the CPU),
so the three one-sided scenarios alternate the contenders every ``--chunk`` messages
(raw first, then distsys first, and so on) and compare total times; the mixed scenario
alternates whole runs and takes the median of the R paired ratios. Messages are
``--size`` bytes and carry their index, so every scenario counts what was lost (never
acked, or never stored) and duplicated (acked twice); any loss fails it. A ratio
distsys/raw of at least 0.7 passes.

Not part of the test suite: nothing here asserts a wall-clock time. Needs a NATS server
with JetStream (``nats-server -js``) and the ``nats`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Protocol

from rich.console import Console
from rich.table import Table

try:
    import nats
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
    from nats.js.errors import NotFoundError
except ImportError as exc:
    sys.exit(f"bench_mq_nats needs {exc.name!r}: pip install -e '.[nats]'")

from distsys.mq import Outgoing, Subscription
from distsys.mq._nats import NATSBroker

THRESHOLD = 0.7
GROUP = "bench"
ACK_WAIT = 60.0
DEADLINE = 900.0  # seconds a scenario may take before it is reported as hung


def _payload(index: int, size: int) -> bytes:
    return str(index).encode().ljust(size, b".")


def _index(payload: bytes) -> int:
    return int(payload.split(b".", 1)[0])


@dataclass
class Tally:
    """Indices acked, to count the lost and the duplicated."""

    seen: Counter[int] = field(default_factory=Counter)
    acked: int = 0

    def add(self, index: int) -> None:
        self.seen[index] += 1
        self.acked += 1

    def damage(self, n: int) -> tuple[int, int]:
        lost = sum(1 for i in range(n) if i not in self.seen)
        duplicates = sum(count - 1 for count in self.seen.values() if count > 1)
        return lost, duplicates


@dataclass(frozen=True)
class Work:
    url: str
    n: int
    size: int
    batch: int
    prefetch: int
    chunk: int


class Consumer(Protocol):
    async def take(self, tally: Tally, until: int) -> None:
        """Consume and ack until ``tally.acked`` reaches ``until``."""
        ...


class Side(Protocol):
    async def publish_each(self, indices: range) -> None: ...

    async def publish_batches(self, indices: range) -> None: ...

    def consumer(self) -> contextlib.AbstractAsyncContextManager[Consumer]: ...


# ------------------------------------------------------------------------------ raw


class Raw:
    """The raw nats-py client on a stream configured like distsys's."""

    def __init__(self, work: Work) -> None:
        self.work = work
        namespace = f"b{uuid.uuid4().hex[:12]}"
        self.stream = f"{namespace}_raw"
        self.subject = f"{namespace}.raw"

    async def __aenter__(self) -> Raw:
        self.nc: Client = await nats.connect(self.work.url)
        self.js: JetStreamContext = self.nc.jetstream()
        await self.js.add_stream(
            StreamConfig(
                name=self.stream,
                subjects=[self.subject],
                storage=StorageType.FILE,
                max_age=7 * 24 * 3600.0,
            )
        )
        await self.js.add_consumer(
            self.stream,
            ConsumerConfig(
                durable_name=GROUP,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ACK_WAIT,
                max_deliver=-1,
                deliver_policy=DeliverPolicy.ALL,
                filter_subject=self.subject,
                max_ack_pending=-1,
            ),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(NotFoundError):
            await self.js.delete_stream(self.stream)
        await self.nc.close()

    async def publish_each(self, indices: range) -> None:
        js, subject, size = self.js, self.subject, self.work.size
        for i in indices:
            await js.publish(subject, _payload(i, size))

    async def publish_batches(self, indices: range) -> None:
        js, subject, size, batch = self.js, self.subject, self.work.size, self.work.batch
        for start in range(indices.start, indices.stop, batch):
            futures = [
                await js.publish_async(subject, _payload(i, size))
                for i in range(start, min(start + batch, indices.stop))
            ]
            await asyncio.gather(*futures)

    @contextlib.asynccontextmanager
    async def consumer(self) -> AsyncIterator[Consumer]:
        psub = await self.js.pull_subscribe_bind(GROUP, self.stream)
        try:
            yield RawConsumer(psub, self.work.prefetch)
        finally:
            await psub.unsubscribe()


class RawConsumer:
    def __init__(self, psub: JetStreamContext.PullSubscription, prefetch: int) -> None:
        self.psub = psub
        self.prefetch = prefetch
        self.fetched: list[Msg] = []  # fetched past the end of the last chunk

    async def take(self, tally: Tally, until: int) -> None:
        add = tally.add
        while tally.acked < until:
            if not self.fetched:
                try:
                    self.fetched = await self.psub.fetch(self.prefetch, timeout=1.0)
                except TimeoutError:
                    continue
            msgs, self.fetched = self.fetched, []
            for position, msg in enumerate(msgs):
                if tally.acked >= until:
                    self.fetched = msgs[position:]
                    break
                await msg.ack()
                add(_index(msg.data))


# ---------------------------------------------------------------------------- distsys


class Ours:
    """distsys's NATSBroker."""

    def __init__(self, work: Work) -> None:
        self.work = work
        self.namespace = f"b{uuid.uuid4().hex[:12]}"
        self.topic = "ours"

    async def __aenter__(self) -> Ours:
        self.broker = NATSBroker(self.work.url, namespace=self.namespace)
        await self.broker.create_group(self.topic, GROUP)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.broker.aclose()
        nc = await nats.connect(self.work.url)
        js = nc.jetstream()
        for name in (f"{self.namespace}_{self.topic}", f"{self.namespace}-delay_{self.topic}"):
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(name)
        await nc.close()

    async def publish_each(self, indices: range) -> None:
        publish, topic, size = self.broker.publish, self.topic, self.work.size
        for i in indices:
            await publish(topic, _payload(i, size))

    async def publish_batches(self, indices: range) -> None:
        broker, topic, size, batch = self.broker, self.topic, self.work.size, self.work.batch
        for start in range(indices.start, indices.stop, batch):
            messages: list[bytes | Outgoing] = [
                _payload(i, size) for i in range(start, min(start + batch, indices.stop))
            ]
            await broker.publish_batch(topic, messages)

    @contextlib.asynccontextmanager
    async def consumer(self) -> AsyncIterator[Consumer]:
        sub = self.broker.subscribe(
            self.topic, GROUP, ack_wait=ACK_WAIT, prefetch=self.work.prefetch
        )
        async with sub:
            yield OurConsumer(sub)


class OurConsumer:
    def __init__(self, sub: Subscription) -> None:
        self.sub = sub

    async def take(self, tally: Tally, until: int) -> None:
        receive, add = self.sub.receive, tally.add
        while tally.acked < until:
            delivery = await receive(timeout=1.0)
            if delivery is not None:
                await delivery.ack()
                add(_index(delivery.payload))


# ---------------------------------------------------------------------------- scenarios


@dataclass
class Result:
    raw_rate: float
    our_rate: float
    ratio: float
    damage: dict[str, tuple[int, int]]


Step = Callable[[range], Awaitable[None]]


async def _alternate(work: Work, steps: dict[str, Step]) -> dict[str, float]:
    """Run each side's step over chunks of the indices, alternating which goes first."""
    seconds = dict.fromkeys(steps, 0.0)
    order = list(steps)
    for number, start in enumerate(range(0, work.n, work.chunk)):
        chunk = range(start, min(start + work.chunk, work.n))
        for label in order if number % 2 == 0 else order[::-1]:
            began = perf_counter()
            await steps[label](chunk)
            seconds[label] += perf_counter() - began
    return seconds


async def _one_sided(work: Work, kind: str) -> Result:
    async with Raw(work) as raw, Ours(work) as ours:
        sides: dict[str, Side] = {"raw": raw, "ours": ours}
        tallies = {label: Tally() for label in sides}
        async with asyncio.timeout(DEADLINE):
            if kind == "consume":
                for side in sides.values():
                    await side.publish_batches(range(work.n))  # untimed fill
                async with raw.consumer() as raw_consumer, ours.consumer() as our_consumer:
                    seconds = await _alternate(
                        work,
                        {
                            "raw": lambda chunk: raw_consumer.take(tallies["raw"], chunk.stop),
                            "ours": lambda chunk: our_consumer.take(tallies["ours"], chunk.stop),
                        },
                    )
            else:
                seconds = await _alternate(
                    work,
                    {
                        label: side.publish_each if kind == "each" else side.publish_batches
                        for label, side in sides.items()
                    },
                )
                for label, side in sides.items():  # untimed: was each stored once?
                    async with side.consumer() as consumer:
                        await consumer.take(tallies[label], work.n)
    raw_rate, our_rate = work.n / seconds["raw"], work.n / seconds["ours"]
    damage = {label: tally.damage(work.n) for label, tally in tallies.items()}
    return Result(raw_rate, our_rate, our_rate / raw_rate, damage)


async def _mixed_run(side_type: type[Raw] | type[Ours], work: Work) -> tuple[float, Tally]:
    async with side_type(work) as side:
        tally = Tally()
        half = work.n // 2

        async def consume() -> None:
            async with side.consumer() as consumer:
                await consumer.take(tally, work.n)

        began = perf_counter()
        async with asyncio.timeout(DEADLINE):
            await asyncio.gather(
                side.publish_batches(range(0, half)),
                side.publish_batches(range(half, work.n)),
                consume(),
                consume(),
            )
        return perf_counter() - began, tally


async def _mixed(work: Work, runs: int) -> Result:
    times: dict[str, list[float]] = {"raw": [], "ours": []}
    damage = {"raw": (0, 0), "ours": (0, 0)}
    contenders: list[tuple[str, type[Raw] | type[Ours]]] = [("raw", Raw), ("ours", Ours)]
    for run in range(runs):
        for label, side_type in contenders if run % 2 == 0 else contenders[::-1]:
            seconds, tally = await _mixed_run(side_type, work)
            times[label].append(seconds)
            lost, duplicates = tally.damage(work.n)
            damage[label] = (damage[label][0] + lost, damage[label][1] + duplicates)
    ratios = [r / o for r, o in zip(times["raw"], times["ours"], strict=True)]
    return Result(
        work.n / statistics.median(times["raw"]),
        work.n / statistics.median(times["ours"]),
        statistics.median(ratios),
        damage,
    )


# ---------------------------------------------------------------------------- main


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--prefetch", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3, help="runs of the mixed scenario")
    parser.add_argument("--only", default="", help="run scenarios whose name contains this")
    return parser.parse_args()


async def main() -> int:
    args = _arguments()
    work = Work(args.url, args.messages, args.size, args.batch, args.prefetch, args.chunk)
    scenarios: dict[str, Callable[[], Awaitable[Result]]] = {
        "publish, one at a time": lambda: _one_sided(work, "each"),
        "publish, batched": lambda: _one_sided(work, "batched"),
        "consume + ack (prefetch)": lambda: _one_sided(work, "consume"),
        "2 producers + 2 consumers": lambda: _mixed(work, args.runs),
    }
    console = Console(width=130)
    console.print(
        f"{work.n:,} messages of {work.size} B; batch {work.batch}, prefetch {work.prefetch}; "
        f"alternating every {work.chunk:,} messages; mixed: median of {args.runs} runs; "
        f"{work.url}"
    )
    table = Table("scenario", "raw nats-py msg/s", "distsys msg/s", "ratio", "lost/dup", "")
    failed = False
    for name, scenario in scenarios.items():
        if args.only not in name:
            continue
        result = await scenario()
        lost = sum(lost for lost, _ in result.damage.values())
        verdict = "PASS" if result.ratio >= THRESHOLD and lost == 0 else "FAIL"
        failed |= verdict == "FAIL"
        raw_damage, our_damage = result.damage["raw"], result.damage["ours"]
        damage = f"raw {raw_damage[0]}/{raw_damage[1]}, distsys {our_damage[0]}/{our_damage[1]}"
        table.add_row(
            name,
            f"{result.raw_rate:,.0f}",
            f"{result.our_rate:,.0f}",
            f"{result.ratio:.2f}x",
            damage,
            verdict,
        )
        console.print(
            f"{name}: raw {result.raw_rate:,.0f} msg/s, distsys {result.our_rate:,.0f} msg/s, "
            f"{result.ratio:.2f}x, lost/dup {damage}: {verdict}"
        )
    console.print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
