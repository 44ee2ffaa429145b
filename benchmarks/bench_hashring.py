"""Side-by-side measurements of ``distsys.hashring`` and the peer libraries.

Run: ``.venv/bin/python benchmarks/bench_hashring.py [--keys N] [--runs R] [--sets S]``

1. Lookups per second: N string keys (``key-0`` ..) over 10 nodes, the same plain
   ``for`` loop through a pre-bound method for every library (distsys
   ``HashRing.get``, uhashring ``HashRing(nodes=...).get_node``, hashring
   ``HashRing(nodes).get_node``); median of R runs, runs interleaved across libraries.
2. Balance: the coefficient of variation (population std / mean of keys per node) and
   max / mean over S random sets of 10 node names (``10.a.b.c:port``, drawn from a
   seeded ``random.Random``). distsys is measured with all N keys per set; the peers,
   which are slower, with ``--peer-keys`` keys over ``--peer-sets`` of the same sets.
3. Keys moved when an 11th node joins and when one of the 10 leaves, and whether each
   moved key went only to the new node / came only from the removed one.
4. jump_hash lookups per second; BoundedLoadBalancer acquire + release pairs per
   second, and the max / mean load in flight it keeps against the plain ring under a
   skewed (Zipf) key stream.

Every target prints PASS or FAIL. Not part of the test suite: nothing here asserts a
wall-clock time. Needs the ``bench`` extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import random
import statistics
import sys
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from itertools import accumulate
from time import perf_counter

from rich.console import Console
from rich.table import Table

from distsys.hashring import BoundedLoadBalancer, HashRing, jump_hash

try:
    import hashring  # the PyPI peer (pyproject tells ruff it is third-party)
    import uhashring
except ImportError as exc:
    sys.exit(f"bench_hashring needs {exc.name!r}: pip install -e '.[bench]'")

NODES = 10
Lookup = Callable[[str], object]
MakeRing = Callable[[list[str]], Lookup]


def distsys_ring(nodes: list[str]) -> Lookup:
    return HashRing(nodes).get


def uhashring_ring(nodes: list[str]) -> Lookup:
    return uhashring.HashRing(nodes=nodes).get_node  # type: ignore[no-any-return]


def hashring_ring(nodes: list[str]) -> Lookup:
    return hashring.HashRing(nodes).get_node  # type: ignore[no-any-return]


LIBRARIES: dict[str, MakeRing] = {
    "distsys HashRing": distsys_ring,
    "uhashring": uhashring_ring,
    "hashring": hashring_ring,
}
TARGET_SPEEDUP = ("uhashring", 2.0)
TARGET_CV = 0.075


def _rate(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


def _verdict(ok: bool) -> str:
    return "[green]PASS[/]" if ok else "[red]FAIL[/]"


def random_node_names(rng: random.Random, count: int) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        octets = ".".join(str(rng.randrange(256)) for _ in range(3))
        names.add(f"10.{octets}:{rng.randrange(1024, 65536)}")
    return sorted(names)


def timed_loop(lookup: Lookup, keys: Sequence[str]) -> float:
    gc.collect()
    start = perf_counter()
    for key in keys:
        lookup(key)
    return perf_counter() - start


# ---------------------------------------------------------------------- 1. lookup speed


def bench_lookups(keys: list[str], runs: int, console: Console) -> dict[str, float]:
    nodes = [f"node-{i}" for i in range(NODES)]
    lookups = {name: make(nodes) for name, make in LIBRARIES.items()}
    lookups["distsys jump_hash (10 buckets)"] = partial(jump_hash, buckets=NODES)
    rates: dict[str, list[float]] = {name: [] for name in lookups}
    for run in range(runs + 1):  # run 0 warms up and is not kept
        for name, lookup in lookups.items():
            with console.status(f"lookups, run {run}/{runs}: {name}"):
                sample = keys if run else keys[:50_000]
                elapsed = timed_loop(lookup, sample)
            if run:
                rates[name].append(len(sample) / elapsed)
    medians = {name: statistics.median(r) for name, r in rates.items()}
    ours = medians["distsys HashRing"]
    table = Table(
        title=f"lookups: {len(keys):,} string keys over {NODES} nodes, median of {runs} runs",
        title_justify="left",
    )
    for column in ("library", "median lookups/s", "min - max", "distsys / this"):
        table.add_column(column, justify="left" if column == "library" else "right")
    for name, r in rates.items():
        spread = f"{_rate(min(r))} - {_rate(max(r))}"
        table.add_row(name, _rate(medians[name]), spread, f"{ours / medians[name]:.2f}x")
    console.print(table)
    return medians


# --------------------------------------------------------------------------- 2. balance


@dataclass
class Balance:
    cvs: list[float]
    max_over_mean: list[float]


def balance(lookup: Lookup, keys: Sequence[str], nodes: list[str]) -> tuple[float, float]:
    counts = Counter(map(lookup, keys))
    loads = [counts.get(node, 0) for node in nodes]
    mean = statistics.fmean(loads)
    return statistics.pstdev(loads) / mean, max(loads) / mean


def bench_balance(
    keys: list[str], peer_keys: int, sets: list[list[str]], peer_sets: int, console: Console
) -> dict[str, Balance]:
    results: dict[str, Balance] = {}
    for name, make in LIBRARIES.items():
        ours = name.startswith("distsys")
        sample = keys if ours else keys[:peer_keys]
        chosen = sets if ours else sets[:peer_sets]
        result = Balance([], [])
        for i, nodes in enumerate(chosen, 1):
            with console.status(f"balance: {name}, node set {i}/{len(chosen)}"):
                cv, peak = balance(make(nodes), sample, nodes)
            result.cvs.append(cv)
            result.max_over_mean.append(peak)
        results[name] = result
    table = Table(
        title=f"balance: keys per node over {NODES} random node names, CV = pstdev / mean",
        title_justify="left",
    )
    for column in (
        "library",
        "sets x keys",
        "mean CV ± s.e.",
        "CV p10 / p50 / p90 / max",
        "mean max/mean",
    ):
        table.add_column(column, justify="left" if column == "library" else "right")
    for name, r in results.items():
        q = statistics.quantiles(r.cvs, n=10)
        spread = f"{q[0]:.4f} / {statistics.median(r.cvs):.4f} / {q[-1]:.4f} / {max(r.cvs):.4f}"
        size = f"{len(r.cvs)} x {len(keys) if name.startswith('distsys') else peer_keys:,}"
        table.add_row(
            name,
            size,
            f"{statistics.fmean(r.cvs):.4f} ± {statistics.stdev(r.cvs) / len(r.cvs) ** 0.5:.4f}",
            spread,
            f"{statistics.fmean(r.max_over_mean):.3f}",
        )
    theory = math.sqrt((NODES - 1) / (NODES * 160 + 1))
    table.caption = f"random placement at 160 points per node: sqrt(E[CV^2]) = {theory:.4f}"
    console.print(table)
    return results


# ------------------------------------------------------------------------ 3. keys moved


@dataclass
class Moves:
    joined: list[float]
    left: list[float]
    joined_only_to_new: bool = True
    left_only_from_removed: bool = True


def moved(before: list[str], after: list[str]) -> tuple[float, set[str], set[str]]:
    changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    return len(changed) / len(before), {b for b, _ in changed}, {a for _, a in changed}


def bench_moves(
    keys: list[str], sets: list[list[str]], rng: random.Random, console: Console
) -> Moves:
    result = Moves([], [])
    for i, nodes in enumerate(sets, 1):
        with console.status(f"keys moved: node set {i}/{len(sets)}"):
            ring = HashRing(nodes)
            before = list(map(ring.get, keys))
            newcomer = random_node_names(rng, 1)[0]
            ring.add(newcomer)
            fraction, _, to = moved(before, list(map(ring.get, keys)))
            result.joined.append(fraction)
            result.joined_only_to_new &= to <= {newcomer}
            ring.remove(newcomer)
            leaver = rng.choice(nodes)
            ring.remove(leaver)
            fraction, origin, _ = moved(before, list(map(ring.get, keys)))
            result.left.append(fraction)
            result.left_only_from_removed &= origin <= {leaver}
    table = Table(
        title=f"keys moved ({len(keys):,} keys, {len(sets)} node sets of {NODES})",
        title_justify="left",
    )
    for column in ("change", "ideal", "mean", "min - max", "only the changed node's keys"):
        table.add_column(column, justify="left" if column == "change" else "right")
    for label, ideal, values, only in (
        ("11th node joins", 1 / (NODES + 1), result.joined, result.joined_only_to_new),
        ("1 of 10 leaves", 1 / NODES, result.left, result.left_only_from_removed),
    ):
        table.add_row(
            label,
            f"{ideal:.4f}",
            f"{statistics.fmean(values):.4f}",
            f"{min(values):.4f} - {max(values):.4f}",
            "yes" if only else "[red]NO[/]",
        )
    console.print(table)
    return result


# ---------------------------------------------------------------------- 4. bounded load


FACTORS = (1.0, 1.25, 2.0)
WINDOW = 100  # requests in flight


@dataclass
class Bounded:
    pairs_per_second: float
    bound_held: bool


def zipf_stream(rng: random.Random, distinct: int, length: int, s: float) -> list[str]:
    cumulative = list(accumulate(1 / rank**s for rank in range(1, distinct + 1)))
    population = [f"object-{i}" for i in range(distinct)]
    return rng.choices(population, cum_weights=cumulative, k=length)


def simulate(
    place: Callable[[str], str], finish: Callable[[str], None], stream: list[str]
) -> tuple[float, float]:
    """Keep WINDOW requests in flight (FIFO); return the peak and mean of max/mean load."""
    loads: Counter[str] = Counter()
    in_flight: deque[str] = deque()
    ratios = []
    for key in stream:
        if len(in_flight) == WINDOW:
            node = in_flight.popleft()
            loads[node] -= 1
            finish(node)
        node = place(key)
        loads[node] += 1
        in_flight.append(node)
        if len(in_flight) == WINDOW:
            ratios.append(max(loads.values()) / (WINDOW / NODES))
    return max(ratios), statistics.fmean(ratios)


def checked(balancer: BoundedLoadBalancer) -> tuple[Callable[[str], str], list[bool]]:
    """Wrap ``acquire`` to check, after each call, load <= ceil(c * T / n) (exact)."""
    factor = Fraction(balancer.factor)
    held = [True]

    def place(key: str) -> str:
        node = balancer.acquire(key)
        in_flight = balancer.statistics().in_flight  # T, the new request included
        held[0] &= balancer.load(node) <= math.ceil(factor * in_flight / NODES)
        return node

    return place, held


def bench_bounded(keys: list[str], rng: random.Random, runs: int, console: Console) -> Bounded:
    ring = HashRing([f"node-{i}" for i in range(NODES)])
    sample = keys[:200_000]
    rates = []
    for _ in range(runs):
        balancer = BoundedLoadBalancer(ring)
        acquire, release = balancer.acquire, balancer.release
        with console.status("bounded load: acquire + release"):
            gc.collect()
            start = perf_counter()
            for key in sample:
                release(acquire(key))
            rates.append(len(sample) / (perf_counter() - start))
    stream = zipf_stream(rng, distinct=10_000, length=200_000, s=1.1)
    table = Table(
        title=(
            f"bounded loads: Zipf(s=1.1) over 10,000 keys, {len(stream):,} requests, "
            f"{WINDOW} in flight (FIFO), {NODES} nodes; max/mean load sampled per request"
        ),
        title_justify="left",
    )
    for column in ("placement", "bound", "peak max/mean", "mean max/mean", "forwarded"):
        table.add_column(column, justify="left" if column == "placement" else "right")
    with console.status("bounded load: Zipf stream through the plain ring"):
        peak, mean = simulate(ring.get, lambda node: None, stream)
    table.add_row("plain ring (get)", "none", f"{peak:.2f}", f"{mean:.2f}", "0")
    all_held = True
    for factor in FACTORS:
        balancer = BoundedLoadBalancer(ring, factor=factor)
        place, held = checked(balancer)
        with console.status(f"bounded load: Zipf stream, factor {factor}"):
            peak, mean = simulate(place, balancer.release, stream)
        stats = balancer.statistics()
        bound = math.ceil(Fraction(factor) * WINDOW / NODES)
        table.add_row(
            f"BoundedLoadBalancer c={factor}",
            f"{bound / (WINDOW / NODES):.2f}",
            f"{peak:.2f}",
            f"{mean:.2f}",
            f"{stats.forwarded / stats.acquired:.1%}",
        )
        all_held &= held[0]
    table.caption = (
        f"acquire + release: {_rate(statistics.median(rates))} pairs/s "
        f"(median of {runs} runs of {len(sample):,} uniform keys, c = 1.25)"
    )
    console.print(table)
    return Bounded(statistics.median(rates), all_held)


# ------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="string keys (1,000,000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per library (5)")
    parser.add_argument("--sets", type=int, default=100, help="random node sets (100)")
    parser.add_argument("--peer-sets", type=int, default=50, help="node sets for peers (50)")
    parser.add_argument("--peer-keys", type=int, default=200_000, help="keys for peers")
    parser.add_argument("--move-sets", type=int, default=20, help="node sets for moves (20)")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    args = parser.parse_args(argv)
    console = Console(highlight=False, width=120)
    console.print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} CPUs, {platform.machine()}; seed {args.seed}"
    )
    keys = [f"key-{i}" for i in range(args.keys)]
    rng = random.Random(args.seed)
    sets = [random_node_names(rng, NODES) for _ in range(args.sets)]

    speed = bench_lookups(keys, args.runs, console)
    spread = bench_balance(keys, args.peer_keys, sets, args.peer_sets, console)
    moves = bench_moves(keys, sets[: args.move_sets], rng, console)
    bounded = bench_bounded(keys, rng, args.runs, console)

    peer, need = TARGET_SPEEDUP
    speedup = speed["distsys HashRing"] / speed[peer]
    mean_cv = statistics.fmean(spread["distsys HashRing"].cvs)
    joined = statistics.fmean(moves.joined)
    low, high = 0.9 / (NODES + 1), 1.1 / (NODES + 1)
    targets = [
        (f"lookups >= {need:.0f}x {peer}", f"{speedup:.2f}x", speedup >= need),
        (f"mean CV <= {TARGET_CV} at 160 vnodes", f"{mean_cv:.4f}", mean_cv <= TARGET_CV),
        (
            f"11th node moves {low:.4f} .. {high:.4f} of keys",
            f"{joined:.4f}",
            low <= joined <= high,
        ),
        ("keys move only to the new node", "", moves.joined_only_to_new),
        ("keys move only from the removed node", "", moves.left_only_from_removed),
        ("bounded load never above ceil(c*T/n)", "", bounded.bound_held),
    ]
    table = Table(title="targets", title_justify="left")
    for column in ("target", "got", "verdict"):
        table.add_column(column)
    for label, got, ok in targets:
        table.add_row(label, got, _verdict(ok))
    console.print(table)
    return 0 if all(ok for _, _, ok in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
