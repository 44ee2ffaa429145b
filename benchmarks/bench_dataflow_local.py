"""distsys.dataflow's local engine against plain Python and multiprocessing, side by side.

Run: ``.venv/bin/python benchmarks/bench_dataflow_local.py [--data DIR] [--size 300MB]
[--rows 10000000] [--customers 1000000] [--workers N] [--runs 2]
[--only wordcount,join,sort,memory,rowsort] [--contenders WORD,...] [--save FILE.json]``

Each workload is a table of contenders (name -> function) run one after another on the
same generated inputs, with every result checked against the first contender's. The
peer engines of the first three — Dask (bag / dataframe on a ``workers``-process
``LocalCluster``), PySpark (``local[workers]``: RDD and SQL), Ray (tasks, word count
only) and polars (the columnar reference) — live in ``dataflow_peers.py``; an engine
whose library is missing is skipped with a note.

1. **word count** over a Zipf corpus (``gen_corpus.py``; generated once under
   ``--data``): ``collections.Counter`` in one process; ``multiprocessing.Pool`` with one
   byte range of the corpus per process, Counters merged in the parent (the ceiling a
   careful hand-written program reaches); distsys ``flat_map(str.split).count_by_value()``;
   distsys ``flat_map(str.split).map(pair).reduce_by_key(operator.add)``; Dask
   ``bag.map(str.split).flatten().frequencies()``; Spark ``flatMap / map /
   reduceByKey`` and ``explode(split(...)).groupBy().count()``; Ray tasks over the Pool's
   byte ranges; polars.
2. **join + sum per group**: ``sales.csv`` (``--rows`` lines ``customer,count``) joined
   with ``customers.csv`` (``--customers`` lines ``customer,country``), the counts summed
   per country. One process: a dict of customers, one pass over the sales; the Pool: each
   process loads the customers and sums its byte range of the sales; distsys rows:
   ``join`` then ``reduce_by_key``; distsys columnar: ``read_table`` (typed Arrow
   tables), ``join`` then ``group_by().agg()``; Dask dataframe ``merge`` +
   ``groupby().sum()``; Spark SQL ``join`` + ``groupBy().sum()``; polars.
3. **full sort of the counts**: the word count, then every ``(word, count)`` sorted by
   count then word, descending, written as ``word<TAB>count`` lines. One process and the
   Pool sort the merged Counter with ``sorted``; distsys ``count_by_value().sort_by(...)
   .save_text()`` (range partitioned by sampled bounds: a globally sorted output); Dask
   ``sort_values`` + ``to_csv``; Spark SQL ``orderBy`` + ``write.csv``; polars.
4. **bounded memory**: the word count and a full sort of the ``--rows`` sales rows with
   ``memory_limit`` a tenth of the input size; the peak resident memory of each worker
   must stay under the limit plus a fixed overhead.
5. ``rowsort`` (not run by default: minutes): a full sort of the sales by ``(count,
   customer)``. One process: ``list.sort``; the Pool: sample, range-partition into
   files, sort each range (the algorithm distsys uses, by hand); distsys
   ``sort_by(...).save_text()``.

Each contender runs ``--runs`` times (default 2), interleaved with the others, and its
fastest correct run counts (the machine is shared; the fastest run is the least
disturbed one). Every run happens in a fresh interpreter (``spawn``), so nothing one
contender imported, started or held counts against the next. Its wall time includes its
start-up (processes, cluster, session), which is also printed; peak memory is the
largest sum of the resident memory of that interpreter and all its descendants (worker
processes, a JVM), sampled every 50 ms (psutil; ``ru_maxrss`` without it). Each target
prints PASS or FAIL. To add an engine, add an entry to the contender tables
(``WORDCOUNT``, ``JOIN``, ``SORT``). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import multiprocessing
import operator
import os
import pickle
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dataflow_peers as peers
from distsys.dataflow import open_session
from gen_corpus import generate_corpus, parse_size

try:
    import psutil
except ImportError:  # pragma: no cover
    psutil = None

COUNTRIES = [f"C{i:03d}" for i in range(200)]
MEMORY_OVERHEAD = 160 << 20  # fixed per-worker allowance over memory_limit: interpreter, buffers
# Dask join / Pool join in the issue (7.4 s / 7.2 s): the goal when Dask is not installed.
JOIN_VS_DASK = 7.4 / 7.2


@dataclass
class Inputs:
    corpus: list[str]
    sales: str
    customers: str
    scratch: str
    workers: int
    memory_limit: int | None = None


@dataclass
class Outcome:
    """What a contender returns: its result, and its start-up time and spills if known."""

    result: Any
    startup: float | None = None
    spilled: int = 0


@dataclass
class Measure:
    name: str
    seconds: float = 0.0
    startup: float | None = None
    peak: int = 0
    worker_peak: int = 0
    result: Any = None
    spilled: int = 0
    note: str = ""


# ---------------------------------------------------------------- helpers (picklable)


def byte_ranges(paths: list[str], pieces: int) -> list[list[tuple[str, int, int]]]:
    """Cut the concatenation of ``paths`` into ``pieces`` ranges of equal bytes."""
    sizes = [os.path.getsize(p) for p in paths]
    total = sum(sizes)
    bounds = [total * i // pieces for i in range(pieces + 1)]
    ranges: list[list[tuple[str, int, int]]] = []
    for i in range(pieces):
        lo, hi, offset, part = bounds[i], bounds[i + 1], 0, []
        for path, size in zip(paths, sizes, strict=True):
            start, end = max(lo - offset, 0), min(hi - offset, size)
            if start < end:
                part.append((path, start, end))
            offset += size
        ranges.append(part)
    return ranges


def read_range(path: str, start: int, end: int) -> Iterator[str]:
    """Yield the lines that start in ``[start, end)`` (the Hadoop rule)."""
    with open(path, "rb") as f:
        if start:
            f.seek(start - 1)
            f.readline()
        while f.tell() < end:
            block = f.read(min(4 << 20, end - f.tell()))
            if not block.endswith(b"\n"):
                block += f.readline()
            yield from block.decode().splitlines()


def count_words_range(ranges: list[tuple[str, int, int]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path, start, end in ranges:
        counts.update(chain.from_iterable(map(str.split, read_range(path, start, end))))
    return counts


def pair(word: str) -> tuple[str, int]:
    return word, 1


def parse_sale(line: str) -> tuple[int, int]:
    customer, count = line.split(",")
    return int(customer), int(count)


def parse_customer(line: str) -> tuple[int, str]:
    customer, country = line.split(",")
    return int(customer), country


def country_count(row: tuple[int, tuple[int, str]]) -> tuple[str, int]:
    _, (count, country) = row
    return country, count


def load_customers(path: str) -> dict[int, str]:
    with open(path) as f:
        return dict(map(parse_customer, f.read().splitlines()))


def sum_range(args: tuple[str, list[tuple[str, int, int]]]) -> Counter[str]:
    customers_path, ranges = args
    customers = load_customers(customers_path)
    sums: Counter[str] = Counter()
    for path, start, end in ranges:
        for line in read_range(path, start, end):
            customer, count = line.split(",")
            country = customers.get(int(customer))
            if country is not None:
                sums[country] += int(count)
    return sums


def sort_key(row: tuple[int, int]) -> tuple[int, int]:
    return row[1], row[0]


def format_row(row: tuple[int, int]) -> str:
    return f"{row[0]},{row[1]}"


def _range_of(key: tuple[int, int], bounds: list[tuple[int, int]]) -> int:
    import bisect

    return len(bounds) - bisect.bisect_left(bounds, key)  # descending: largest first


def scatter_range(args: tuple[int, list[tuple[str, int, int]], list[Any], str]) -> None:
    task, ranges, bounds, scratch = args
    buckets: list[list[tuple[int, int]]] = [[] for _ in range(len(bounds) + 1)]
    for path, start, end in ranges:
        for line in read_range(path, start, end):
            row = parse_sale(line)
            buckets[_range_of(sort_key(row), bounds)].append(row)
    for r, bucket in enumerate(buckets):
        with open(os.path.join(scratch, f"{r}-{task}"), "wb") as f:
            pickle.dump(bucket, f, protocol=5)


def sort_range(args: tuple[int, int, str, str]) -> int:
    r, tasks, scratch, out = args
    rows: list[tuple[int, int]] = []
    for task in range(tasks):
        with open(os.path.join(scratch, f"{r}-{task}"), "rb") as f:
            rows += pickle.load(f)
    rows.sort(key=sort_key, reverse=True)
    with open(os.path.join(out, f"part-{r:05d}"), "w") as f:
        f.write("".join(f"{a},{b}\n" for a, b in rows))
    return len(rows)


# ---------------------------------------------------------------- contenders


def wc_counter(inputs: Inputs) -> Outcome:
    counts: Counter[str] = Counter()
    for path in inputs.corpus:
        with open(path) as f:
            counts.update(chain.from_iterable(map(str.split, f)))
    return Outcome(dict(counts))


def wc_pool(inputs: Inputs) -> Outcome:
    started = time.perf_counter()
    with multiprocessing.get_context("forkserver").Pool(inputs.workers) as pool:
        startup = time.perf_counter() - started
        total: Counter[str] = Counter()
        for counts in pool.imap_unordered(
            count_words_range, byte_ranges(inputs.corpus, inputs.workers)
        ):
            total.update(counts)
    return Outcome(dict(total), startup)


def _session(inputs: Inputs) -> Any:
    options: dict[str, Any] = {"workers": inputs.workers, "progress": False}
    if inputs.memory_limit is not None:
        options["memory_limit"] = inputs.memory_limit
    return open_session("local", **options)


def _outcome(result: Any, session: Any) -> Outcome:
    stats = session.statistics()
    return Outcome(result, stats.startup_seconds, sum(j.spilled for j in stats.jobs))


def wc_distsys_count(inputs: Inputs) -> Outcome:
    with _session(inputs) as s:
        result = dict(s.read_text(inputs.corpus).flat_map(str.split).count_by_value().collect())
        return _outcome(result, s)


def wc_distsys_reduce(inputs: Inputs) -> Outcome:
    with _session(inputs) as s:
        words = s.read_text(inputs.corpus).flat_map(str.split)
        result = dict(words.map(pair).reduce_by_key(operator.add).collect())
        return _outcome(result, s)


def join_python(inputs: Inputs) -> Outcome:
    customers = load_customers(inputs.customers)
    sums: Counter[str] = Counter()
    with open(inputs.sales) as f:
        for line in f:
            customer, count = line.split(",")
            country = customers.get(int(customer))
            if country is not None:
                sums[country] += int(count)
    return Outcome(dict(sums))


def join_pool(inputs: Inputs) -> Outcome:
    started = time.perf_counter()
    with multiprocessing.get_context("forkserver").Pool(inputs.workers) as pool:
        startup = time.perf_counter() - started
        work = [(inputs.customers, r) for r in byte_ranges([inputs.sales], inputs.workers)]
        total: Counter[str] = Counter()
        for sums in pool.imap_unordered(sum_range, work):
            total.update(sums)
    return Outcome(dict(total), startup)


def join_distsys(inputs: Inputs) -> Outcome:
    with _session(inputs) as s:
        sales = s.read_text(inputs.sales).map(parse_sale)
        customers = s.read_text(inputs.customers).map(parse_customer)
        joined = sales.join(customers).map(country_count)
        result = dict(joined.reduce_by_key(operator.add).collect())
        return _outcome(result, s)


def join_distsys_columnar(inputs: Inputs) -> Outcome:
    with _session(inputs) as s:
        sales = s.read_table(
            inputs.sales, header=False, schema={"customer": "int64", "count": "int64"}
        )
        customers = s.read_table(
            inputs.customers, header=False, schema={"customer": "int64", "country": "string"}
        )
        joined = sales.join(customers, on="customer")
        totals = joined.group_by("country").agg(count=("count", "sum")).collect()
        result = dict(
            zip(*(totals.column(c).to_pylist() for c in ("country", "count")), strict=True)
        )
        return _outcome(result, s)


def rank(pair: tuple[str, int]) -> tuple[int, str]:
    return pair[1], pair[0]


def format_count(pair: tuple[str, int]) -> str:
    return f"{pair[0]}\t{pair[1]}"


def _write_counts(out: str, counts: dict[str, int]) -> None:
    ordered = sorted(counts.items(), key=rank, reverse=True)
    with open(os.path.join(out, "part-00000"), "w") as f:
        f.write("".join(f"{word}\t{n}\n" for word, n in ordered))


def counts_python(inputs: Inputs) -> Outcome:
    out = _fresh(inputs, "counts-python")
    _write_counts(out, wc_counter(inputs).result)
    return Outcome(out)


def counts_pool(inputs: Inputs) -> Outcome:
    out = _fresh(inputs, "counts-pool")
    counted = wc_pool(inputs)
    _write_counts(out, counted.result)
    return Outcome(out, counted.startup)


def counts_distsys(inputs: Inputs) -> Outcome:
    out = _fresh(inputs, "counts-distsys")
    with _session(inputs) as s:
        counts = s.read_text(inputs.corpus).flat_map(str.split).count_by_value()
        ordered = counts.sort_by(rank, ascending=False).map(format_count)
        ordered.save_text(out, overwrite=True)
        return _outcome(out, s)


def sort_python(inputs: Inputs) -> Outcome:
    with open(inputs.sales) as f:
        rows = list(map(parse_sale, f.read().splitlines()))
    rows.sort(key=sort_key, reverse=True)
    out = _fresh(inputs, "sort-python")
    with open(os.path.join(out, "part-00000"), "w") as f:
        f.write("".join(f"{a},{b}\n" for a, b in rows))
    return Outcome(out)


def sort_pool(inputs: Inputs) -> Outcome:
    out = _fresh(inputs, "sort-pool")
    scratch = _fresh(inputs, "sort-pool-scratch")
    started = time.perf_counter()
    with multiprocessing.get_context("forkserver").Pool(inputs.workers) as pool:
        startup = time.perf_counter() - started
        rng = random.Random(7)
        size = os.path.getsize(inputs.sales)
        sample = []
        with open(inputs.sales, "rb") as f:
            for _ in range(2000):
                f.seek(rng.randrange(size))
                f.readline()
                line = f.readline().decode().strip()
                if line:
                    sample.append(sort_key(parse_sale(line)))
        sample.sort()
        parts = inputs.workers * 2
        bounds = [sample[len(sample) * i // parts] for i in range(1, parts)]
        ranges = byte_ranges([inputs.sales], parts)
        pool.map(scatter_range, [(t, r, bounds, scratch) for t, r in enumerate(ranges)])
        pool.map(sort_range, [(r, len(ranges), scratch, out) for r in range(parts)])
    shutil.rmtree(scratch)
    return Outcome(out, startup)


def sort_distsys(inputs: Inputs) -> Outcome:
    out = _fresh(inputs, "sort-distsys")
    with _session(inputs) as s:
        rows = s.read_text(inputs.sales).map(parse_sale)
        rows.sort_by(sort_key, ascending=False).map(format_row).save_text(out, overwrite=True)
        return _outcome(out, s)


def _fresh(inputs: Inputs, name: str) -> str:
    path = os.path.join(inputs.scratch, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def _peer(engine: str, run: Callable[..., tuple[Any, float | None]]) -> Run:
    """Wrap a peer engine's function (``dataflow_peers``) as a contender."""

    def contender(inputs: Inputs) -> Outcome:
        result, startup = run(*_peer_arguments(run.__name__, inputs))
        return Outcome(result, startup)

    contender.engine = engine  # type: ignore[attr-defined]
    contender.__name__ = run.__name__
    return contender


