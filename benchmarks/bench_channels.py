"""Side-by-side throughput of ``distsys.concurrency.Chan`` and its peer libraries.

Run: ``.venv/bin/python benchmarks/bench_channels.py [--messages N] [--runs R] [--json PATH]``

One producer sends the ints 0..N-1 and one consumer receives exactly N values and checks
their sum, so a contender that loses, duplicates or invents a value fails loudly. Every
contender runs the same loop shape through pre-bound methods. Each run gets a fresh event
loop and fresh objects; runs are interleaved across contenders so drift (thermal, other
load) hits all of them alike, and the table shows the median of R runs. Every run has a
deadline, so a hung contender is reported as a failure instead of hanging the benchmark.

Not part of the test suite: nothing here asserts a wall-clock time. Needs the ``bench``
extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import queue
import statistics
import sys
import threading
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from time import perf_counter

from rich.console import Console
from rich.table import Table

from distsys.concurrency import Chan

try:
    import aiochannel
    import anyio
    import culsans
    import janus
except ImportError as exc:
    sys.exit(f"bench_channels needs {exc.name!r}: pip install -e '.[bench]'")

CAP = 128
WARMUP_MESSAGES = 10_000

SendA = Callable[[int], Awaitable[None]]
RecvA = Callable[[], Awaitable[int]]
SendT = Callable[[int], object]
RecvT = Callable[[], int]
Run = Callable[[int, float], float]  # (messages, timeout in s) -> elapsed seconds


def _check(total: int, n: int) -> None:
    expected = n * (n - 1) // 2
    if total != expected:
        raise AssertionError(f"consumer's values sum to {total}, expected {expected}")


async def _aproduce(send: SendA, n: int) -> None:
    for i in range(n):
        await send(i)


async def _aconsume(recv: RecvA, n: int) -> int:
    total = 0
    for _ in range(n):
        total += await recv()
    return total


def _produce(send: SendT, n: int) -> int:
    for i in range(n):
        send(i)
    return n


def _consume(recv: RecvT, n: int) -> int:
    total = 0
    for _ in range(n):
        total += recv()
    return total


class _Worker(threading.Thread):
    """A daemon thread that keeps its function's result or exception for whoever joins it.

    Daemon, so a thread stuck in a broken contender cannot keep the process alive.
    """

    def __init__(self, name: str, fn: Callable[[], int]) -> None:
        super().__init__(name=name, daemon=True)
        self._fn = fn
        self.result = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:
            self.error = exc


def _join(workers: list[_Worker], deadline: float) -> None:
    """Join every worker by ``deadline``; raise a crash first, since it explains a hang."""
    for w in workers:
        w.join(max(0.0, deadline - perf_counter()))
    for w in workers:
        if w.error is not None:
            raise w.error
    hung = [w.name for w in workers if w.is_alive()]
    if hung:
        raise TimeoutError(f"{' and '.join(hung)} still running at the deadline")


# ------------------------------------------------------------------ harnesses

MakeTasks = Callable[[AsyncExitStack, int], tuple[SendA, RecvA]]
MakeMixed = Callable[[AsyncExitStack, int], tuple[SendT, RecvA]]
MakeThreads = Callable[[int], tuple[SendT, RecvT]]


def async_pair(make: MakeTasks, size: int) -> Run:
    """Producer and consumer are two tasks on one fresh event loop."""

    async def main(n: int, timeout: float) -> float:
        async with AsyncExitStack() as stack:
            send, recv = make(stack, size)
            start = perf_counter()
            try:
                async with asyncio.timeout(timeout), asyncio.TaskGroup() as tg:
                    tg.create_task(_aproduce(send, n))
                    consumer = tg.create_task(_aconsume(recv, n))
            except TimeoutError:
                raise TimeoutError(f"not done after {timeout}s") from None
            elapsed = perf_counter() - start
        _check(consumer.result(), n)
        return elapsed

    return lambda n, timeout: asyncio.run(main(n, timeout))


def thread_to_async(make: MakeMixed, size: int) -> Run:
    """A producer thread feeds a consumer task on a fresh event loop."""

    async def main(n: int, timeout: float) -> float:
        async with AsyncExitStack() as stack:
            send, recv = make(stack, size)
            producer = _Worker("producer", lambda: _produce(send, n))
            start = perf_counter()
            producer.start()
            try:
                async with asyncio.timeout(timeout):
                    total = await _aconsume(recv, n)
            except TimeoutError:
                if producer.error is not None:  # a crashed producer explains the hang
                    raise producer.error from None
                raise TimeoutError(f"consumer not done after {timeout}s") from None
            elapsed = perf_counter() - start
            _join([producer], perf_counter() + timeout)  # it sent its last value already
        _check(total, n)
        return elapsed

    return lambda n, timeout: asyncio.run(main(n, timeout))


def thread_pair(make: MakeThreads, size: int) -> Run:
    """Producer and consumer are two threads; no event loop."""

    def run(n: int, timeout: float) -> float:
        send, recv = make(size)
        producer = _Worker("producer", lambda: _produce(send, n))
        consumer = _Worker("consumer", lambda: _consume(recv, n))
        start = perf_counter()
        producer.start()
        consumer.start()
        _join([producer, consumer], start + timeout)
        elapsed = perf_counter() - start
        _check(consumer.result, n)
        return elapsed

    return run


# ------------------------------------------------------------------ contenders
# Each returns pre-bound (send, recv) so every loop body has the same shape, and registers
# its cleanup on ``stack``. Those that bind the running loop are made inside one.


def chan_tasks(stack: AsyncExitStack, size: int) -> tuple[SendA, RecvA]:
    ch = Chan[int](size)
    return ch.send, ch.recv


def asyncio_queue(stack: AsyncExitStack, size: int) -> tuple[SendA, RecvA]:
    q = asyncio.Queue[int](size)
    return q.put, q.get


def aiochannel_channel(stack: AsyncExitStack, size: int) -> tuple[SendA, RecvA]:
    ch = aiochannel.Channel[int](size)
    stack.callback(ch.close)
    return ch.put, ch.get


def anyio_stream(stack: AsyncExitStack, size: int) -> tuple[SendA, RecvA]:
    tx, rx = anyio.create_memory_object_stream[int](size)
    stack.callback(rx.close)  # unclosed streams raise ResourceWarning when collected
    stack.callback(tx.close)
    return tx.send, rx.receive


def chan_mixed(stack: AsyncExitStack, size: int) -> tuple[SendT, RecvA]:
    ch = Chan[int](size)
    stack.callback(ch.close)  # after a timeout, wakes a producer parked in send_blocking
    return ch.send_blocking, ch.recv


def culsans_mixed(stack: AsyncExitStack, size: int) -> tuple[SendT, RecvA]:
    q = culsans.Queue[int](size)
    stack.push_async_callback(q.aclose)
    return q.sync_q.put, q.async_q.get


def janus_mixed(stack: AsyncExitStack, size: int) -> tuple[SendT, RecvA]:
    q = janus.Queue[int](size)
    stack.push_async_callback(q.aclose)
    return q.sync_q.put, q.async_q.get


def chan_threads(size: int) -> tuple[SendT, RecvT]:
    ch = Chan[int](size)
    return ch.send_blocking, ch.recv_blocking


def queue_threads(size: int) -> tuple[SendT, RecvT]:
    q = queue.Queue[int](size)
    return q.put, q.get


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    contenders: dict[str, Run]  # the first is distsys, the reference for every ratio


SCENARIOS = [
    Scenario("asyncio-128", "asyncio task -> task, capacity 128", {
        "distsys Chan(128)": async_pair(chan_tasks, CAP),
        "asyncio.Queue(128)": async_pair(asyncio_queue, CAP),
        "aiochannel Channel(128)": async_pair(aiochannel_channel, CAP),
        "anyio memory stream(128)": async_pair(anyio_stream, CAP),
    }),
    Scenario("asyncio-unbuffered", "asyncio task -> task, unbuffered", {
        "distsys Chan()": async_pair(chan_tasks, 0),
        "anyio memory stream(0)": async_pair(anyio_stream, 0),
        "asyncio.Queue(1)": async_pair(asyncio_queue, 1),  # asyncio has no rendezvous queue
    }),
    Scenario("thread-to-asyncio", "thread -> asyncio task, capacity 128", {
        "distsys Chan(128)": thread_to_async(chan_mixed, CAP),
        "culsans Queue(128)": thread_to_async(culsans_mixed, CAP),
        "janus Queue(128)": thread_to_async(janus_mixed, CAP),
    }),
    Scenario("thread-to-thread", "thread -> thread, capacity 128", {
        "distsys Chan(128)": thread_pair(chan_threads, CAP),
        "queue.Queue(128)": thread_pair(queue_threads, CAP),
    }),
]  # fmt: skip

# (scenario, peer, minimum ratio of distsys's median messages/s to the peer's)
TARGETS = [
    ("asyncio-128", "asyncio.Queue(128)", 1.0),
    ("asyncio-unbuffered", "anyio memory stream(0)", 2.0),
    ("thread-to-asyncio", "culsans Queue(128)", 1.0),
    ("thread-to-thread", "queue.Queue(128)", 1.0),
]


# ------------------------------------------------------------------ measuring, reporting


@dataclass
class Result:
    rates: list[float] = field(default_factory=list)  # messages per second, one per run
    error: str | None = None

    def median(self) -> float | None:
        return None if self.error or not self.rates else statistics.median(self.rates)


Results = dict[str, dict[str, Result]]  # scenario key -> contender -> result


def measure(n: int, runs: int, timeout: float, console: Console) -> Results:
    """Run every contender once small (warm-up, not kept) then ``runs`` times, interleaved."""
    results = {s.key: {name: Result() for name in s.contenders} for s in SCENARIOS}
    plan = [("warm-up", min(n, WARMUP_MESSAGES))]
    plan += [(f"run {r}/{runs}", n) for r in range(1, runs + 1)]
    for label, messages in plan:
        for s in SCENARIOS:
            for name, run in s.contenders.items():
                result = results[s.key][name]
                if result.error:
                    continue  # a contender that failed once has no speed to report
                gc.collect()
                with console.status(f"{label}: {s.title}: {name}"):
                    try:
                        elapsed = run(messages, timeout)
                    except Exception as exc:
                        while isinstance(exc, ExceptionGroup):  # from TaskGroup: show the cause
                            exc = exc.exceptions[0]
                        result.error = f"{type(exc).__name__}: {exc}"
                        continue
                if label != "warm-up":
                    result.rates.append(messages / elapsed)
    return results


def ratio(by_name: dict[str, Result], peer: str) -> float | None:
    ours, theirs = next(iter(by_name.values())).median(), by_name[peer].median()
    return ours / theirs if ours is not None and theirs is not None else None


def _rate(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


def report(results: Results, console: Console) -> list[dict[str, object]]:
    """Print one table per scenario, then the targets; return the targets' verdicts."""
    for s in SCENARIOS:
        failures = [f"{name}: {r.error}" for name, r in results[s.key].items() if r.error]
        table = Table(title=s.title, title_justify="left", caption_justify="left")
        table.caption = "\n".join(f"[red]FAILED[/] {line}" for line in failures) or None
        table.add_column("contender", no_wrap=True)
        for column in ("median msg/s", "min - max msg/s", "distsys / this"):
            table.add_column(column, justify="right")
        for name, result in results[s.key].items():
            median, r = result.median(), ratio(results[s.key], name)
            if median is None:
                table.add_row(name, "[red]FAILED[/]", "", "")
                continue
            spread = f"{_rate(min(result.rates))} - {_rate(max(result.rates))}"
            table.add_row(name, _rate(median), spread, f"{r:.2f}x" if r else "n/a")
        console.print(table)

    verdicts: list[dict[str, object]] = []
    table = Table(title="targets: distsys / peer, median msg/s", title_justify="left")
    for column in ("scenario", "peer", "need", "got", "verdict"):
        table.add_column(column)
    for key, peer, need in TARGETS:
        got = ratio(results[key], peer)
        ok = got is not None and got >= need
        verdicts.append({"scenario": key, "peer": peer, "need": need, "got": got, "pass": ok})
        verdict = "[green]PASS[/]" if ok else "[red]FAIL[/]"
        table.add_row(key, peer, f">= {need:.1f}x", f"{got:.2f}x" if got else "n/a", verdict)
    console.print(table)
    return verdicts


