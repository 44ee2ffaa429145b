"""What a circuit breaker adds to a successful call: distsys and its peers, side by side.

Run: ``.venv/bin/python benchmarks/bench_breaker.py [--runs R] [--calls N] [--json PATH]``

Every case calls a trivial function N times through a breaker that stays closed, in a
loop of the same shape as the direct-call baseline (``f()`` or ``await af()``); the
*added* cost is the case's median time per call minus the baseline's. Runs are
interleaved across cases (the order rotates each round) so drift on a shared machine
hits all of them alike; the tables show medians of R runs and their spread. Loops are
timed in CPU time of this process (``time.process_time``), not wall-clock time, so
other work on a busy machine does not count (caches still suffer); the load average
is printed before and after.

Sync: distsys ``CircuitBreaker.call`` (time window, the defaults: calls not timed; with
``slow_call_duration``, timed; over a count window), ``@breaker``, ``with
breaker.allow():``, ``with breaker:``, ``AdaptiveBreaker.call``, ``NoopBreaker.call``;
pybreaker ``call``, circuitbreaker's decorator, aiobreaker ``call``, purgatory's
decorator and its pre-fetched breaker in a ``with`` block. Async: the same distsys forms
with ``acall`` / ``async with``; aiobreaker ``call_async``, purgatory's decorator and
pre-fetched ``async with``, circuitbreaker's decorator. (pybreaker's async form needs
Tornado and is left out.) The targets at the end print PASS or FAIL.

Not part of the test suite: nothing here asserts a wall-clock time. Needs the ``bench``
extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import platform
import statistics
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from itertools import repeat
from time import process_time  # CPU time: see the module docstring
from typing import Any

from rich.console import Console
from rich.table import Table

from distsys.resilience import AdaptiveBreaker, CircuitBreaker, CountWindow, NoopBreaker

try:
    import aiobreaker
    import circuitbreaker
    import purgatory
    import pybreaker
except ImportError as exc:
    sys.exit(f"bench_breaker needs {exc.name!r}: pip install -e '.[bench]'")

SyncRun = Callable[[int], float]  # n calls -> seconds in total
AsyncRun = Callable[[int], Awaitable[float]]

DIRECT = "direct call (baseline)"
OURS = "distsys CircuitBreaker.call"
OURS_ASYNC = "distsys CircuitBreaker.acall"


def f() -> int:
    return 1


async def af() -> int:
    return 1


# ------------------------------------------------------------------------ loop shapes


def plain(fn: Callable[[], object]) -> SyncRun:
    def run(n: int) -> float:
        started = process_time()
        for _ in repeat(None, n):
            fn()
        return process_time() - started

    return run


def through(call: Callable[[Callable[[], object]], object]) -> SyncRun:
    def run(n: int) -> float:
        started = process_time()
        for _ in repeat(None, n):
            call(f)
        return process_time() - started

    return run


def inside(make: Callable[[], Any]) -> SyncRun:
    """``with make(): f()``: a context manager made (or reused) per call."""

    def run(n: int) -> float:
        started = process_time()
        for _ in repeat(None, n):
            with make():
                f()
        return process_time() - started

    return run


def aplain(fn: Callable[[], Awaitable[object]]) -> AsyncRun:
    async def run(n: int) -> float:
        started = process_time()
        for _ in repeat(None, n):
            await fn()
        return process_time() - started

    return run


def athrough(acall: Callable[[Callable[[], Awaitable[object]]], Awaitable[object]]) -> AsyncRun:
    async def run(n: int) -> float:
        started = process_time()
        for _ in repeat(None, n):
            await acall(af)
        return process_time() - started

    return run


def ainside(make: Callable[[], Any]) -> AsyncRun:
    async def run(n: int) -> float:
        started = process_time()
        for _ in repeat(None, n):
            async with make():
                await af()
        return process_time() - started

    return run


# ------------------------------------------------------------------------ contenders


def sync_cases() -> dict[str, SyncRun]:
    ours = CircuitBreaker("bench")
    timed = CircuitBreaker("bench-timed", slow_call_duration=5.0)
    counted = CircuitBreaker("bench-count", window=CountWindow(100))
    adaptive = AdaptiveBreaker("bench-adaptive")
    noop = NoopBreaker()
    pyb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    aiob = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=datetime.timedelta(seconds=60))
    cb_decorated = circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=30)(f)
    factory = purgatory.SyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    purgatory_decorated = factory("bench")(f)
    prefetched = factory.get_breaker("bench")
    return {
        DIRECT: plain(f),
        OURS: through(ours.call),
        "  same, slow_call_duration=5 (timed)": through(timed.call),
        "  same, CountWindow(100) (locked)": through(counted.call),
        "  @breaker": plain(ours(f)),
        "  with breaker.allow():": inside(ours.allow),
        "  with breaker:": inside(lambda: ours),
        "distsys AdaptiveBreaker.call": through(adaptive.call),
        "distsys NoopBreaker.call": through(noop.call),
        "pybreaker call": through(pyb.call),
        "circuitbreaker @circuit": plain(cb_decorated),
        "aiobreaker call": through(aiob.call),
        "purgatory @factory": plain(purgatory_decorated),
        "purgatory pre-fetched, with brk:": inside(lambda: prefetched),
    }


async def async_cases() -> dict[str, AsyncRun]:
    ours = CircuitBreaker("bench")
    timed = CircuitBreaker("bench-timed", slow_call_duration=5.0)
    counted = CircuitBreaker("bench-count", window=CountWindow(100))
    adaptive = AdaptiveBreaker("bench-adaptive")
    noop = NoopBreaker()
    aiob = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=datetime.timedelta(seconds=60))
    cb_decorated = circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=30)(af)
    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    purgatory_decorated = factory("bench")(af)
    prefetched = await factory.get_breaker("bench")
    return {
        DIRECT: aplain(af),
        OURS_ASYNC: athrough(ours.acall),
        "  same, slow_call_duration=5 (timed)": athrough(timed.acall),
        "  same, CountWindow(100) (locked)": athrough(counted.acall),
        "  @breaker": aplain(ours(af)),
        "  async with breaker:": ainside(lambda: ours),
        "distsys AdaptiveBreaker.acall": athrough(adaptive.acall),
        "distsys NoopBreaker.acall": athrough(noop.acall),
        "aiobreaker call_async": athrough(aiob.call_async),
        "circuitbreaker @circuit": aplain(cb_decorated),
        "purgatory @factory": aplain(purgatory_decorated),
        "purgatory pre-fetched, async with brk:": ainside(lambda: prefetched),
    }


# ------------------------------------------------------------------------ measuring


@dataclass
class Row:
    name: str
    per_call: list[float]  # seconds per call, one per run
    added: list[float] = field(default_factory=list)  # per run, minus the baseline's

    @property
    def median(self) -> float:
        return statistics.median(self.per_call)

    @property
    def median_added(self) -> float:
        return statistics.median(self.added)


def rotations(names: list[str], runs: int) -> list[list[str]]:
    return [names[i % len(names) :] + names[: i % len(names)] for i in range(runs)]


def measure_sync(cases: dict[str, SyncRun], calls: int, runs: int) -> dict[str, Row]:
    rows = {name: Row(name, []) for name in cases}
    for run in cases.values():  # warm-up, not kept
        run(calls // 10)
    for order in rotations(list(cases), runs):
        for name in order:
            gc.collect()
            rows[name].per_call.append(cases[name](calls) / calls)
    return _with_added(rows)


def measure_async(calls: int, runs: int) -> dict[str, Row]:
    async def main() -> dict[str, Row]:
        cases = await async_cases()
        rows = {name: Row(name, []) for name in cases}
        for run in cases.values():
            await run(calls // 10)
        for order in rotations(list(cases), runs):
            for name in order:
                gc.collect()
                rows[name].per_call.append(await cases[name](calls) / calls)
        return rows

    return _with_added(asyncio.run(main()))


def _with_added(rows: dict[str, Row]) -> dict[str, Row]:
    base = rows[DIRECT].median
    for row in rows.values():
        row.added = [t - base for t in row.per_call]
    return rows


def ns(seconds: float) -> str:
    return f"{seconds * 1e9:,.0f} ns"


def print_rows(console: Console, title: str, rows: dict[str, Row], ours: str) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("case")
    table.add_column("per call", justify="right")
    table.add_column("added", justify="right")
    table.add_column("added, min - max", justify="right")
    table.add_column("note")
    mine = rows[ours].median_added
    for row in rows.values():
        if row.name == DIRECT:
            table.add_row(row.name, ns(row.median), "", "", "")
            continue
        note = ""
        if not row.name.startswith(("distsys", "  ")):
            note = f"distsys {row.median_added / mine:.1f}x less" if mine > 0 else ""
        table.add_row(
            row.name,
            ns(row.median),
            ns(row.median_added),
            f"{ns(min(row.added))} - {ns(max(row.added))}",
            note,
        )
    console.print(table)


@dataclass
class Target:
    what: str
    ours: float
    limit: float

    @property
    def met(self) -> bool:
        return self.ours <= self.limit


PEERS_SYNC = (
    "pybreaker call",
    "circuitbreaker @circuit",
    "aiobreaker call",
    "purgatory @factory",
    "purgatory pre-fetched, with brk:",
)
PEERS_ASYNC = (
    "aiobreaker call_async",
    "circuitbreaker @circuit",
    "purgatory @factory",
    "purgatory pre-fetched, async with brk:",
)


def targets(sync: dict[str, Row], asyn: dict[str, Row]) -> list[Target]:
    found: list[Target] = []
    for label, rows, ours_name, peers, quarters in (
        ("sync", sync, OURS, PEERS_SYNC, ("pybreaker call", "aiobreaker call")),
        ("async", asyn, OURS_ASYNC, PEERS_ASYNC, ("aiobreaker call_async",)),
    ):
        for variant, name in (
            ("", ours_name),
            (", timed", "  same, slow_call_duration=5 (timed)"),
        ):
            ours = rows[name].median_added
            lowest = min(peers, key=lambda p: rows[p].median_added)
            found.append(
                Target(
                    f"{label}{variant}: added <= lowest peer's ({lowest})",
                    ours,
                    rows[lowest].median_added,
                )
            )
            for peer in quarters:
                found.append(
                    Target(
                        f"{label}{variant}: added <= 1/4 of {peer}",
                        ours,
                        rows[peer].median_added / 4,
                    )
                )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="runs per case (median)")
    parser.add_argument("--calls", type=int, default=200_000, help="calls per run")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    console = Console(width=130)
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("pybreaker", "circuitbreaker", "aiobreaker", "purgatory")
    )
    console.print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}; medians of {args.runs} runs of "
        f"{args.calls:,} calls, in CPU time; load average {os.getloadavg()[0]:.2f}"
    )
    console.print(versions)
    sync = measure_sync(sync_cases(), args.calls, args.runs)
    print_rows(console, "sync: a successful call through a closed breaker", sync, OURS)
    asyn = measure_async(args.calls, args.runs)
    print_rows(console, "async: a successful call through a closed breaker", asyn, OURS_ASYNC)

    table = Table(title="targets (added ns per call)", title_justify="left")
    table.add_column("target")
    table.add_column("distsys", justify="right")
    table.add_column("limit", justify="right")
    table.add_column("")
    found = targets(sync, asyn)
    for t in found:
        table.add_row(t.what, ns(t.ours), ns(t.limit), "PASS" if t.met else "FAIL")
    console.print(table)
    console.print(f"load average {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                {
                    section: {
                        r.name.strip(): {
                            "per_call_ns": r.median * 1e9,
                            "added_ns": r.median_added * 1e9,
                        }
                        for r in rows.values()
                    }
                    for section, rows in (("sync", sync), ("async", asyn))
                }
                | {"targets": [{"what": t.what, "met": t.met} for t in found]},
                out,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
