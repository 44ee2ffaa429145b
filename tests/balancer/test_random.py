"""Weighted random: shares within statistical bounds for a fixed seed."""

from __future__ import annotations

import math
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.balancer import RandomBalancer

from .support import make_instances, pick_ids, seeded

PICKS = 20_000


def within_bounds(counts: Counter[str], weights: dict[str, int], total: int) -> bool:
    """Each count within 5 standard deviations of its binomial mean."""
    weight = sum(weights.values())
    for instance_id, w in weights.items():
        p = w / weight
        if abs(counts[instance_id] - total * p) > 5 * math.sqrt(total * p * (1 - p)) + 1:
            return False
    return sum(counts.values()) == total


@settings(max_examples=25, deadline=None)
@given(weights=st.lists(st.integers(1, 10), min_size=1, max_size=6))
def test_shares_follow_the_weights(weights: list[int]) -> None:
    balancer = RandomBalancer(make_instances(len(weights), weights=weights), rng=seeded(2024))
    counts = Counter(pick_ids(balancer, PICKS, key=None))
    assert within_bounds(counts, {f"i{n}": w for n, w in enumerate(weights)}, PICKS)


def test_equal_weights_are_uniform() -> None:
    balancer = RandomBalancer(make_instances(5), rng=seeded(1))
    counts = Counter(pick_ids(balancer, PICKS, key=None))
    assert within_bounds(counts, {f"i{n}": 1 for n in range(5)}, PICKS)


def test_exclusion_keeps_the_shares_of_the_rest() -> None:
    balancer = RandomBalancer(make_instances(3, weights=[1, 2, 6]), rng=seeded(5))
    counts: Counter[str] = Counter()
    for _ in range(PICKS):
        with balancer.pick(exclude=("i2",)) as pick:
            counts[pick.instance.id] += 1
    assert within_bounds(counts, {"i0": 1, "i1": 2}, PICKS)


def test_the_same_seed_gives_the_same_picks() -> None:
    instances = make_instances(4, weights=[1, 2, 3, 4])
    first = pick_ids(RandomBalancer(instances, rng=seeded(9)), 100, key=None)
    assert first == pick_ids(RandomBalancer(instances, rng=seeded(9)), 100, key=None)