async def _loop_name() -> str:
    cls = type(asyncio.get_running_loop())
    return f"{cls.__module__}.{cls.__qualname__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000, help="values per run")
    parser.add_argument("--runs", type=int, default=5, help="runs per contender (median)")
    parser.add_argument("--json", metavar="PATH", help="also write the raw numbers here")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a run fails")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.runs < 1 or args.timeout <= 0:
        parser.error("--messages and --runs must be >= 1, --timeout > 0")

    console = Console()
    env = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "event_loop": asyncio.run(_loop_name()),  # the default policy's: no uvloop here
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    console.print(
        f"[bold]distsys Chan vs peers[/]: {args.messages:,} messages, median of {args.runs} "
        f"runs\n{env['python']}, cpu_count={env['cpu_count']}, {env['platform']}\n"
        f"event loop: {env['event_loop']} (asyncio default)"
    )
    results = measure(args.messages, args.runs, args.timeout, console)
    verdicts = report(results, console)
    if args.json:
        raw = {
            key: {name: {**vars(r), "median": r.median()} for name, r in by_name.items()}
            for key, by_name in results.items()
        }
        document = {**env, "messages": args.messages, "runs": args.runs}
        document |= {"results": raw, "targets": verdicts}
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2)
    broken = any(r.error for by_name in results.values() for r in by_name.values())
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
