"""BoundedLoadBalancer: the load bound, the clockwise spill, bookkeeping, bad input."""

from __future__ import annotations

import dataclasses
import math
import random
import threading
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.errors import ArgumentTypeError, EmptyRingError, InvalidArgumentError
from distsys.hashring import BoundedLoadBalancer, BoundedLoadStatistics, HashRing

NODES = [f"node-{i}" for i in range(10)]


def exact(value: float) -> Fraction:
    return Fraction(str(value))  # 1.1 means 11/10


def bound(balancer: BoundedLoadBalancer, node: str, in_flight: int) -> int:
    """ceil(c * T * w / W), computed independently of the balancer."""
    ring = balancer.ring
    total = sum(exact(ring.weight(n)) for n in ring.nodes)
    share = exact(balancer.factor) * exact(ring.weight(node)) / total
    return math.ceil(share * in_flight)


def test_a_key_goes_to_its_own_node_while_there_is_room() -> None:
    ring = HashRing(NODES)
    balancer = BoundedLoadBalancer(ring)
    for i in range(50):
        key = f"key-{i}"
        node = balancer.acquire(key)
        assert node == ring.get(key)
        balancer.release(node)
    assert balancer.statistics().forwarded == 0


def test_a_hot_key_spills_clockwise_and_no_node_exceeds_the_bound() -> None:
    ring = HashRing(NODES)
    balancer = BoundedLoadBalancer(ring, factor=1.25)
    order = ring.get_n("hot", len(NODES))
    placed = [balancer.acquire("hot") for _ in range(40)]
    # T = 40: ceil(1.25 * 40 / 10) = 5 per node; the first nodes clockwise fill up first
    assert max(balancer.loads().values()) <= 5
    assert placed[0] == order[0]
    assert set(placed) <= set(order)
    stats = balancer.statistics()
    assert stats.in_flight == 40
    assert stats.forwarded == sum(node != order[0] for node in placed)


def test_factor_one_balances_perfectly() -> None:
    balancer = BoundedLoadBalancer(HashRing(NODES), factor=1)
    for _ in range(100):
        balancer.acquire("hot")
    assert set(balancer.loads().values()) == {10}


def test_weighted_nodes_get_weighted_capacity() -> None:
    ring = HashRing({"big": 3, "small-1": 1, "small-2": 1})
    balancer = BoundedLoadBalancer(ring, factor=1.0)
    for i in range(500):
        balancer.acquire(f"k{i % 7}")
    assert balancer.loads() == {"big": 300, "small-1": 100, "small-2": 100}
    assert balancer.capacity("big") == math.ceil(Fraction(3, 5) * 501)


def test_the_bound_is_computed_exactly() -> None:
    # 1.1 * 10 / 11 == 1, but in floats it is 1.0000000000000002, whose ceil is 2.
    balancer = BoundedLoadBalancer(HashRing([f"n{i}" for i in range(11)]), factor=1.1)
    for _ in range(9):
        balancer.acquire("hot")
    assert balancer.capacity("n0") == 1  # for T = 10
    balancer.acquire("hot")
    assert max(balancer.loads().values()) == 1
    # weights 0.1 and 0.3 are 1:3, so at T = 4 the light node may hold exactly one
    light = BoundedLoadBalancer(HashRing({"light": 0.1, "heavy": 0.3}), factor=1)
    for _ in range(3):
        light.acquire("k")
    assert light.capacity("light") == 1
    assert light.capacity("heavy") == 3


ops = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.text(max_size=6)),
        st.tuples(st.just("release"), st.integers(min_value=0)),
    ),
    max_size=120,
)


@settings(max_examples=80, deadline=None)
@given(
    ops,
    st.sampled_from([1.0, 1.1, 1.25, 1.5, 2.0, 3.0]),
    st.lists(st.sampled_from([0.5, 1, 1, 2, 3.5]), min_size=1, max_size=6),
)
def test_no_node_ever_exceeds_the_bound(
    operations: list[tuple[str, object]], factor: float, weights: list[float]
) -> None:
    ring = HashRing({f"n{i}": w for i, w in enumerate(weights)}, vnodes=8)
    balancer = BoundedLoadBalancer(ring, factor=factor)
    held: list[str] = []
    peak = 0
    for op, arg in operations:
        if op == "acquire":
            loads_before = balancer.loads()
            in_flight = len(held) + 1
            node = balancer.acquire(str(arg))
            held.append(node)
            peak = max(peak, in_flight)
            assert balancer.load(node) <= bound(balancer, node, in_flight)
            # the first node clockwise whose load was below its share of c * T
            for candidate in ring.get_n(str(arg), len(ring)):
                if loads_before[candidate] < bound(balancer, candidate, in_flight):
                    assert node == candidate
                    break
        elif held:
            balancer.release(held.pop(int(str(arg)) % len(held)))
        for node, load in balancer.loads().items():
            assert load <= bound(balancer, node, peak)
    assert balancer.statistics().in_flight == len(held)