def _peer_arguments(name: str, inputs: Inputs) -> tuple[Any, ...]:
    if name.startswith("wc_"):
        return inputs.corpus, inputs.workers
    if name.startswith("join_"):
        return inputs.sales, inputs.customers, inputs.workers
    return inputs.corpus, inputs.workers, _fresh(inputs, name.replace("_", "-"))


Run = Callable[[Inputs], Outcome]
WORDCOUNT: dict[str, Run] = {
    "python Counter, 1 process": wc_counter,
    "multiprocessing.Pool, byte ranges": wc_pool,
    "distsys local count_by_value": wc_distsys_count,
    "distsys local map + reduce_by_key": wc_distsys_reduce,
    "Dask bag, LocalCluster": _peer("dask", peers.wc_dask),
    "PySpark RDD, local": _peer("spark", peers.wc_spark_rdd),
    "PySpark SQL, local": _peer("spark", peers.wc_spark_sql),
    "Ray tasks, byte ranges": _peer("ray", peers.wc_ray),
    "polars (columnar reference)": _peer("polars", peers.wc_polars),
}
JOIN: dict[str, Run] = {
    "python dict join, 1 process": join_python,
    "multiprocessing.Pool, byte ranges": join_pool,
    "distsys local join + reduce_by_key": join_distsys,
    "distsys local columnar join + group_by": join_distsys_columnar,
    "Dask dataframe merge, LocalCluster": _peer("dask", peers.join_dask),
    "PySpark SQL join, local": _peer("spark", peers.join_spark),
    "polars (columnar reference)": _peer("polars", peers.join_polars),
}
SORT: dict[str, Run] = {
    "python Counter + sorted, 1 process": counts_python,
    "multiprocessing.Pool count + sorted": counts_pool,
    "distsys local count_by_value + sort_by": counts_distsys,
    "Dask bag + dataframe sort_values": _peer("dask", peers.counts_dask),
    "PySpark SQL orderBy, local": _peer("spark", peers.counts_spark),
    "polars (columnar reference)": _peer("polars", peers.counts_polars),
}
ROWSORT: dict[str, Run] = {
    "python list.sort, 1 process": sort_python,
    "multiprocessing.Pool, range partitioned": sort_pool,
    "distsys local sort_by + save_text": sort_distsys,
}
PEERS = ("dask", "spark", "ray", "polars")
TABLES = [WORDCOUNT, JOIN, SORT, ROWSORT]  # how a child process finds its contender


