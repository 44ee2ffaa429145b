"""Side-by-side throughput of the ``sqlite://`` broker, persist-queue and huey's SQLite storage.

Run: ``.venv/bin/python benchmarks/bench_mq_sqlite.py [--messages 100000] [--size 100]
[--runs 1] [--skip-processes]``

Every contender stores ``--messages`` messages of ``--size`` bytes in a fresh SQLite file
under a temporary directory and runs:

1. **publish, one at a time** — one caller, each publish waiting for its commit. For
   distsys also 64 tasks publishing one message each at a time (their publishes share
   transactions: group commit), reported on its own line.
2. **publish, batched** — ``publish_batch`` of 100 (persist-queue's ack queue and huey
   have no batch call: not run for them).
3. **consume + ack** — from a full queue. distsys: 64 handler tasks sharing one
   subscription (``prefetch=256``), each acking what it received (the subscription
   writes the acks of concurrent handlers in one transaction), as
   ``Consumer(concurrency=64)`` does; persist-queue: ``get`` + ``ack``, with
   ``clear_acked_data()`` every 100 acks (acked rows stay in its table and every ``get``
   scans past them, so without it consuming slows down quadratically); huey:
   ``dequeue`` (it has no acks: a message is deleted when taken). The clock stops at the
   last ack, as in the four-process run: distsys's handler tasks that are still waiting
   in ``receive(timeout=1)`` on the emptied queue afterwards do not count.
4. **2 producers + 2 consumers** — four processes on one file at once: two publish half
   the messages each (distsys and huey in batches of 100 where they can — huey
   enqueues one at a time; persist-queue puts one at a time), two consume (same
   consumers as above, polling every 5 ms when the queue is empty). The clock runs from
   the producers' start to the last ack. Every message carries a unique id; afterwards
   the benchmark counts the ids never acked (**lost**) and the ids handled more than
   once (**duplicates**). For distsys a duplicate is only legitimate as a redelivery
   after an expired ack deadline (``attempt > 1``): those are counted apart, and a
   duplicate that is not one fails the run.

Equal durability: every contender runs SQLite in WAL mode with ``synchronous=NORMAL`` —
a commit survives the crash of any process, and a power loss may lose the last
transactions. distsys sets it itself. persist-queue sets WAL but leaves ``synchronous``
at SQLite's default (FULL: an fsync per commit) and has no option for it, so the
benchmark sets ``PRAGMA synchronous=NORMAL`` on its connections; huey's ``fsync`` option
only chooses FULL or OFF, so the benchmark sets NORMAL on its connection too.
persist-queue's ack queue requires ``auto_commit=True`` (a commit per put, get, and ack);
it is used with ``multithreading=False`` (one connection per process).

Targets (PASS/FAIL): publish one at a time >= 20,000 msg/s (the single sequential
publisher, and separately the 64 tasks), batched >= 100,000 msg/s, consume + ack >=
50,000 msg/s, at least 10x persist-queue for consume + ack and for the four-process
run, and no loss and no unexplained duplicate anywhere.

With ``--runs R`` every scenario runs R times, the contenders interleaved run after run
so that drift on a shared machine hits all of them alike; the table shows the median,
and every run's deliveries are checked.

Not part of the test suite: nothing here asserts a wall-clock time. Needs the ``bench``
extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from distsys.mq._sqlite import SQLiteBroker

try:
    import persistqueue
    from huey.storage import SqliteStorage  # type: ignore[import-untyped]
except ImportError as exc:
    sys.exit(f"bench_mq_sqlite needs {exc.name!r}: pip install -e '.[bench]'")

TOPIC = "bench"
GROUP = "workers"
BATCH = 100
PUBLISH_TASKS = 64
CONCURRENCY = 64
PREFETCH = 256
IDLE_POLL = 0.005  # how the peers wait on an empty queue (distsys polls likewise)
DRAIN_QUIET = 1.0  # consumers stop this long after the producers and the queue are done
PERSIST_CLEAR_EVERY = 100  # persist-queue: acks between two clear_acked_data() calls

TARGET_ONE = 20_000
TARGET_BATCH = 100_000
TARGET_CONSUME = 50_000
TARGET_RATIO = 10.0


def payload(producer: int, number: int, size: int) -> bytes:
    """A message body that names itself: ``p<producer>-<number>`` padded to ``size``."""
    return f"p{producer}-{number}".encode().ljust(size, b".")


def message_id(body: bytes) -> str:
    return body.rstrip(b".").decode()


def set_normal(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA synchronous = NORMAL")
    assert conn.execute("PRAGMA synchronous").fetchone() == (1,)


# -------------------------------------------------------------------- contenders


def open_persist(directory: Path) -> Any:
    # auto_resume=False: resuming at start-up would hand back the messages that other
    # running consumer processes hold (it is meant for a restart after a crash).
    queue: Any = persistqueue.SQLiteAckQueue(
        str(directory), multithreading=False, auto_commit=True, auto_resume=False
    )
    for conn in {id(queue._getter): queue._getter, id(queue._putter): queue._putter}.values():
        set_normal(conn)
    return queue


def open_huey(directory: Path) -> Any:
    storage = SqliteStorage(name="bench", filename=str(directory / "huey.db"))
    set_normal(storage.conn)
    return storage


def open_distsys(directory: Path) -> SQLiteBroker:
    return SQLiteBroker(f"sqlite:///{directory}/mq.db")


@dataclass
class Tally:
    """What consumers handled: ids acked, and how often each was delivered."""

    acked: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)
    count: int = 0  # acks
    redelivered: int = 0  # deliveries after an expired ack deadline (attempt > 1)
    last_ack: float = 0.0

    def ack(self, name: str) -> None:
        self.acked[name] += 1
        self.count += 1
        self.last_ack = time.monotonic()

    def merge(self, other: Tally) -> None:
        self.acked.update(other.acked)
        self.delivered.update(other.delivered)
        self.count += other.count
        self.redelivered += other.redelivered
        self.last_ack = max(self.last_ack, other.last_ack)


async def distsys_consume(
    broker: SQLiteBroker, count: int | None, stop: Callable[[], bool] | None = None
) -> Tally:
    """Handle messages with CONCURRENCY tasks until ``count`` are acked (or ``stop``)."""
    tally = Tally()
    await broker.create_group(TOPIC, GROUP)
    async with broker.subscribe(TOPIC, GROUP, prefetch=PREFETCH, ack_wait=60) as sub:

        async def handler() -> None:
            while count is None or tally.count < count:
                delivery = await sub.receive(timeout=DRAIN_QUIET)
                if delivery is None:
                    if stop is None or stop():
                        return
                    continue
                name = message_id(delivery.payload)
                tally.delivered[name] += 1
                if delivery.attempt > 1:
                    tally.redelivered += 1
                if await delivery.ack():
                    tally.ack(name)

        await asyncio.gather(*(handler() for _ in range(CONCURRENCY)))
    return tally


def persist_consume(queue: Any, count: int | None, stop: Callable[[], bool] | None) -> Tally:
    tally = Tally()
    quiet_since = None
    while count is None or tally.count < count:
        try:
            item = queue.get(block=False, raw=True)
        except persistqueue.Empty:
            if stop is not None and stop():
                now = time.monotonic()
                quiet_since = quiet_since or now
                if now - quiet_since >= DRAIN_QUIET:
                    break
            time.sleep(IDLE_POLL)
            continue
        quiet_since = None
        name = message_id(item["data"])
        tally.delivered[name] += 1
        queue.ack(id=item["pqid"])
        tally.ack(name)
        if tally.count % PERSIST_CLEAR_EVERY == 0:
            # Acked rows stay in its table, and every get scans past them: delete them
            # as its docs say (the time counts).
            queue.clear_acked_data(max_delete=None, keep_latest=None)
    return tally


def huey_consume(storage: Any, count: int | None, stop: Callable[[], bool] | None) -> Tally:
    tally = Tally()
    quiet_since = None
    while count is None or tally.count < count:
        data = storage.dequeue()
        if data is None:
            if stop is not None and stop():
                now = time.monotonic()
                quiet_since = quiet_since or now
                if now - quiet_since >= DRAIN_QUIET:
                    break
            time.sleep(IDLE_POLL)
            continue
        quiet_since = None
        name = message_id(bytes(data))
        tally.delivered[name] += 1
        tally.ack(name)  # taking it is all huey has: no ack, no redelivery
    return tally


# --------------------------------------------------------------- one process


@dataclass
class Result:
    """One contender's numbers: msg/s per scenario, and the consumers' tallies."""

    rates: dict[str, float] = field(default_factory=dict)
    tallies: dict[str, tuple[Tally, int]] = field(default_factory=dict)  # (tally, published)


def timed(rates: dict[str, float], name: str, count: int, started: float) -> None:
    rates[name] = count / (time.perf_counter() - started)


async def run_distsys(directory: Path, count: int, size: int) -> Result:
    result = Result()
    bodies = [payload(0, i, size) for i in range(count)]
    async with open_distsys(directory / "one") as broker:
        await broker.create_group(TOPIC, GROUP)
        started = time.perf_counter()
        for body in bodies:
            await broker.publish(TOPIC, body)
        timed(result.rates, "publish 1", count, started)
        started = time.monotonic()
        tally = await distsys_consume(broker, count)
        result.rates["consume"] = count / (tally.last_ack - started)
        result.tallies["consume"] = (tally, count)
    async with open_distsys(directory / "tasks") as broker:
        share = count // PUBLISH_TASKS

        async def publisher(k: int) -> None:
            for body in bodies[k * share : (k + 1) * share]:
                await broker.publish(TOPIC, body)

        await broker.ping()
        started = time.perf_counter()
        await asyncio.gather(*(publisher(k) for k in range(PUBLISH_TASKS)))
        timed(result.rates, "publish 1, 64 tasks", share * PUBLISH_TASKS, started)
    async with open_distsys(directory / "batch") as broker:
        await broker.ping()
        started = time.perf_counter()
        for i in range(0, count, BATCH):
            await broker.publish_batch(TOPIC, bodies[i : i + BATCH])
        timed(result.rates, "publish batch", count, started)
    return result


def run_persist(directory: Path, count: int, size: int) -> Result:
    result = Result()
    bodies = [payload(0, i, size) for i in range(count)]
    queue = open_persist(directory / "persist")
    started = time.perf_counter()
    for body in bodies:
        queue.put(body)
    timed(result.rates, "publish 1", count, started)
    started = time.monotonic()
    tally = persist_consume(queue, count, None)
    result.rates["consume"] = count / (tally.last_ack - started)
    result.tallies["consume"] = (tally, count)
    queue.close()
    return result


def run_huey(directory: Path, count: int, size: int) -> Result:
    result = Result()
    bodies = [payload(0, i, size) for i in range(count)]
    (directory / "huey").mkdir()
    storage = open_huey(directory / "huey")
    started = time.perf_counter()
    for body in bodies:
        storage.enqueue(body)
    timed(result.rates, "publish 1", count, started)
    started = time.monotonic()
    tally = huey_consume(storage, count, None)
    result.rates["consume"] = count / (tally.last_ack - started)
    result.tallies["consume"] = (tally, count)
    storage.close()
    return result


# ----------------------------------------------------------- four processes


def _producer(
    kind: str, directory: str, index: int, count: int, size: int, ready: Any, go: Any
) -> None:
    bodies = [payload(index, i, size) for i in range(count)]
    path = Path(directory)
    if kind == "distsys":

        async def main() -> None:
            async with open_distsys(path) as broker:
                await broker.ping()
                ready.release()
                await asyncio.to_thread(go.wait)
                for i in range(0, count, BATCH):
                    await broker.publish_batch(TOPIC, bodies[i : i + BATCH])

        asyncio.run(main())
    elif kind == "persist-queue":
        queue = open_persist(path)
        ready.release()
        go.wait()
        for body in bodies:
            queue.put(body)
        queue.close()
    else:
        storage = open_huey(path)
        ready.release()
        go.wait()
        for body in bodies:
            storage.enqueue(body)
        storage.close()


def _consumer(kind: str, directory: str, ready: Any, done: Any, results: Any) -> None:
    path = Path(directory)
    if kind == "distsys":

        async def main() -> Tally:
            async with open_distsys(path) as broker:
                await broker.create_group(TOPIC, GROUP)
                ready.release()
                return await distsys_consume(broker, None, done.is_set)

        tally = asyncio.run(main())
    elif kind == "persist-queue":
        queue = open_persist(path)
        ready.release()
        tally = persist_consume(queue, None, done.is_set)
        queue.close()
    else:
        storage = open_huey(path)
        ready.release()
        tally = huey_consume(storage, None, done.is_set)
        storage.close()
    results.put(tally)


def run_processes(kind: str, directory: Path, count: int, size: int) -> tuple[float, Tally]:
    """Two producers and two consumers on one file; return msg/s and the merged tally."""
    spawn = mp.get_context("spawn")
    directory.mkdir(parents=True)
    if kind == "huey":  # create the schema once, before four processes race to
        open_huey(directory).close()
    ready, go, done, results = spawn.Semaphore(0), spawn.Event(), spawn.Event(), spawn.Queue()
    consumers = [
        spawn.Process(target=_consumer, args=(kind, str(directory), ready, done, results))
        for _ in range(2)
    ]
    share = count // 2
    producers = [
        spawn.Process(target=_producer, args=(kind, str(directory), i, share, size, ready, go))
        for i in range(2)
    ]
    for process in consumers + producers:
        process.start()
    for _ in consumers + producers:
        if not ready.acquire(timeout=120):
            raise RuntimeError(f"a {kind} process did not start")
    started = time.monotonic()
    go.set()
    for process in producers:
        process.join()
    done.set()
    tally = Tally()
    for _ in consumers:
        tally.merge(results.get(timeout=600))
    for process in consumers:
        process.join()
    return share * 2 / (tally.last_ack - started), tally


# ------------------------------------------------------------------- report

SCENARIOS = ("publish 1", "publish 1, 64 tasks", "publish batch", "consume", "2P + 2C")
TARGETS = {
    "publish 1": TARGET_ONE,
    "publish 1, 64 tasks": TARGET_ONE,
    "publish batch": TARGET_BATCH,
    "consume": TARGET_CONSUME,
}
RATIO_TARGETS = ("consume", "2P + 2C")
CONTENDERS = ("distsys", "persist-queue", "huey")


def rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def verdict(ok: bool) -> str:
    return "[green]PASS[/green]" if ok else "[red]FAIL[/red]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1, help="runs; the median is shown")
    parser.add_argument("--skip-processes", action="store_true", help="no four-process run")
    args = parser.parse_args()
    count, size = args.messages - args.messages % (BATCH * 2), args.size
    console = Console(width=150)
    console.print(
        f"{count:,} messages of {size} bytes, {args.runs} run(s) (the median is shown); "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start"
    )
    runs: dict[str, list[Result]] = {kind: [] for kind in CONTENDERS}
    runners: dict[str, Callable[[Path], Result]] = {
        "distsys": lambda d: asyncio.run(run_distsys(d, count, size)),
        "persist-queue": lambda d: run_persist(d, count, size),
        "huey": lambda d: run_huey(d, count, size),
    }
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench_mq_sqlite-") as tmp:
            for kind, runner in runners.items():  # contenders interleaved, run after run
                directory = Path(tmp) / kind
                directory.mkdir()
                started = time.perf_counter()
                result = runner(directory)
                if not args.skip_processes:
                    speed, tally = run_processes(kind, directory / "processes", count, size)
                    result.rates["2P + 2C"] = speed
                    result.tallies["2P + 2C"] = (tally, count // 2)
                runs[kind].append(result)
                took = time.perf_counter() - started
                console.print(f"  run {run + 1}: {kind} done in {took:.0f} s")
    console.print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return report(console, {kind: median(results) for kind, results in runs.items()})


def median(results: list[Result]) -> Result:
    """The median rate of each scenario; every run's tallies (each is checked)."""
    merged = Result()
    for scenario in results[0].rates:
        merged.rates[scenario] = statistics.median(r.rates[scenario] for r in results)
    for i, result in enumerate(results):
        for scenario, tally in result.tallies.items():
            merged.tallies[f"{scenario} #{i + 1}" if len(results) > 1 else scenario] = tally
    return merged


