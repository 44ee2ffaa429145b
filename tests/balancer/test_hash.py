"""Consistent hashing with bounded loads: affinity, the bound, exclusion, ring changes."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.balancer import ConsistentHashBalancer, Pick
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.hashring import HashRing

from .support import make_instances, seeded

KEYS = [f"user:{n}" for n in range(300)]


def loads(balancer: ConsistentHashBalancer) -> dict[str, int]:
    return {i.id: i.outstanding for i in balancer.statistics().instances}


@settings(max_examples=50, deadline=None)
@given(
    keys=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=50), n=st.integers(1, 8)
)
def test_a_key_goes_to_its_own_instance_while_loads_are_even(keys: list[str], n: int) -> None:
    balancer = ConsistentHashBalancer(make_instances(n), rng=seeded())
    for key in keys:
        with balancer.pick(key) as first:
            pass
        with balancer.pick(key) as second:
            pass
        assert first.instance.id == second.instance.id == balancer.ring.get(key)


@settings(max_examples=100, deadline=None)
@given(
    weights=st.lists(st.integers(1, 4), min_size=1, max_size=6),
    factor=st.sampled_from([1.0, 1.1, 1.25, 2.0]),
    ops=st.lists(st.one_of(st.sampled_from(["hot", "warm"]), st.integers(0, 99)), max_size=150),
)
def test_no_instance_ever_exceeds_the_bounded_load(
    weights: list[int], factor: float, ops: list[str | int]
) -> None:
    instances = make_instances(len(weights), weights=weights)
    balancer = ConsistentHashBalancer(instances, factor=factor, rng=seeded())
    total = sum(weights)
    weight = {i.id: i.weight for i in instances}
    held: list[Pick] = []
    for op in ops:
        if isinstance(op, int):
            if held:
                held.pop(op % len(held)).done()
            continue
        pick = balancer.pick(op)
        held.append(pick)
        in_flight = len(held)  # T, the new request included
        chosen = pick.instance.id
        bound = math.ceil(Fraction(str(factor)) * in_flight * weight[chosen] / total)
        assert loads(balancer)[chosen] <= bound
    assert sum(loads(balancer).values()) == len(held)


def test_a_hot_key_spills_over_to_the_next_instances() -> None:
    balancer = ConsistentHashBalancer(make_instances(4), factor=1.0, rng=seeded())
    held = [balancer.pick("hot") for _ in range(8)]
    assert held[0].instance.id == balancer.ring.get("hot")
    assert sorted(loads(balancer).values()) == [2, 2, 2, 2]


def test_a_key_is_required() -> None:
    balancer = ConsistentHashBalancer(make_instances(2))
    with pytest.raises(InvalidArgumentError) as raised:
        balancer.pick()
    assert raised.value.field == "key"
    assert "consistent_hash" in str(raised.value)
    with pytest.raises(ArgumentTypeError) as raised:
        balancer.pick(1.5)  # type: ignore[arg-type]
    assert raised.value.field == "key"
    assert balancer.statistics().outstanding == 0
    assert balancer.pick(b"bytes").instance.id == balancer.pick(b"bytes").instance.id
    assert balancer.pick(42).instance.id == balancer.ring.get("42")


def test_a_missing_key_is_reported_before_a_missing_instance() -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        ConsistentHashBalancer(service="api").pick()
    assert raised.value.field == "key"


def test_exclusion_walks_on_to_the_next_instance_clockwise() -> None:
    balancer = ConsistentHashBalancer(make_instances(5), rng=seeded())
    for key in KEYS[:50]:
        order = balancer.ring.get_n(key, 5)
        with balancer.pick(key, exclude={order[0]}) as pick:
            assert pick.instance.id == order[1]
        with balancer.pick(key, exclude=set(order[:3])) as pick:
            assert pick.instance.id == order[3]
    assert sum(loads(balancer).values()) == 0


def test_exclusion_when_only_excluded_instances_have_room() -> None:
    balancer = ConsistentHashBalancer(make_instances(3), factor=1.0, rng=seeded())
    held = [balancer.pick("k", exclude={"i0", "i2"}), balancer.pick("k", exclude={"i0", "i1"})]
    assert loads(balancer) == {"i0": 0, "i1": 1, "i2": 1}
    # the next request may hold ceil(1 * 3 / 3) = 1 per instance: only i0 has room
    third = balancer.pick("k", exclude={"i0"})
    assert third.instance.id in {"i1", "i2"}
    assert balancer.ring.nodes == ("i0", "i1", "i2")  # i0 is back on the ring
    for pick in [*held, third]:
        pick.done()
    assert loads(balancer) == {"i0": 0, "i1": 0, "i2": 0}
    assert balancer.statistics().outstanding == 0


@pytest.fixture
def ring_changes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    changes: list[str] = []
    for method in ("add", "remove", "set_weight"):
        original = getattr(HashRing, method)

        def spy(ring: HashRing, *args: object, _name: str = method, _f: object = original) -> None:
            changes.append(_name)
            _f(ring, *args)  # type: ignore[operator]

        monkeypatch.setattr(HashRing, method, spy)
    return changes


def test_the_ring_changes_only_when_the_instance_set_does(ring_changes: list[str]) -> None:
    instances = make_instances(4)
    balancer = ConsistentHashBalancer(instances, rng=seeded())
    assert ring_changes == ["add"] * 4
    ring_changes.clear()
    balancer.update(list(instances))  # the same set again
    for key in KEYS[:20]:
        balancer.pick(key).done()
    assert ring_changes == []
    balancer.update(make_instances(4, weights=[1, 1, 1, 3]))
    assert ring_changes == ["set_weight"]
    balancer.eject("i0")
    balancer.readmit("i0")
    assert ring_changes == ["set_weight", "remove", "add"]


def test_only_the_keys_of_an_ejected_instance_move() -> None:
    balancer = ConsistentHashBalancer(make_instances(5), rng=seeded())
    before = {key: balancer.ring.get(key) for key in KEYS}
    balancer.eject("i3")
    for key in KEYS:
        with balancer.pick(key) as pick:
            moved = pick.instance.id != before[key]
            assert moved == (before[key] == "i3")
    balancer.readmit("i3")
    assert {key: balancer.ring.get(key) for key in KEYS} == before


def test_bad_options() -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        ConsistentHashBalancer(factor=0.5)
    assert raised.value.field == "factor"
    with pytest.raises(InvalidArgumentError) as raised:
        ConsistentHashBalancer(vnodes=0)
    assert raised.value.field == "vnodes"


def test_a_forgotten_pick_releases_its_load() -> None:
    balancer = ConsistentHashBalancer(make_instances(2), factor=1.0, rng=seeded())
    for _ in range(10):
        balancer.pick("hot")  # dropped at once: collected, then released
    with balancer.pick("hot") as pick:
        assert pick.instance.id == balancer.ring.get("hot")  # no phantom load left
    stats = balancer.statistics()
    assert (stats.leaked, stats.outstanding) == (10, 0)