def select(table: dict[str, Run], skip: set[str], only: str | None) -> dict[str, Run]:
    """Return the contenders to run: without skipped engines, matching ``--contenders``.

    The first two (the references every result and ratio is measured against) always run.
    """
    chosen = {}
    for index, (name, run) in enumerate(table.items()):
        if getattr(run, "engine", None) in skip:
            continue
        if index >= 2 and only and not any(w.lower() in name.lower() for w in only.split(",")):
            continue
        chosen[name] = run
    return chosen


# ---------------------------------------------------------------- measuring


class PeakMemory:
    """Sample the resident memory of this process and its descendants in a thread.

    The list of descendants is refreshed every 0.5 s (walking the process table costs
    more than reading a few processes' memory, and would steal CPU from the workers).
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0
        self.worker_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        processes: list[Any] = [me]
        workers: set[int] = set()
        refreshed = 0.0
        while not self._stop.is_set():
            total = 0
            if time.monotonic() - refreshed > 0.5:
                refreshed = time.monotonic()
                try:
                    helpers = {p.pid for p in me.children() if _is_helper(p)}
                    processes = [me, *me.children(recursive=True)]
                except psutil.Error:
                    continue
                workers = {p.pid for p in processes[1:] if p.pid not in helpers}
            for process in processes:
                try:
                    rss = process.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                if process.pid in workers:
                    self.worker_peak = max(self.worker_peak, rss)
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        if psutil is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if psutil is not None:
            self._thread.join()
        else:  # pragma: no cover
            usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.peak = usage


def _is_helper(process: Any) -> bool:
    """True for multiprocessing's fork server and resource tracker (not workers)."""
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:
        return False
    return "forkserver" in command or "resource_tracker" in command


