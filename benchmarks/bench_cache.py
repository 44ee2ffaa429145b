"""Side-by-side throughput of ``distsys.cache`` and its peer libraries.

Run: ``.venv/bin/python benchmarks/bench_cache.py [--ops N] [--runs R] [--clock cpu|wall]
[--json PATH]``

1. LRU caches. One trace of N operations over a universe of 1,000,000 keys drawn from a
   Zipf(1.1) law (seeded numpy generator; the key ids are shuffled so popularity has
   nothing to do with the integer value): 80% reads that put the key on a miss, 20%
   puts. Every contender runs the same loop through pre-bound ``get`` / ``put`` methods
   at capacities 10,000 and 100,000: distsys ``LRUCache`` (no TTL, and with a one-day
   TTL so nothing expires: the cost of the TTL bookkeeping), ``ThreadSafeLRUCache``,
   ``cachetools.LRUCache`` and ``TTLCache``, lru-dict's C ``LRU``, and a plain
   ``OrderedDict`` LRU as the reference. Before timing, one untimed pass per contender
   counts its hits: exact LRU caches must all match the reference, and the benchmark
   fails if one does not.
2. Memoising decorators, ``functools.lru_cache`` vs ``distsys.cache.cached`` vs
   ``cachetools.cached``, on an identity function: called on the trace's keys (hits and
   misses; every hit ratio must equal the reference LRU's), and on the hit path alone
   (the 1,000 hottest keys, warm, called in turn N times).

Each run gets fresh objects; runs are interleaved across contenders (the order rotates)
so drift hits all of them alike; the tables show the median of R runs and the spread
((slowest - fastest) / median). Runs are timed by the process's CPU time by default: the
work is single-threaded, and on a shared machine wall time also counts the time other
processes had the core. The trace is built once, before any timing, and frozen out of
the garbage collector's sight (``gc.freeze``) so collections do not scan its
million-element lists; only the loop over the cache calls is timed. Every target prints
PASS or FAIL.

Not part of the test suite: nothing here asserts a wall-clock time. Needs the ``bench``
extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import gc
import json
import os
import platform
import statistics
import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from time import perf_counter, process_time
from typing import Any

from rich.console import Console
from rich.table import Table

from distsys.cache import LRUCache, ThreadSafeLRUCache, cached

try:
    import cachetools
    import lru
    import numpy as np
except ImportError as exc:
    sys.exit(f"bench_cache needs {exc.name!r}: pip install -e '.[bench]'")

UNIVERSE = 1_000_000
ZIPF_S = 1.1
READ_SHARE = 0.8
CAPACITIES = (10_000, 100_000)
DAY = 86_400.0
HOT_KEYS = 1_000

Get = Callable[[int], Any]
Timer = Callable[[], float]
Put = Callable[[int, int], Any]


def make_trace(n: int, seed: int) -> tuple[list[int], list[bool]]:
    """Return ``n`` Zipf(1.1) keys over ``UNIVERSE`` ids and whether each op is a read."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, UNIVERSE + 1, dtype=np.float64) ** -ZIPF_S
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    ranks = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), UNIVERSE - 1)
    ids = rng.permutation(UNIVERSE)  # rank -> key id, so hot keys are not small ints
    keys: list[int] = ids[ranks].tolist()
    reads: list[bool] = (rng.random(n) < READ_SHARE).tolist()
    return keys, reads