def test_hold_releases_even_when_the_block_fails() -> None:
    balancer = BoundedLoadBalancer(HashRing(NODES))
    with balancer.hold("k") as node:
        assert balancer.load(node) == 1
    assert balancer.load(node) == 0
    with pytest.raises(RuntimeError), balancer.hold("k"):
        raise RuntimeError("handler failed")
    stats = balancer.statistics()
    assert (stats.acquired, stats.released, stats.in_flight) == (2, 2, 0)


def test_a_release_without_an_acquire_is_refused_and_changes_nothing() -> None:
    balancer = BoundedLoadBalancer(HashRing(NODES))
    node = balancer.acquire("k")
    balancer.release(node)
    with pytest.raises(InvalidArgumentError, match=r"node='node-.*not yet released"):
        balancer.release(node)
    with pytest.raises(InvalidArgumentError, match="node="):
        balancer.release("elsewhere")
    with pytest.raises(InvalidArgumentError, match="node="):
        balancer.release(3)  # type: ignore[arg-type]
    assert balancer.statistics().in_flight == 0
    assert balancer.load(3) == 0  # type: ignore[arg-type]


def test_the_balancer_follows_ring_changes() -> None:
    ring = HashRing(["a", "b"])
    balancer = BoundedLoadBalancer(ring)
    node = balancer.acquire("k")
    ring.remove(node)
    assert balancer.loads()[node] == 1  # still busy though gone from the ring
    ring.add("c")
    assert balancer.acquire("k") in {"a", "b", "c"} - {node}
    balancer.release(node)
    assert node not in balancer.loads()
    ring.remove("a" if node != "a" else "b")
    ring.remove("c")
    with pytest.raises(EmptyRingError, match="no nodes"):
        BoundedLoadBalancer(ring).acquire("k")
    with pytest.raises(InvalidArgumentError, match="node='c'"):
        balancer.capacity("c")


def test_empty_ring() -> None:
    with pytest.raises(EmptyRingError):
        BoundedLoadBalancer(HashRing()).acquire("k")


@pytest.mark.parametrize("factor", [0.99, 0, -1, float("nan"), float("inf")])
def test_factor_below_one_is_refused(factor: float) -> None:
    with pytest.raises(InvalidArgumentError, match=r"factor=.*a finite number >= 1"):
        BoundedLoadBalancer(HashRing(NODES), factor=factor)


@pytest.mark.parametrize("factor", ["1.25", None, True])
def test_factor_must_be_a_number(factor: object) -> None:
    with pytest.raises(ArgumentTypeError, match="factor="):
        BoundedLoadBalancer(HashRing(NODES), factor=factor)  # type: ignore[arg-type]


def test_ring_must_be_a_hash_ring() -> None:
    with pytest.raises(ArgumentTypeError, match="ring="):
        BoundedLoadBalancer(NODES)  # type: ignore[arg-type]


def test_bad_keys_are_refused_before_anything_is_counted() -> None:
    balancer = BoundedLoadBalancer(HashRing(NODES))
    with pytest.raises(ArgumentTypeError, match="key="):
        balancer.acquire(1.5)  # type: ignore[arg-type]
    assert balancer.statistics().acquired == 0


def test_statistics_is_a_frozen_snapshot() -> None:
    balancer = BoundedLoadBalancer(HashRing(NODES), factor=1.5)
    balancer.acquire("a")
    stats = balancer.statistics()
    assert isinstance(stats, BoundedLoadStatistics)
    assert stats == BoundedLoadStatistics(
        factor=1.5, nodes=10, in_flight=1, max_load=1, acquired=1, released=0, forwarded=0
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.in_flight = 0  # type: ignore[misc]


def test_threads_share_one_balancer_without_losing_counts() -> None:
    balancer = BoundedLoadBalancer(HashRing(NODES))
    peaks: list[int] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(2000):
            with balancer.hold(f"key-{rng.randrange(50)}"):
                peaks.append(balancer.statistics().max_load)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = balancer.statistics()
    assert (stats.acquired, stats.released, stats.in_flight) == (8000, 8000, 0)
    # at most 4 in flight: ceil(1.25 * 4 / 10) = 1, so no node ever held two
    assert max(peaks) == 1