def measure(name: str, run: Run, inputs: Inputs) -> Measure:
    """Run one contender in a fresh interpreter (``spawn``) and return its figures.

    A fresh process per run keeps the contenders apart: what one imported, held or
    started (a JVM, a fork server, a result) cannot count in the next one's memory.
    """
    where = next((i, key) for i, t in enumerate(TABLES) for key, fn in t.items() if fn is run)
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_measure_child, args=(where, name, inputs, sender))
    child.start()
    sender.close()
    try:
        m: Measure = receiver.recv()
    except EOFError:
        m = Measure(name, float("inf"))
        m.note = "ERROR: the process running it died"
    child.join()
    receiver.close()
    return m


def _measure_child(where: tuple[int, str], name: str, inputs: Inputs, sender: Any) -> None:
    table, key = where
    sender.send(measure_here(name, TABLES[table][key], inputs))
    sender.close()


def measure_here(name: str, run: Run, inputs: Inputs) -> Measure:
    """Run one contender in this process; peak memory counts this process's children."""
    with PeakMemory() as memory:
        started = time.perf_counter()
        try:
            outcome = run(inputs)
        except Exception as exc:  # a peer that breaks is reported, not fatal
            failed = Measure(name, float("inf"), peak=memory.peak)
            failed.note = f"ERROR {type(exc).__name__}: {str(exc)[:120]}"
            return failed
        seconds = time.perf_counter() - started
    return Measure(
        name,
        seconds,
        outcome.startup,
        memory.peak,
        memory.worker_peak,
        outcome.result,
        outcome.spilled,
    )


