"""Smooth weighted round robin: exact shares per cycle, nginx's order, O(1) and O(n) agree."""

from __future__ import annotations

import math
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.balancer import RoundRobinBalancer
from distsys.balancer._round_robin_core import smooth_cycle

from .support import make_instances, pick_ids, seeded

weight_lists = st.lists(st.integers(1, 12), min_size=1, max_size=8)


def test_nginx_example() -> None:
    # nginx's comment in ngx_http_upstream_round_robin.c: weights 5, 1, 1 give a a b a c a a
    assert smooth_cycle([5, 1, 1]) == [0, 0, 1, 0, 2, 0, 0]


def test_equal_weights_are_plain_round_robin_in_id_order() -> None:
    balancer = RoundRobinBalancer(make_instances(4), rng=seeded())
    picks = pick_ids(balancer, 12, key=None)
    start = int(picks[0][1:])
    assert picks == [f"i{(start + n) % 4}" for n in range(12)]


@settings(max_examples=100, deadline=None)
@given(weights=weight_lists, seed=st.integers(0, 2**32), cycles=st.integers(1, 3))
def test_weights_are_honoured_exactly_over_every_full_cycle(
    weights: list[int], seed: int, cycles: int
) -> None:
    balancer = RoundRobinBalancer(make_instances(len(weights), weights=weights), rng=seeded(seed))
    divisor = math.gcd(*weights)
    period = sum(weights) // divisor
    picks = pick_ids(balancer, period * cycles + 5, key=None)
    for offset in (0, 5):  # any window of whole cycles, wherever it starts
        counts = Counter(picks[offset : offset + period * cycles])
        assert counts == {f"i{n}": cycles * w // divisor for n, w in enumerate(weights)}


@settings(max_examples=50, deadline=None)
@given(weights=weight_lists)
def test_the_precomputed_cycle_and_the_linear_pass_agree(weights: list[int]) -> None:
    instances = make_instances(len(weights), weights=weights)
    divisor = math.gcd(*weights)
    expected = [f"i{n}" for n in smooth_cycle([w // divisor for w in weights])]
    linear = RoundRobinBalancer(instances, rng=seeded())
    linear._cycle_budget = 0  # force the O(n) pass
    linear._rebuild()
    assert linear._cycle is None
    assert pick_ids(linear, 2 * len(expected), key=None) == expected * 2
    cached = RoundRobinBalancer(instances, rng=seeded())
    assert cached._cycle is not None
    picks = pick_ids(cached, len(expected), key=None)
    start = cached._cursor  # one whole cycle later, back where it started
    assert picks == expected[start:] + expected[:start]


def test_large_weights_fall_back_to_the_linear_pass() -> None:
    weights = [999_983, 999_979, 7]  # coprime: a cycle of about 2,000,000 picks
    balancer = RoundRobinBalancer(make_instances(3, weights=weights), rng=seeded())
    assert balancer._cycle is None
    counts = Counter(pick_ids(balancer, 10_000, key=None))
    assert abs(counts["i0"] - counts["i1"]) <= 1
    assert counts["i2"] == 0  # its turn comes about once in 285,000 picks


def test_the_same_seed_gives_the_same_sequence() -> None:
    instances = make_instances(5, weights=[3, 1, 4, 1, 5])
    first = pick_ids(RoundRobinBalancer(instances, rng=seeded(3)), 50, key=None)
    second = pick_ids(RoundRobinBalancer(instances, rng=seeded(3)), 50, key=None)
    assert first == second


def test_exclusion_takes_the_next_entry_not_excluded() -> None:
    balancer = RoundRobinBalancer(make_instances(3), rng=seeded())
    first = balancer.pick()
    first.done()
    following = f"i{(int(first.instance.id[1:]) + 1) % 3}"
    with balancer.pick(exclude={following}) as retry:
        assert retry.instance.id == f"i{(int(following[1:]) + 1) % 3}"
    balancer.update(make_instances(3, weights=[999_983, 999_979, 7]))  # linear pass
    for _ in range(20):
        with balancer.pick(exclude={"i0", "i1"}) as pick:
            assert pick.instance.id == "i2"


def test_the_cycle_follows_weight_changes() -> None:
    balancer = RoundRobinBalancer(make_instances(2), rng=seeded())
    balancer.update(make_instances(2, weights=[3, 1]))
    assert Counter(pick_ids(balancer, 40, key=None)) == {"i0": 30, "i1": 10}
