"""Picks per second of every ``distsys.balancer`` balancer, beside naive stdlib pickers.

Run: ``.venv/bin/python benchmarks/bench_balancer.py [--picks N] [--runs R]``

Every balancer serves 10 UP instances of equal weight (``round_robin`` also with weights
1..10, and with large coprime weights, which need the O(n) pass), with the real clock and a
seeded ``random.Random``. Three ways to use a pick, each a plain ``for`` loop over N:

1. **pick**: ``held.append(balancer.pick())``; the picks are finished after the clock stops
   (so the loop pays one list append, as the references below do).
2. **pick + done**: ``balancer.pick().done()``, what a client does per request.
3. **with**: ``with balancer.pick() as p: pass``.

``consistent_hash`` picks with N distinct string keys, made before timing. Runs interleave
the subjects; run 0 warms up and is not kept; the median of R runs is reported, with the
garbage collector paused while a loop runs. Time is the process's CPU time
(``time.process_time``), so that other programs sharing the cores count less. The
references are what the balancers are measured against: ``itertools.cycle``,
``random.choice``, nginx's smooth weighted round robin as a plain O(n) function, and a
bare power of two choices over a list of counters; none of them tracks outstanding
requests, latency, ejection or thread safety. A last table shows what the balancers' lock
costs, by timing two of them with a no-op lock in its place.

Every target prints PASS or FAIL. Not part of the test suite: nothing here asserts a
wall-clock time.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import platform
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from time import process_time

from rich.console import Console
from rich.table import Table

from distsys.balancer import Balancer, Pick, make_balancer
from distsys.registry import Instance

INSTANCES = 10
TARGET = 500_000
Loop = Callable[[int], None]  # run n picks; the timer wraps the call


def instances(weights: list[int] | None = None) -> list[Instance]:
    weights = weights or [1] * INSTANCES
    return [Instance("api", f"i{n}", "10.0.0.1", 8000 + n, weight=w) for n, w in enumerate(weights)]


def _rate(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


def _verdict(ok: bool) -> str:
    return "[green]PASS[/]" if ok else "[red]FAIL[/]"


# ----------------------------------------------------------------------- the loops


def pair_loop(balancer: Balancer, keys: list[str] | None) -> Loop:
    pick = balancer.pick

    def run(n: int) -> None:
        if keys is None:
            for _ in range(n):
                pick().done()
        else:
            for key in keys[:n]:
                pick(key).done()

    return run


def with_loop(balancer: Balancer, keys: list[str] | None) -> Loop:
    pick = balancer.pick

    def run(n: int) -> None:
        if keys is None:
            for _ in range(n):
                with pick():
                    pass
        else:
            for key in keys[:n]:
                with pick(key):
                    pass

    return run


def timed(loop: Loop, n: int) -> float:
    """Return picks per second of one run; held picks are released outside the clock."""
    gc.collect()
    gc.disable()
    try:
        start = process_time()
        loop(n)
        return n / (process_time() - start)
    finally:
        gc.enable()


def timed_pick(balancer: Balancer, keys: list[str] | None, n: int) -> float:
    """Like timed(pick_loop), but stop the clock before the held picks are released."""
    pick = balancer.pick
    held: list[Pick] = []
    append = held.append
    gc.collect()
    gc.disable()
    try:
        start = process_time()
        if keys is None:
            for _ in range(n):
                append(pick())
        else:
            for key in keys[:n]:
                append(pick(key))
        elapsed = process_time() - start
    finally:
        gc.enable()
    for p in held:
        p.done()
    return n / elapsed


# ------------------------------------------------------------------- the references


def cycle_loop(items: list[Instance]) -> Loop:
    def run(n: int) -> None:
        held: list[object] = []
        append = held.append
        step = itertools.cycle(items).__next__
        for _ in range(n):
            append(step())

    return run


def choice_loop(items: list[Instance], rng: random.Random) -> Loop:
    def run(n: int) -> None:
        held: list[object] = []
        append = held.append
        choice = rng.choice
        for _ in range(n):
            append(choice(items))

    return run


def naive_swrr_loop(items: list[Instance]) -> Loop:
    def run(n: int) -> None:
        held: list[object] = []
        append = held.append
        peers = [[item, item.weight, 0] for item in items]
        total = sum(item.weight for item in items)
        for _ in range(n):
            best = None
            for peer in peers:
                peer[2] += peer[1]  # type: ignore[operator]
                if best is None or peer[2] > best[2]:  # type: ignore[operator]
                    best = peer
            assert best is not None
            best[2] -= total  # type: ignore[operator]
            append(best[0])

    return run


def naive_p2c_loop(items: list[Instance], rng: random.Random) -> Loop:
    def run(n: int) -> None:
        held: list[object] = []
        append = held.append
        load = [0] * len(items)
        indices = range(len(items))
        choice = rng.choice
        for _ in range(n):
            a = choice(indices)
            b = choice(indices)
            chosen = a if load[a] <= load[b] else b
            load[chosen] += 1
            append(items[chosen])

    return run


# -------------------------------------------------------------------------- measuring


@dataclass
class Rates:
    pick: list[float]
    pair: list[float]
    with_: list[float]


def subjects(seed: int) -> dict[str, tuple[Balancer, bool]]:
    """label -> (balancer, picks by key)."""
    rng = random.Random(seed)
    found: dict[str, tuple[Balancer, bool]] = {}
    for name in ("round_robin", "random", "least_outstanding", "p2c_ewma", "consistent_hash"):
        found[name] = (make_balancer(name, instances(), rng=rng), name == "consistent_hash")
    found["round_robin, weights 1..10"] = (
        make_balancer("round_robin", instances(list(range(1, 11))), rng=rng),
        False,
    )
    big = [999_983, 999_979, 999_961, 999_959, 999_953, 999_931, 999_917, 999_907, 999_883, 7]
    found["round_robin, O(n) pass"] = (make_balancer("round_robin", instances(big), rng=rng), False)
    found["random, weights 1..10"] = (
        make_balancer("random", instances(list(range(1, 11))), rng=rng),
        False,
    )
    return found


def bench(picks: int, runs: int, seed: int, console: Console) -> dict[str, float]:
    keys = [f"key-{i}" for i in range(picks)]
    found = subjects(seed)
    rates = {label: Rates([], [], []) for label in found}
    for run in range(runs + 1):
        n = picks if run else picks // 10
        for label, (balancer, keyed) in found.items():
            with console.status(f"run {run}/{runs}: {label}"):
                use = keys if keyed else None
                r = rates[label]
                pick_rate = timed_pick(balancer, use, n)
                pair_rate = timed(pair_loop(balancer, use), n)
                with_rate = timed(with_loop(balancer, use), n)
            if run:
                r.pick.append(pick_rate)
                r.pair.append(pair_rate)
                r.with_.append(with_rate)
    table = Table(
        title=f"balancers: {picks:,} picks over {INSTANCES} instances, median of {runs} runs",
        title_justify="left",
    )
    for column in ("balancer", "pick/s", "pick + done/s", "with/s", "pick min - max"):
        table.add_column(column, justify="left" if column == "balancer" else "right")
    medians: dict[str, float] = {}
    for label, r in rates.items():
        pick, pair, with_ = (statistics.median(x) for x in (r.pick, r.pair, r.with_))
        medians[f"{label} pick"] = pick
        medians[f"{label} pair"] = pair
        spread = f"{_rate(min(r.pick))} - {_rate(max(r.pick))}"
        table.add_row(label, _rate(pick), _rate(pair), _rate(with_), spread)
    console.print(table)
    return medians


def bench_references(picks: int, runs: int, seed: int, console: Console) -> None:
    rng = random.Random(seed)
    items = instances()
    loops = {
        "itertools.cycle (plain round robin)": cycle_loop(items),
        "random.choice": choice_loop(items, rng),
        "nginx smooth WRR, plain O(n) function": naive_swrr_loop(items),
        "bare P2C over a list of counters": naive_p2c_loop(items, rng),
    }
    rates: dict[str, list[float]] = {label: [] for label in loops}
    for run in range(runs + 1):
        for label, loop in loops.items():
            with console.status(f"references, run {run}/{runs}: {label}"):
                rate = timed(loop, picks if run else picks // 10)
            if run:
                rates[label].append(rate)
    table = Table(
        title="references: the same loop (one list append per pick), no bookkeeping",
        title_justify="left",
    )
    for column in ("picker", "picks/s", "min - max"):
        table.add_column(column, justify="left" if column == "picker" else "right")
    for label, r in rates.items():
        table.add_row(label, _rate(statistics.median(r)), f"{_rate(min(r))} - {_rate(max(r))}")
    console.print(table)


class _NoLock:
    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


def bench_lock(picks: int, runs: int, seed: int, console: Console) -> None:
    rng = random.Random(seed)
    pairs: dict[str, tuple[Balancer, Balancer]] = {}
    for name in ("round_robin", "p2c_ewma"):
        locked = make_balancer(name, instances(), rng=rng)
        unlocked = make_balancer(name, instances(), rng=rng)
        unlocked._lock = _NoLock()  # type: ignore[assignment]
        pairs[name] = (locked, unlocked)
    rates: dict[tuple[str, int], list[float]] = {}
    for run in range(runs + 1):
        for name, both in pairs.items():
            for i, balancer in enumerate(both):
                with console.status(f"lock cost, run {run}/{runs}: {name}"):
                    rate = timed(pair_loop(balancer, None), picks if run else picks // 10)
                if run:
                    rates.setdefault((name, i), []).append(rate)
    table = Table(
        title="the cost of thread safety: pick + done pairs/s with the lock and with a no-op",
        title_justify="left",
    )
    for column in ("balancer", "with its lock", "no-op lock", "cost"):
        table.add_column(column, justify="left" if column == "balancer" else "right")
    for name in pairs:
        with_lock, without = (statistics.median(rates[(name, i)]) for i in (0, 1))
        table.add_row(name, _rate(with_lock), _rate(without), f"{without / with_lock - 1:+.0%}")
    console.print(table)


# ------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--picks", type=int, default=200_000, help="picks per run (200,000)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per subject (7)")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    args = parser.parse_args(argv)
    console = Console(highlight=False, width=120)
    console.print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} CPUs, {platform.machine()}; seed {args.seed}"
    )
    medians = bench(args.picks, args.runs, args.seed, console)
    bench_references(args.picks, args.runs, args.seed, console)
    bench_lock(args.picks, args.runs, args.seed, console)

    targets = [(label, medians[f"{label} pick"]) for label in ("round_robin", "p2c_ewma")]
    table = Table(title="targets", title_justify="left")
    for column in ("target", "got", "verdict"):
        table.add_column(column)
    for label, got in targets:
        table.add_row(f"{label} >= {TARGET:,} picks/s", _rate(got), _verdict(got >= TARGET))
    for label in ("round_robin", "p2c_ewma"):
        got = medians[f"{label} pair"]
        table.add_row(f"{label} pick + done pairs/s (measured)", _rate(got), "")
    console.print(table)
    return 0 if all(got >= TARGET for _, got in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
