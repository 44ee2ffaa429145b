"""Least outstanding: never a strictly busier instance (exact), weighted ties, sampling."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.balancer import LeastOutstandingBalancer, Pick
from distsys.errors import ArgumentTypeError, InvalidArgumentError

from .support import make_instances, pick_ids, seeded

# an operation: None picks, an int finishes the outstanding pick at that index (modulo)
operations = st.lists(st.one_of(st.none(), st.integers(0, 1000)), max_size=120)


@settings(max_examples=200, deadline=None)
@given(weights=st.lists(st.integers(1, 5), min_size=1, max_size=6), ops=operations)
def test_never_picks_a_strictly_busier_instance(weights: list[int], ops: list[int | None]) -> None:
    instances = make_instances(len(weights), weights=weights)
    balancer = LeastOutstandingBalancer(instances, rng=seeded())
    weight = {i.id: i.weight for i in instances}
    load = dict.fromkeys(weight, 0)
    held: list[Pick] = []
    for op in ops:
        if op is None or not held:
            pick = balancer.pick()
            chosen = pick.instance.id
            # outstanding / weight of the chosen was minimal before the pick
            assert all(load[chosen] * weight[o] <= load[o] * weight[chosen] for o in load)
            load[chosen] += 1
            held.append(pick)
        else:
            pick = held.pop(op % len(held))
            pick.done()
            load[pick.instance.id] -= 1
        stats = {i.id: i.outstanding for i in balancer.statistics().instances}
        assert stats == load


def test_an_idle_instance_always_wins_over_busy_ones() -> None:
    balancer = LeastOutstandingBalancer(make_instances(4), rng=seeded())
    held = [balancer.pick() for _ in range(3)]  # three instances busy, one idle
    idle = ({"i0", "i1", "i2", "i3"} - {p.instance.id for p in held}).pop()
    for _ in range(10):
        with balancer.pick() as pick:
            assert pick.instance.id == idle


@settings(max_examples=50, deadline=None)
@given(weights=st.lists(st.integers(1, 6), min_size=1, max_size=6))
def test_sequential_traffic_is_spread_by_weight(weights: list[int]) -> None:
    # every pick finished before the next: all tie at zero, smooth WRR breaks the ties
    balancer = LeastOutstandingBalancer(make_instances(len(weights), weights=weights))
    counts = Counter(pick_ids(balancer, 2 * sum(weights), key=None))
    assert counts == {f"i{n}": 2 * w for n, w in enumerate(weights)}


def test_exclusion() -> None:
    balancer = LeastOutstandingBalancer(make_instances(3), rng=seeded())
    held = balancer.pick(exclude={"i0", "i1"})
    assert held.instance.id == "i2"
    with balancer.pick(exclude={"i0"}) as pick:
        assert pick.instance.id == "i1"  # i2 is busy


def test_sampled_choices_prefer_the_idle_instance() -> None:
    balancer = LeastOutstandingBalancer(make_instances(10), choices=2, rng=seeded(11))
    held = []
    for n in range(1, 10):  # every instance but i0 holds 3 requests
        held += [balancer.pick(exclude={f"i{m}" for m in range(10) if m != n}) for _ in range(3)]
    counts: Counter[str] = Counter()
    for _ in range(2000):
        pick = balancer.pick()
        counts[pick.instance.id] += 1
        pick.abandon()
    # i0 is in a sample of two (with replacement) with probability 0.19, and then wins
    assert 300 < counts["i0"] < 460
    assert counts.total() == 2000


def test_sampled_choices_with_few_instances_are_exact() -> None:
    balancer = LeastOutstandingBalancer(make_instances(2), choices=3, rng=seeded())
    held = balancer.pick()
    other = ({"i0", "i1"} - {held.instance.id}).pop()
    assert all(i == other for i in pick_ids(balancer, 20, key=None))


@pytest.mark.parametrize(
    ("choices", "error"),
    [(1, InvalidArgumentError), (2.0, ArgumentTypeError), (True, ArgumentTypeError)],
)
def test_bad_choices(choices: object, error: type[Exception]) -> None:
    with pytest.raises(error) as raised:
        LeastOutstandingBalancer(choices=choices)  # type: ignore[arg-type]
    assert isinstance(raised.value, InvalidArgumentError)
    assert raised.value.field == "choices"
