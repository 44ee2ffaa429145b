"""``distsys demo cache`` and ``distsys demo ring``: the core algorithms on real workloads."""

from __future__ import annotations

import bisect
import itertools
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import click
from rich.console import Console
from rich.table import Table

from distsys.cache import LRUCache
from distsys.hashring import BoundedLoadBalancer, HashRing

__all__ = ["cache_demo", "ring_demo", "zipf_keys"]


def zipf_keys(count: int, universe: int, s: float, rng: random.Random) -> list[int]:
    """Draw ``count`` keys in ``[0, universe)`` where key ``k`` has weight ``1/(k+1)**s``."""
    cumulative = list(itertools.accumulate(1.0 / (k + 1) ** s for k in range(universe)))
    total = cumulative[-1]
    return [bisect.bisect_left(cumulative, rng.random() * total) for _ in range(count)]


@dataclass(frozen=True, slots=True)
class CacheRun:
    """One capacity's run of the workload."""

    capacity: int
    hit_ratio: float
    evictions: int
    ops_per_second: float


def run_cache(keys: Sequence[int], capacity: int) -> CacheRun:
    """Replay ``keys`` through an LRUCache: read, and put on a miss."""
    cache: LRUCache[int, int] = LRUCache(capacity)
    get, put = cache.get, cache.put
    started = time.perf_counter()
    for key in keys:
        if get(key) is None:
            put(key, key)
    elapsed = time.perf_counter() - started
    stats = cache.statistics()
    return CacheRun(capacity, stats.hit_ratio, stats.evictions, len(keys) / elapsed)


@click.command("cache")
@click.option(
    "--requests", type=click.IntRange(1_000, 5_000_000), default=300_000, show_default=True
)
@click.option("--universe", type=click.IntRange(100, 2_000_000), default=200_000, show_default=True)
@click.option("--skew", type=click.FloatRange(0.5, 3.0), default=1.1, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
def cache_demo(requests: int, universe: int, skew: float, seed: int) -> None:
    """A Zipf workload through LRU caches of several sizes: what a small cache buys."""
    console = Console()
    console.rule("cache: a Zipf workload through an LRU cache")
    keys = zipf_keys(requests, universe, skew, random.Random(seed))
    distinct = len(set(keys))
    table = Table(title=f"{requests:,} reads of {distinct:,} distinct keys (Zipf s={skew})")
    for column in ("capacity", "share of keys", "hit ratio", "evictions", "ops/s"):
        table.add_column(column, justify="right")
    for capacity in (universe // 1000 or 1, universe // 100 or 1, universe // 10 or 1):
        run = run_cache(keys, capacity)
        table.add_row(
            f"{capacity:,}",
            f"{capacity / distinct:.1%}",
            f"{run.hit_ratio:.1%}",
            f"{run.evictions:,}",
            f"{run.ops_per_second / 1e6:.2f} M",
        )
    console.print(table)
    console.print(
        "A cache holding a small share of the keys serves most reads: the popular keys "
        "stay at the recent end of the LRU order, the long tail passes through."
    )


@click.command("ring")
@click.option(
    "--keys", "key_count", type=click.IntRange(1_000, 2_000_000), default=200_000, show_default=True
)
@click.option("--nodes", type=click.IntRange(2, 100), default=10, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
def ring_demo(key_count: int, nodes: int, seed: int) -> None:
    """A hash ring before and after a node joins, and bounded loads under hot keys."""
    console = Console()
    console.rule("ring: consistent hashing as a node joins")
    names = [f"cache-{i:02}" for i in range(nodes)]
    ring = HashRing(names)
    keys = [f"user:{i}" for i in range(key_count)]
    before = {key: ring.get(key) for key in keys}
    newcomer = f"cache-{nodes:02}"
    ring.add(newcomer)
    after = {key: ring.get(key) for key in keys}
    moved = [key for key in keys if before[key] != after[key]]
    only_to_newcomer = all(after[key] == newcomer for key in moved)
    counts_before, counts_after = Counter(before.values()), Counter(after.values())
    table = Table(title=f"{key_count:,} keys over {nodes} nodes, then {newcomer} joins")
    for column in ("node", "keys before", "keys after", "change"):
        table.add_column(column, justify="right" if column != "node" else "left")
    for name in [*names, newcomer]:
        b, a = counts_before.get(name, 0), counts_after.get(name, 0)
        table.add_row(name, f"{b:,}", f"{a:,}", f"{a - b:+,}")
    console.print(table)
    ideal = 1 / (nodes + 1)
    console.print(
        f"moved {len(moved) / key_count:.2%} of the keys (ideal 1/{nodes + 1} = {ideal:.2%}); "
        f"every moved key went to {newcomer}: {'yes' if only_to_newcomer else 'NO'}. "
        f"A modulo placement (hash % n) would have moved {1 - 1 / (nodes + 1):.0%}."
    )

    rng = random.Random(seed)
    hot = zipf_keys(50_000, 1_000, 1.2, rng)
    in_flight = 100
    plain: Counter[str] = Counter()
    bounded = BoundedLoadBalancer(ring, factor=1.25)
    peak_plain = peak_bounded = 0.0
    window: list[str] = []
    for i, key_id in enumerate(hot):
        plain[ring.get(f"session:{key_id}")] += 1
        window.append(bounded.acquire(f"session:{key_id}"))
        if len(window) > in_flight:
            bounded.release(window.pop(0))
        if i >= in_flight:
            loads = bounded.loads()
            peak_bounded = max(peak_bounded, max(loads.values()) / (in_flight / len(ring)))
    peak_plain = max(plain.values()) / (len(hot) / len(ring))
    console.print(
        f"hot keys (Zipf s=1.2, {in_flight} requests in flight): the busiest node gets "
        f"{peak_plain:.1f}x its share on a plain ring, at most {peak_bounded:.2f}x with "
        f"bounded loads (c = 1.25): hot keys spill to the next node clockwise."
    )