class OrderedDictLRU:
    """The reference: the textbook LRU on an OrderedDict, as little code as possible."""

    __slots__ = ("_data", "_get", "_maxsize", "_move")

    def __init__(self, maxsize: int) -> None:
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._get = self._data.get
        self._move = self._data.move_to_end
        self._maxsize = maxsize

    def get(self, key: Hashable, default: Any = None) -> Any:
        value = self._get(key, self)
        if value is self:
            return default
        self._move(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        data = self._data
        if key in data:
            self._move(key)
        data[key] = value
        if len(data) > self._maxsize:
            data.popitem(False)


def _bound(obj: Any, get: str = "get", put: str = "put") -> tuple[Get, Put]:
    return getattr(obj, get), getattr(obj, put)


LRU_CONTENDERS: dict[str, Callable[[int], tuple[Get, Put]]] = {
    "OrderedDict LRU (reference)": lambda cap: _bound(OrderedDictLRU(cap)),
    "distsys LRUCache": lambda cap: _bound(LRUCache[int, int](cap)),
    "distsys LRUCache ttl=1d": lambda cap: _bound(LRUCache[int, int](cap, ttl=DAY)),
    "distsys ThreadSafeLRUCache": lambda cap: _bound(ThreadSafeLRUCache[int, int](cap)),
    "cachetools.LRUCache": lambda cap: _bound(cachetools.LRUCache(cap), put="__setitem__"),
    "cachetools.TTLCache ttl=1d": lambda cap: _bound(
        cachetools.TTLCache(cap, DAY), put="__setitem__"
    ),
    "lru-dict LRU (C)": lambda cap: _bound(lru.LRU(cap), put="__setitem__"),
}


Memoize = Callable[[int, Callable[[int], int]], Callable[[int], int]]

MEMO_CONTENDERS: dict[str, Memoize] = {
    "functools.lru_cache (C)": lambda cap, fn: functools.lru_cache(maxsize=cap)(fn),
    "distsys cached(LRUCache)": lambda cap, fn: cached(LRUCache[Any, Any](cap))(fn),
    "distsys cached(ThreadSafeLRUCache)": lambda cap, fn: cached(ThreadSafeLRUCache[Any, Any](cap))(
        fn
    ),
    "cachetools.cached(LRUCache)": lambda cap, fn: cachetools.cached(cachetools.LRUCache(cap))(fn),
}


def run_lru(get: Get, put: Put, keys: list[int], reads: list[bool], timer: Timer) -> float:
    start = timer()
    for key, read in zip(keys, reads, strict=True):
        if read:
            if get(key) is None:
                put(key, key)
        else:
            put(key, key)
    return timer() - start


def count_lru_hits(get: Get, put: Put, keys: list[int], reads: list[bool]) -> int:
    hits = 0
    for key, read in zip(keys, reads, strict=True):
        if read:
            if get(key) is None:
                put(key, key)
            else:
                hits += 1
        else:
            put(key, key)
    return hits


def run_memo(fn: Callable[[int], int], keys: list[int], timer: Timer) -> float:
    start = timer()
    for key in keys:
        fn(key)
    return timer() - start


@dataclass
class Row:
    name: str
    seconds: list[float] = field(default_factory=list)
    hit_ratio: float = 0.0

    def ops(self, n: int) -> float:
        return n / statistics.median(self.seconds)

    def spread(self) -> float:
        """(slowest - fastest) / median run: how noisy the runs were."""
        return (max(self.seconds) - min(self.seconds)) / statistics.median(self.seconds)


@dataclass
class Section:
    kind: str  # "lru", "memo trace" or "memo hits"
    cap: int
    title: str
    n: int
    rows: dict[str, Row]

    def ratio(self, a: str, b: str) -> float:
        return self.rows[a].ops(self.n) / self.rows[b].ops(self.n)


def _interleaved(names: list[str], runs: int) -> list[str]:
    order: list[str] = []
    for r in range(runs):
        shift = r % len(names)
        order += names[shift:] + names[:shift]
    return order


def bench_lru(cap: int, keys: list[int], reads: list[bool], runs: int, timer: Timer) -> Section:
    rows = {name: Row(name) for name in LRU_CONTENDERS}
    reference = None
    for name, make in LRU_CONTENDERS.items():  # the first is the reference
        hits = count_lru_hits(*make(cap), keys, reads)
        reference = hits if reference is None else reference
        if hits != reference:
            raise AssertionError(f"{name}: {hits} hits at capacity {cap}, reference {reference}")
        rows[name].hit_ratio = hits / sum(reads)
    for name in _interleaved(list(LRU_CONTENDERS), runs):
        gc.collect()
        get, put = LRU_CONTENDERS[name](cap)
        rows[name].seconds.append(run_lru(get, put, keys, reads, timer))
        del get, put
    title = f"LRU caches, capacity {cap:,}: ops/s, 80% get (put on a miss) + 20% put"
    return Section("lru", cap, title, len(keys), rows)


def reference_hit_ratio(cap: int, keys: list[int]) -> float:
    """The exact-LRU hit ratio of a memoised function called on ``keys``."""
    cache = OrderedDictLRU(cap)
    misses = 0
    for key in keys:
        if cache.get(key) is None:
            misses += 1
            cache.put(key, key)
    return 1 - misses / len(keys)


def bench_memo(
    cap: int, keys: list[int], runs: int, timer: Timer, *, hits_only: bool, warm: list[int]
) -> Section:
    rows = {name: Row(name) for name in MEMO_CONTENDERS}
    expected = 1.0 if hits_only else reference_hit_ratio(cap, keys)
    for name in _interleaved(list(MEMO_CONTENDERS), runs):
        gc.collect()
        calls = 0

        def identity(key: int) -> int:
            nonlocal calls  # only misses get here, the same number for every contender
            calls += 1
            return key

        fn = MEMO_CONTENDERS[name](cap, identity)
        for key in warm:
            fn(key)
        calls = 0
        rows[name].seconds.append(run_memo(fn, keys, timer))
        hit_ratio = 1 - calls / len(keys)
        if hit_ratio != expected:
            raise AssertionError(f"{name}: hit ratio {hit_ratio} at capacity {cap}, not {expected}")
        rows[name].hit_ratio = hit_ratio
        del fn
    if hits_only:
        title = f"memoised function, capacity {cap:,}: calls/s, hits only ({len(warm):,} warm keys)"
    else:
        title = f"memoised function, capacity {cap:,}: calls/s on the trace's keys"
    return Section("memo hits" if hits_only else "memo trace", cap, title, len(keys), rows)


def print_section(console: Console, section: Section, baselines: list[str]) -> None:
    table = Table(title=section.title, title_justify="left")
    table.add_column("contender")
    table.add_column("ops/s", justify="right")
    table.add_column("spread", justify="right")
    for base in baselines:
        table.add_column(f"vs {base}", justify="right")
    table.add_column("hit ratio", justify="right")
    n = section.n
    for row in section.rows.values():
        ratios = [f"{section.ratio(row.name, base):.2f}x" for base in baselines]
        table.add_row(
            row.name,
            f"{row.ops(n) / 1e6:.2f} M",
            f"{row.spread():.0%}",
            *ratios,
            f"{row.hit_ratio:.4f}",
        )
    console.print(table)


@dataclass
class Target:
    what: str
    ratio: float
    goal: float

    @property
    def met(self) -> bool:
        return self.ratio >= self.goal


def targets(sections: list[Section]) -> list[Target]:
    found: list[Target] = []
    for s in sections:
        cap = f"capacity {s.cap:,}"
        if s.kind == "lru":
            found += [
                Target(
                    f"LRUCache / cachetools.LRUCache, {cap}",
                    s.ratio("distsys LRUCache", "cachetools.LRUCache"),
                    1.8,
                ),
                Target(
                    f"LRUCache / lru-dict, {cap}",
                    s.ratio("distsys LRUCache", "lru-dict LRU (C)"),
                    0.8,
                ),
                Target(
                    f"LRUCache ttl / cachetools.TTLCache, {cap}",
                    s.ratio("distsys LRUCache ttl=1d", "cachetools.TTLCache ttl=1d"),
                    4.0,
                ),
            ]
        else:
            found.append(
                Target(
                    f"cached / cachetools.cached, {s.kind.removeprefix('memo ')}, {cap}",
                    s.ratio("distsys cached(LRUCache)", "cachetools.cached(LRUCache)"),
                    3.0,
                )
            )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=1_000_000, help="operations per run")
    parser.add_argument("--runs", type=int, default=7, help="runs per contender (median)")
    parser.add_argument("--seed", type=int, default=20240611, help="seed of the trace")
    parser.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        default="cpu",
        help="time runs by this process's CPU time (default) or by the wall clock",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the raw numbers here")
    args = parser.parse_args(argv)
    timer: Timer = process_time if args.clock == "cpu" else perf_counter

    console = Console(width=132)
    console.print(
        f"bench_cache {datetime.date.today()}: Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.processor() or 'cpu'}; {args.ops:,} ops per run, median of {args.runs} "
        f"runs, timed by {'CPU time (time.process_time)' if args.clock == 'cpu' else 'wall clock'}"
    )
    keys, reads = make_trace(args.ops, args.seed)
    counts: dict[int, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    hot = sorted(counts, key=counts.__getitem__, reverse=True)[:HOT_KEYS]
    hits_only = (hot * (args.ops // len(hot) + 1))[: args.ops]
    gc.collect()
    gc.freeze()  # the trace lists are not the contenders' garbage to scan

    sections = [bench_lru(cap, keys, reads, args.runs, timer) for cap in CAPACITIES]
    sections += [
        bench_memo(cap, keys, args.runs, timer, hits_only=False, warm=[]) for cap in CAPACITIES
    ]
    sections += [
        bench_memo(cap, hits_only, args.runs, timer, hits_only=True, warm=hot) for cap in CAPACITIES
    ]
    for section in sections:
        if section.kind == "lru":
            baselines = ["OrderedDict LRU (reference)", "cachetools.LRUCache", "lru-dict LRU (C)"]
        else:
            baselines = ["functools.lru_cache (C)", "cachetools.cached(LRUCache)"]
        print_section(console, section, baselines)

    table = Table(title="targets (same run, median ops/s)", title_justify="left")
    for column in ("target", "ratio", "goal", "result"):
        table.add_column(column, justify="left" if column == "target" else "right")
    found = targets(sections)
    for t in found:
        table.add_row(t.what, f"{t.ratio:.2f}x", f">= {t.goal}x", "PASS" if t.met else "FAIL")
    console.print(table)

    if args.json:
        document = {
            "date": str(datetime.date.today()),
            "python": platform.python_version(),
            "cores": os.cpu_count(),
            "clock": args.clock,
            "ops": args.ops,
            "runs": args.runs,
            "sections": [
                {
                    "title": s.title,
                    "rows": {
                        name: {
                            "ops_per_s": row.ops(s.n),
                            "hit_ratio": row.hit_ratio,
                            "seconds": row.seconds,
                        }
                        for name, row in s.rows.items()
                    },
                }
                for s in sections
            ],
            "targets": [
                {"what": t.what, "ratio": t.ratio, "goal": t.goal, "met": t.met} for t in found
            ],
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