def read_parts(directory: str) -> list[str]:
    """Return the lines of a saved output, part files in order."""
    lines: list[str] = []
    for name in sorted(os.listdir(directory)):
        if name.startswith("part-"):
            with open(os.path.join(directory, name)) as f:
                lines += f.read().splitlines()
    return lines


def check_sorted(directory: str) -> tuple[int, bool]:
    """Return the rows in a sort's output and whether they are in descending order."""
    count, previous, ordered = 0, None, True
    for name in sorted(os.listdir(directory)):
        if not name.startswith("part-"):
            continue
        with open(os.path.join(directory, name)) as f:
            for line in f:
                key = sort_key(parse_sale(line))
                if previous is not None and key > previous:
                    ordered = False
                previous = key
                count += 1
    return count, ordered


def run_section(
    title: str, table: dict[str, Run], inputs: Inputs, console: Console, runs: int
) -> list[Measure]:
    """Run every contender ``runs`` times (interleaved); keep each one's fastest run.

    Each result is checked against the first contender's as soon as it is made, then
    dropped, so that no result held by the benchmark inflates a later contender's peak.
    """
    best: dict[str, Measure] = {}
    checker: Callable[[Any], str] | None = None
    for round_ in range(runs):
        for name, run in table.items():
            console.print(f"  run {round_ + 1}/{runs}: {name}...", style="dim")
            m = measure(name, run, inputs)
            if checker is None:
                checker = _checker(title, m.result)
            if not m.note:
                m.note = checker(m.result)
            m.result = None
            if name not in best or _rank(m) < _rank(best[name]):
                best[name] = m
    measures = [best[name] for name in table]
    ceiling = measures[1].seconds
    out = Table(title=title, title_justify="left")
    for column in ("contender", "wall s", "start-up s", "peak memory", "vs Pool", "result"):
        out.add_column(column, justify="left" if column == "contender" else "right")
    for m in measures:
        out.add_row(
            m.name,
            f"{m.seconds:.2f}",
            "-" if m.startup is None else f"{m.startup:.2f}",
            f"{m.peak / 2**20:,.0f} MB",
            f"{m.seconds / ceiling:.2f}x",
            m.note,
        )
    console.print(out)
    return measures


