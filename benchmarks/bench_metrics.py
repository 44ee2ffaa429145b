"""Throughput of ``distsys.metrics`` and, side by side, numpy and the ``ddsketch`` package.

Run: ``.venv/bin/python benchmarks/bench_metrics.py [--runs R] [--adds N] [--json PATH]``

Measured, each as the median of R interleaved runs (one warm-up run first, not kept):

* adds per second: ``RollingWindow.add`` with and without its lock, ``RollingCounter.add``
  of three fields, ``RollingPercentiles.add``, ``LogSketch.add`` and ``DDSketch.add``;
  and the bare cost of taking an uncontended ``threading.Lock``, to read the first pair by;
* the cost of one read: ``RollingWindow.statistics()`` (10 and 100 buckets) and
  ``RollingCounter.totals()``;
* the cost of a p99 over a full window of 10 buckets x 10k values: ``RollingPercentiles``
  (merges the 10 sketches, then ranks), ``ddsketch`` (the same merge-then-rank by hand),
  and ``numpy.percentile`` over the 100k raw values, with the relative error of each p99.

Adds read the real clock (``MonotonicClock``), as they do in a service. Not part of the
test suite: nothing here asserts a wall-clock time. numpy and ddsketch are optional: a
missing one is reported and skipped (``pip install numpy ddsketch``).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import statistics
import threading
from collections.abc import Callable
from time import perf_counter
from typing import Any

from rich.console import Console
from rich.table import Table

from distsys.metrics import LogSketch, RollingCounter, RollingPercentiles, RollingWindow
from distsys.testing import ManualClock

try:
    import numpy
except ImportError:
    numpy = None
try:
    from ddsketch import DDSketch
except ImportError:
    DDSketch = None

BUCKETS, PER_BUCKET = 10, 10_000
Run = Callable[[], float]  # one run -> seconds per operation


def latencies(n: int, seed: int = 1) -> list[float]:
    """Return ``n`` log-normal "latencies" around 20 ms with a long tail."""
    rng = random.Random(seed)
    return [rng.lognormvariate(math.log(0.02), 1.0) for _ in range(n)]


# ------------------------------------------------------------------------------ adds/s


def adds(make: Callable[[], Callable[[float], object]], values: list[float]) -> Run:
    def run() -> float:
        add = make()
        started = perf_counter()
        for value in values:
            add(value)
        return (perf_counter() - started) / len(values)

    return run


def counter_adds(values: list[float]) -> Run:
    def run() -> float:
        add = RollingCounter(10, 1.0, fields=("calls", "failures", "slow")).add
        flags = [(value > 0.05, value > 0.1) for value in values]
        started = perf_counter()
        for failed, slow in flags:
            add(1, failed, slow)
        return (perf_counter() - started) / len(values)

    return run


def bare_lock(n: int) -> Run:
    def run() -> float:
        lock = threading.Lock()
        started = perf_counter()
        for _ in range(n):
            with lock:
                pass
        locked = perf_counter() - started
        started = perf_counter()
        for _ in range(n):
            pass
        return (locked - (perf_counter() - started)) / n

    return run


# ------------------------------------------------------------------------------ reads


def reads(read: Callable[[], object], n: int = 20_000) -> Run:
    def run() -> float:
        started = perf_counter()
        for _ in range(n):
            read()
        return (perf_counter() - started) / n

    return run


def full_window(size: int) -> RollingWindow:
    clock = ManualClock()
    window = RollingWindow(size, 1.0, clock=clock)
    for _ in range(size):
        for value in latencies(100):
            window.add(value)
        clock.advance(1.0)
    return window


def full_counter() -> RollingCounter:
    clock = ManualClock()
    counter = RollingCounter(10, 1.0, fields=("calls", "failures", "slow"), clock=clock)
    for _ in range(10):
        for _ in range(100):
            counter.add(1, 0, 1)
        clock.advance(1.0)
    return counter


# ------------------------------------------------------------------------ p99 queries

Query = tuple[Run, float]  # (run, the relative error of its p99)


def true_p99(data: list[float]) -> float:
    return sorted(data)[math.floor(0.99 * (len(data) - 1))]


def rolling_p99(data: list[float], *, after_roll: bool) -> Query:
    """p99 of a full RollingPercentiles; ``after_roll``: as the first read after a roll.

    Between rolls the window keeps the merge of its completed buckets, so only the first
    read after a roll merges all of them; ``after_roll`` drops that cache before each read
    (a private attribute: the benchmark's only peek inside).
    """
    clock = ManualClock()
    window = RollingPercentiles(BUCKETS, 1.0, clock=clock)
    for b in range(BUCKETS):
        for value in data[b * PER_BUCKET : (b + 1) * PER_BUCKET]:
            window.add(value)
        if b < BUCKETS - 1:
            clock.advance(1.0)

    def query() -> float | None:
        if after_roll:
            window._completed = None
        return window.quantile(0.99)

    p99 = query()
    assert p99 is not None
    return reads(query, 200), abs(p99 - true_p99(data)) / true_p99(data)


def ddsketch_p99(data: list[float]) -> Query:
    assert DDSketch is not None
    sketches = []
    for b in range(BUCKETS):
        sketch = DDSketch(relative_accuracy=0.01)
        for value in data[b * PER_BUCKET : (b + 1) * PER_BUCKET]:
            sketch.add(value)
        sketches.append(sketch)

    def query() -> float:
        merged = DDSketch(relative_accuracy=0.01)
        for sketch in sketches:
            merged.merge(sketch)
        return float(merged.get_quantile_value(0.99))

    p99 = query()
    return reads(query, 200), abs(p99 - true_p99(data)) / true_p99(data)


def one_sketch_p99(make: Callable[[], Any], quantile: str, data: list[float]) -> Query:
    sketch = make()
    for value in data:
        sketch.add(value)
    read = getattr(sketch, quantile)
    p99 = float(read(0.99))
    return reads(lambda: read(0.99), 2000), abs(p99 - true_p99(data)) / true_p99(data)


def numpy_p99(data: list[float]) -> Query:
    assert numpy is not None
    array = numpy.array(data)

    def query() -> float:
        return float(numpy.percentile(array, 99, method="lower"))

    p99 = query()
    return reads(query, 200), abs(p99 - true_p99(data)) / true_p99(data)


# ------------------------------------------------------------------------------ running


def measure(cases: dict[str, Run], runs: int, console: Console) -> dict[str, list[float]]:
    """Run every case once (warm-up, not kept), then ``runs`` times, interleaved."""
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(runs + 1):
        for name, run in cases.items():
            gc.collect()
            with console.status(f"run {r}/{runs}: {name}"):
                seconds = run()
            if r:
                timings[name].append(seconds)
    return timings


def _time(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.2f} us"
    return f"{seconds * 1e9:.0f} ns"


def _rate(per_op: float) -> str:
    rate = 1 / per_op
    return f"{rate / 1e6:.2f}M/s" if rate >= 1e6 else f"{rate / 1e3:.0f}k/s"


# (faster case, slower case, what to call the faster one): the slower row gets the ratio
PAIRS = [
    ("LogSketch.add", "ddsketch DDSketch.add", "LogSketch"),
    ("RollingWindow.add, thread_safe=False", "RollingWindow.add, thread_safe=True", "no lock"),
    ("  same, first read after a roll", "ddsketch: merge 10 sketches + p99", "distsys"),
    ("RollingPercentiles.quantile(0.99)", "numpy.percentile(100k raw, 99, lower)", "distsys"),
    ("LogSketch.quantile(0.99), one sketch", "DDSketch.get_quantile_value(0.99), one", "LogSketch"),
]


def ratios(timings: dict[str, list[float]]) -> dict[str, str]:
    notes = {}
    for ours, peer, label in PAIRS:
        if ours in timings and peer in timings:
            ratio = statistics.median(timings[peer]) / statistics.median(timings[ours])
            notes[peer] = f"{label} {ratio:.2f}x faster"
    return notes


def report(
    console: Console,
    title: str,
    timings: dict[str, list[float]],
    *,
    rates: bool,
    notes: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    speed = ratios(timings)
    notes = {
        name: "; ".join(n for n in ((notes or {}).get(name, ""), speed.get(name, "")) if n)
        for name in timings
    }
    table = Table(title=title, title_justify="left")
    table.add_column("case", no_wrap=True)
    table.add_column("median per op", justify="right")
    if rates:
        table.add_column("median ops/s", justify="right")
    table.add_column("min - max per op", justify="right")
    if any(notes.values()):
        table.add_column("note")
    rows = []
    for name, samples in timings.items():
        median = statistics.median(samples)
        row = [name, _time(median)]
        if rates:
            row.append(_rate(median))
        row.append(f"{_time(min(samples))} - {_time(max(samples))}")
        if any(notes.values()):
            row.append(notes[name])
        table.add_row(*row)
        rows.append({"case": name, "median_seconds": median, "runs": samples})
    console.print(table)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per case (median)")
    parser.add_argument("--adds", type=int, default=200_000, help="values added per run")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    console = Console(width=140)
    console.print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}; medians of {args.runs} runs"
    )
    values = latencies(args.adds)

    add_cases: dict[str, Run] = {
        "uncontended threading.Lock (with: pass)": bare_lock(args.adds),
        "RollingWindow.add, thread_safe=True": adds(lambda: RollingWindow(10, 1.0).add, values),
        "RollingWindow.add, thread_safe=False": adds(
            lambda: RollingWindow(10, 1.0, thread_safe=False).add, values
        ),
        "RollingCounter.add(1, failed, slow)": counter_adds(values),
        "RollingPercentiles.add": adds(lambda: RollingPercentiles(10, 1.0).add, values),
        "LogSketch.add": adds(lambda: LogSketch().add, values),
    }
    if DDSketch is not None:
        add_cases["ddsketch DDSketch.add"] = adds(lambda: DDSketch(0.01).add, values)

    windows = {size: full_window(size) for size in (10, 100)}
    counter = full_counter()
    read_cases: dict[str, Run] = {
        "RollingWindow.statistics(), 10 buckets": reads(windows[10].statistics),
        "RollingWindow.statistics(), 100 buckets": reads(windows[100].statistics),
        "RollingCounter.totals(), 10 buckets": reads(counter.totals),
    }

    data = latencies(BUCKETS * PER_BUCKET, seed=2)
    queries = {
        "RollingPercentiles.quantile(0.99)": rolling_p99(data, after_roll=False),
        "  same, first read after a roll": rolling_p99(data, after_roll=True),
    }
    if DDSketch is not None:
        queries["ddsketch: merge 10 sketches + p99"] = ddsketch_p99(data)
    queries["LogSketch.quantile(0.99), one sketch"] = one_sketch_p99(LogSketch, "quantile", data)
    if DDSketch is not None:
        queries["DDSketch.get_quantile_value(0.99), one"] = one_sketch_p99(
            lambda: DDSketch(0.01), "get_quantile_value", data
        )
    if numpy is not None:
        queries["numpy.percentile(100k raw, 99, lower)"] = numpy_p99(data)
    missing = [name for name, module in (("numpy", numpy), ("ddsketch", DDSketch)) if not module]
    if missing:
        console.print(f"[yellow]skipped (not installed): {', '.join(missing)}[/]")

    results = {
        "adds": report(
            console, "adds (real clock)", measure(add_cases, args.runs, console), rates=True
        ),
        "reads": report(console, "one read", measure(read_cases, args.runs, console), rates=False),
        "p99": report(
            console,
            f"p99 over a full window ({BUCKETS} buckets x {PER_BUCKET:,} values)",
            measure({name: run for name, (run, _) in queries.items()}, args.runs, console),
            rates=False,
            notes={name: f"p99 error {error:.2%}" for name, (_, error) in queries.items()},
        ),
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
