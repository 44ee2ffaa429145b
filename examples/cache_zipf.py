"""An LRU cache under a skewed workload, and a cached coroutine function.

1. 200,000 lookups of keys drawn from a Zipf(1.1) law over 100,000 keys go through a
   5,000-item ``LRUCache``; a miss "loads" the key and puts it. A few keys are very
   popular, so a cache holding 5% of the keys serves most lookups. The top 5,000 keys
   carry the probability mass printed alongside: no cache of that size can beat it.
2. ``cached`` on a coroutine function that takes 50 ms, with a one-minute TTL: 20
   concurrent calls for the same key run it once (single flight), and 20 more are hits.

Run it with ``python examples/cache_zipf.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import random

from distsys.cache import LRUCache, cached

KEYS, LOOKUPS, CAPACITY, S = 100_000, 200_000, 5_000, 1.1


def zipf_workload() -> None:
    rng = random.Random(42)
    weights = [1 / rank**S for rank in range(1, KEYS + 1)]
    cumulative = list(itertools.accumulate(weights))
    keys = rng.choices(range(KEYS), cum_weights=cumulative, k=LOOKUPS)

    cache: LRUCache[int, str] = LRUCache(CAPACITY)
    for key in keys:
        if cache.get(key) is None:
            cache.put(key, f"value of {key}")  # stands in for a database read

    stats = cache.statistics()
    best = cumulative[CAPACITY - 1] / cumulative[-1]
    print(
        f"zipf({S}) over {KEYS} keys, {LOOKUPS} lookups, capacity {CAPACITY}: "
        f"hit ratio {stats.hit_ratio:.3f} (top {CAPACITY} keys carry {best:.3f})"
    )
    print(f"hits {stats.hits}, misses {stats.misses}, evictions {stats.evictions}")


async def single_flight() -> None:
    runs = 0

    @cached(LRUCache(100, ttl=60))
    async def fetch_profile(user: str) -> dict[str, str]:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)  # stands in for a slow service call
        return {"user": user, "plan": "pro"}

    first = await asyncio.gather(*(fetch_profile("ada") for _ in range(20)))
    second = await asyncio.gather(*(fetch_profile("ada") for _ in range(20)))
    assert all(profile == {"user": "ada", "plan": "pro"} for profile in first + second)
    stats = fetch_profile.cache.statistics()
    print(f"fetch_profile ran {runs} time(s) for 20 concurrent calls, then {stats.hits} hits")


if __name__ == "__main__":
    zipf_workload()
    asyncio.run(single_flight())