def _rank(m: Measure) -> tuple[bool, float]:
    """Order runs: correct ones first, then the fastest."""
    return m.note != "ok", m.seconds


def _checker(title: str, reference: Any) -> Callable[[Any], str]:
    """Return a function telling whether a result matches ``reference`` ("ok" or why not)."""
    if title.startswith("full sort of the word counts"):
        expected_lines = read_parts(reference)
        return lambda got: "ok" if read_parts(got) == expected_lines else "WRONG order or counts"
    if title.startswith("full sort"):
        expected = check_sorted(reference)

        def rows(directory: Any) -> str:
            got = check_sorted(directory)
            return "ok" if got == expected and got[1] else f"WRONG {got} != {expected}"

        return rows
    return lambda got: "ok" if got == reference else "WRONG result"


@dataclass
class Target:
    what: str
    ratio: float
    goal: str
    met: bool
    notes: list[str] = field(default_factory=list)


def wordcount_targets(m: list[Measure]) -> list[Target]:
    """Word count: each distsys contender within 1.3x of the Pool, faster than Dask, Spark
    and Ray."""
    targets = []
    pool = m[1].seconds
    engines = ("dask", "spark", "ray")
    peers_ = [x for x in m if getattr(WORDCOUNT[x.name], "engine", None) in engines]
    for x in m:
        if not x.name.startswith("distsys"):
            continue
        ratio = x.seconds / pool
        ok = ratio <= 1.3 and x.note == "ok"
        targets.append(Target(f"word count, {x.name} vs Pool", ratio, "<= 1.30x", ok))
        for peer in peers_:
            ratio = x.seconds / peer.seconds
            targets.append(
                Target(f"word count, {x.name} vs {peer.name}", ratio, "< 1.00x", ratio < 1.0)
            )
    return targets