def report(console: Console, results: dict[str, Result]) -> int:
    failed = False
    table = Table(title="msg/s (higher is better)")
    for column in ("scenario", *CONTENDERS, "x persist-queue", "x huey", "target", ""):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for scenario in SCENARIOS:
        ours = results["distsys"].rates.get(scenario)
        if ours is None:
            continue
        peers = [results[k].rates.get(scenario) for k in CONTENDERS[1:]]
        ratios = [f"{ours / p:.1f}x" if p else "—" for p in peers]
        checks = []
        if scenario in TARGETS:
            checks.append(ours >= TARGETS[scenario])
        if scenario in RATIO_TARGETS and peers[0]:
            checks.append(ours >= TARGET_RATIO * peers[0])
        target = " & ".join(
            ([f">= {TARGETS[scenario]:,}"] if scenario in TARGETS else [])
            + ([f">= {TARGET_RATIO:.0f}x persist-queue"] if scenario in RATIO_TARGETS else [])
        )
        failed |= not all(checks)
        table.add_row(
            scenario, rate(ours), *(rate(p) for p in peers), *ratios, target, verdict(all(checks))
        )
    console.print(table)
    table = Table(title="delivery: every message acked exactly once by the group?")
    for column in (
        "contender",
        "scenario",
        "published",
        "acked",
        "lost",
        "duplicates",
        "redelivered",
        "unexplained",
        "",
    ):
        table.add_column(column, justify="left" if column in ("contender", "scenario") else "right")
    for kind in CONTENDERS:
        for scenario, (tally, per_producer) in results[kind].tallies.items():
            producers = 2 if scenario.startswith("2P + 2C") else 1
            published = per_producer * producers
            expected = {
                message_id(payload(p, i, 1)) for p in range(producers) for i in range(per_producer)
            }
            lost = len(expected - tally.acked.keys())
            duplicates = sum(n - 1 for n in tally.delivered.values() if n > 1)
            unexplained = sum(n - 1 for n in tally.acked.values() if n > 1)
            if kind == "distsys":
                unexplained += max(duplicates - tally.redelivered, 0)
            ok = lost == 0 and unexplained == 0
            if kind == "distsys":
                failed |= not ok
            table.add_row(
                kind,
                scenario,
                f"{published:,}",
                f"{len(tally.acked):,}",
                f"{lost:,}",
                f"{duplicates:,}",
                f"{tally.redelivered:,}",
                f"{unexplained:,}",
                verdict(ok),
            )
    console.print(table)
    console.print(
        "Peers' rows are information: persist-queue's consumers in two processes may take "
        "the same message (its lock is per process); huey deletes a message when taken "
        "(no acks)."
    )
    console.print(verdict(not failed) + " overall")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