def join_targets(m: list[Measure]) -> list[Target]:
    """The columnar join at least as fast as Dask (against the Pool, at Dask's ratio in
    the issue, when Dask is not installed). The row join is reported beside it, not held
    to it: row-at-a-time Python cannot match a columnar engine (docs/dataflow.md)."""
    dask = next((x for x in m if getattr(JOIN[x.name], "engine", None) == "dask"), None)
    targets = []
    for distsys in (x for x in m if x.name.startswith("distsys")):
        held = "columnar" in distsys.name
        if dask is not None and dask.note == "ok":
            ratio = distsys.seconds / dask.seconds
            ok = ratio <= 1.0 and distsys.note == "ok"
            goal = "<= 1.00x" if held else "reported"
            targets.append(
                Target(f"join, {distsys.name} vs {dask.name}", ratio, goal, ok or not held)
            )
            continue
        ratio = distsys.seconds / m[1].seconds
        ok = ratio <= JOIN_VS_DASK and distsys.note == "ok"
        goal = f"<= {JOIN_VS_DASK:.2f}x Pool (Dask's ratio in the issue)" if held else "reported"
        targets.append(Target(f"join, {distsys.name} vs Pool", ratio, goal, ok or not held))
    return targets


def save(
    path: str,
    args: argparse.Namespace,
    inputs: Inputs,
    sections: dict[str, list[Measure]],
    targets: list[Target],
) -> None:
    """Write the measured figures as JSON (for the docs and ``plot_dataflow.py``)."""
    import json
    import platform

    corpus = sum(os.path.getsize(p) for p in inputs.corpus)
    figures = {
        "machine": {
            "cpus": args.workers,
            "processor": platform.processor() or platform.machine(),
            "python": sys.version.split()[0],
        },
        "corpus_bytes": corpus,
        "sales_rows": args.rows,
        "customers": args.customers,
        "sales_bytes": os.path.getsize(inputs.sales),
        "runs": args.runs,
        "sections": {
            title: [
                {
                    "name": x.name,
                    "seconds": x.seconds,
                    "startup": x.startup,
                    "peak": x.peak,
                    "worker_peak": x.worker_peak,
                    "spilled": x.spilled,
                    "note": x.note,
                }
                for x in measures
            ]
            for title, measures in sections.items()
        },
        "targets": [
            {"what": t.what, "ratio": t.ratio, "goal": t.goal, "met": t.met} for t in targets
        ],
    }
    with open(path, "w") as f:
        json.dump(figures, f, indent=1)


def prepare(args: argparse.Namespace, console: Console) -> Inputs:
    data = Path(args.data)
    corpus_dir = data / f"corpus-{args.size}"
    if not corpus_dir.exists():
        console.print(f"generating a {args.size:,}-byte corpus under {corpus_dir}...")
        generate_corpus(corpus_dir, args.size, files=4, seed=1)
    corpus = sorted(str(p) for p in corpus_dir.glob("corpus-*.txt"))
    tables = data / f"tables-{args.rows}-{args.customers}"
    if not tables.exists():
        console.print(f"generating {args.rows:,} sales and {args.customers:,} customers...")
        make_tables(tables, args.rows, args.customers)
    scratch = data / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    return Inputs(
        corpus,
        str(tables / "sales.csv"),
        str(tables / "customers.csv"),
        str(scratch),
        args.workers,
    )


def make_tables(directory: Path, rows: int, customers: int) -> None:
    """Write ``sales.csv`` (customer,count) and ``customers.csv`` (customer,country)."""
    tmp = Path(tempfile.mkdtemp(dir=directory.parent))
    rng = random.Random(11)
    with open(tmp / "customers.csv", "w") as f:
        for start in range(0, customers, 100_000):
            n = min(100_000, customers - start)
            f.write("".join(f"{c},{rng.choice(COUNTRIES)}\n" for c in range(start, start + n)))
    # 5% of the sales name a customer that does not exist: the join drops them.
    high = int(customers * 1.05)
    with open(tmp / "sales.csv", "w") as f:
        for start in range(0, rows, 200_000):
            n = min(200_000, rows - start)
            f.write("".join(f"{rng.randrange(high)},{rng.randrange(1, 1000)}\n" for _ in range(n)))
    tmp.rename(directory)


def memory_section(inputs: Inputs, console: Console) -> list[Target]:
    corpus_bytes = sum(os.path.getsize(p) for p in inputs.corpus)
    sales_bytes = os.path.getsize(inputs.sales)
    targets = []
    table = Table(title="bounded memory: memory_limit = input / 10", title_justify="left")
    for column in (
        "workload",
        "input",
        "memory_limit",
        "wall s",
        "worker peak",
        "spilled",
        "allowed",
    ):
        table.add_column(column, justify="left" if column == "workload" else "right")
    for name, run, size in (
        ("word count (count_by_value)", wc_distsys_count, corpus_bytes),
        (
            f"full sort of {os.path.getsize(inputs.sales) >> 20} MB of rows",
            sort_distsys,
            sales_bytes,
        ),
    ):
        limit = size // 10
        bounded = Inputs(**{**inputs.__dict__, "memory_limit": limit})
        console.print(f"  running {name} with memory_limit={limit / 2**20:.0f} MB...", style="dim")
        m = measure(name, run, bounded)
        allowed = limit + MEMORY_OVERHEAD
        table.add_row(
            name,
            f"{size / 2**20:,.0f} MB",
            f"{limit / 2**20:,.0f} MB",
            f"{m.seconds:.2f}",
            f"{m.worker_peak / 2**20:,.0f} MB",
            f"{m.spilled / 2**20:,.0f} MB",
            f"{allowed / 2**20:,.0f} MB",
        )
        targets.append(
            Target(
                f"{name}: worker peak within memory_limit + {MEMORY_OVERHEAD >> 20} MB",
                m.worker_peak / allowed,
                "<= 1.00",
                m.worker_peak <= allowed,
            )
        )
    console.print(table)
    return targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", default=os.path.join(tempfile.gettempdir(), "distsys-bench-dataflow")
    )
    parser.add_argument("--size", type=parse_size, default=parse_size("300MB"))
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--only", default="wordcount,join,sort,memory")
    parser.add_argument(
        "--runs", type=int, default=2, help="runs per contender; the fastest counts"
    )
    parser.add_argument(
        "--contenders",
        default=None,
        help="comma-separated words: run only the contenders whose name holds one "
        "(the two references always run)",
    )
    parser.add_argument("--save", default=None, help="write the figures as JSON to this file")
    args = parser.parse_args(argv)
    console = Console()
    inputs = prepare(args, console)
    only = set(args.only.split(","))
    console.print(
        f"{args.workers} workers · corpus {args.size / 2**20:,.0f} MB · "
        f"{args.rows:,} sales x {args.customers:,} customers · python {sys.version.split()[0]}"
    )
    skip = set()
    for engine in PEERS:
        note = peers.available(engine)
        if note is not None:
            skip.add(engine)
            console.print(note, style="yellow")
    pick = args.contenders
    targets: list[Target] = []
    sections: dict[str, list[Measure]] = {}
    if "wordcount" in only:
        table = select(WORDCOUNT, skip, pick)
        m = sections["word count"] = run_section("word count", table, inputs, console, args.runs)
        targets += wordcount_targets(m)
    if "join" in only:
        table = select(JOIN, skip, pick)
        m = sections["join"] = run_section(
            "join + sum per group", table, inputs, console, args.runs
        )
        targets += join_targets(m)
    if "sort" in only:
        title = "full sort of the word counts"
        m = sections["sort"] = run_section(
            title, select(SORT, skip, pick), inputs, console, args.runs
        )
        distsys = [x for x in m if x.name.startswith("distsys")]
        for x in distsys:
            ratio = x.seconds / m[1].seconds
            ok = ratio <= 1.3 and x.note == "ok"
            targets.append(
                Target(f"full sort of the counts, {x.name} vs Pool", ratio, "<= 1.30x", ok)
            )
    if "rowsort" in only:
        m = run_section(f"full sort of {args.rows:,} rows", ROWSORT, inputs, console, args.runs)
        ratio = m[2].seconds / m[1].seconds
        ok = ratio <= 1.3 and m[2].note == "ok"
        targets.append(Target(f"full sort of {args.rows:,} rows", ratio, "<= 1.30x Pool", ok))
    if "memory" in only:
        targets += memory_section(inputs, console)
    summary = Table(title="targets", title_justify="left")
    for column in ("target", "measured", "goal", ""):
        summary.add_column(column)
    for t in targets:
        verdict = "—" if t.goal == "reported" else "PASS" if t.met else "FAIL"
        summary.add_row(t.what, f"{t.ratio:.2f}x", t.goal, verdict)
    console.print(summary)
    if args.save:
        save(args.save, args, inputs, sections, targets)
    return 0 if all(t.met for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
