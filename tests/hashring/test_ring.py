"""HashRing: placement, replicas, weights, changes, bad input, lock-free reads."""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections import Counter
from collections.abc import Callable
from types import FrameType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.errors import ArgumentTypeError, EmptyRingError, InvalidArgumentError
from distsys.hashring import HashRing, HashRingStatistics, hash_key
from distsys.hashring import _ring as ring_module

NODES = ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]
KEYS = [f"key-{i}" for i in range(20_000)]

node_names = st.text(alphabet="abcdefghij0123456789.:-", min_size=1, max_size=10)
keys = st.one_of(st.text(max_size=20), st.binary(max_size=20), st.integers(-(2**70), 2**70))
key_lists = st.lists(keys, min_size=1, max_size=40)
small_vnodes = st.integers(min_value=1, max_value=24)


# ------------------------------------------------------------------------ golden placement


def test_placement_never_changes_between_versions() -> None:
    # If this fails, placement changed: every deployed ring would reshuffle its keys.
    ring = HashRing(NODES)
    assert {key: ring.get(key) for key in ["user:1", "user:2", "user:5", "user:6", 42]} == {
        "user:1": "10.0.0.1:8080",
        "user:2": "10.0.0.3:8080",
        "user:5": "10.0.0.3:8080",
        "user:6": "10.0.0.2:8080",
        42: "10.0.0.3:8080",
    }
    assert ring.get_n("user:2", 3) == ["10.0.0.3:8080", "10.0.0.1:8080", "10.0.0.2:8080"]
    weighted = HashRing({"a": 1, "b": 2.5, "c": 0.5}, vnodes=100)
    assert [weighted.get(f"k{i}") for i in range(1, 7)] == ["b", "a", "a", "a", "a", "b"]


def test_a_key_goes_to_the_first_point_at_or_after_its_hash() -> None:
    ring = HashRing(["only"], vnodes=4)
    points = sorted(ring_module.vnode_points("only", 4))
    assert ring._snapshot()[0] == points
    two = HashRing(["a", "b"], vnodes=8)
    table, owners, _ = two._snapshot()
    for key in KEYS[:500]:
        point = hash_key(key)
        at_or_after = [i for i, p in enumerate(table) if p >= point]
        assert two.get(key) == owners[at_or_after[0] if at_or_after else 0]


def test_the_same_nodes_in_any_order_place_keys_alike() -> None:
    forward, backward = HashRing(NODES), HashRing(reversed(NODES))
    grown = HashRing()
    for node in reversed(NODES):
        grown.add(node)
    assert [forward.get(k) for k in KEYS[:2000]] == [backward.get(k) for k in KEYS[:2000]]
    assert [forward.get(k) for k in KEYS[:2000]] == [grown.get(k) for k in KEYS[:2000]]


def test_keys_of_every_supported_type_are_placed() -> None:
    ring = HashRing(NODES)
    assert ring.get(7) == ring.get("7") == ring.get(b"7") == ring.get(bytearray(b"7"))
    with pytest.raises(ArgumentTypeError, match="key="):
        ring.get(7.0)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="key="):
        ring.get_n(None, 2)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="UTF-8"):
        ring.get("\ud800")


# ----------------------------------------------------------------- consistency properties


@settings(max_examples=60, deadline=None)
@given(
    st.lists(node_names, min_size=1, max_size=8, unique=True), node_names, key_lists, small_vnodes
)
def test_adding_a_node_moves_keys_only_to_it(
    nodes: list[str], newcomer: str, some_keys: list[object], vnodes: int
) -> None:
    if newcomer in nodes:
        return
    ring = HashRing(nodes, vnodes=vnodes)
    before = [ring.get(k) for k in some_keys]  # type: ignore[arg-type]
    ring.add(newcomer)
    after = [ring.get(k) for k in some_keys]  # type: ignore[arg-type]
    assert all(a in (b, newcomer) for b, a in zip(before, after, strict=True))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(node_names, min_size=2, max_size=8, unique=True),
    st.data(),
    key_lists,
    small_vnodes,
)
def test_removing_a_node_moves_only_its_keys(
    nodes: list[str], data: st.DataObject, some_keys: list[object], vnodes: int
) -> None:
    leaver = data.draw(st.sampled_from(nodes))
    ring = HashRing(nodes, vnodes=vnodes)
    before = [ring.get(k) for k in some_keys]  # type: ignore[arg-type]
    ring.remove(leaver)
    after = [ring.get(k) for k in some_keys]  # type: ignore[arg-type]
    for b, a in zip(before, after, strict=True):
        assert a != leaver
        assert b == leaver or a == b


@settings(max_examples=60, deadline=None)
@given(
    st.lists(node_names, min_size=1, max_size=8, unique=True),
    keys,
    st.integers(min_value=1, max_value=10),
    small_vnodes,
)
def test_get_n_names_distinct_nodes_led_by_get(
    nodes: list[str], key: object, n: int, vnodes: int
) -> None:
    ring = HashRing(nodes, vnodes=vnodes)
    chosen = ring.get_n(key, n)  # type: ignore[arg-type]
    assert len(chosen) == min(n, len(nodes))
    assert len(set(chosen)) == len(chosen)
    assert set(chosen) <= set(nodes)
    assert chosen[0] == ring.get(key)  # type: ignore[arg-type]
    assert ring.get_n(key, 1) == chosen[:1]  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(st.lists(node_names, min_size=2, max_size=6, unique=True), key_lists)
def test_raising_a_weight_moves_keys_only_to_that_node(
    nodes: list[str], some_keys: list[object]
) -> None:
    ring = HashRing(nodes, vnodes=8)
    before = [ring.get(k) for k in some_keys]  # type: ignore[arg-type]
    ring.set_weight(nodes[0], 3)
    after = [ring.get(k) for k in some_keys]  # type: ignore[arg-type]
    assert all(a in (b, nodes[0]) for b, a in zip(before, after, strict=True))
    ring.set_weight(nodes[0], 1)
    assert [ring.get(k) for k in some_keys] == before  # type: ignore[arg-type]


def test_get_n_beyond_the_node_count_returns_every_node_once() -> None:
    ring = HashRing(NODES)
    assert sorted(ring.get_n("k", 10)) == sorted(NODES)


# -------------------------------------------------------------------------------- weights


def test_a_node_of_weight_2_gets_about_twice_the_keys() -> None:
    ring = HashRing({"heavy": 2, "light-1": 1, "light-2": 1})
    counts = Counter(map(ring.get, KEYS))
    ratio = counts["heavy"] / ((counts["light-1"] + counts["light-2"]) / 2)
    assert 1.6 < ratio < 2.4, counts  # generous: the spread at 160 vnodes is a few percent
    shares = ring.shares()
    assert shares["heavy"] == pytest.approx(counts["heavy"] / len(KEYS), abs=0.02)


def test_weights_set_the_number_of_points() -> None:
    ring = HashRing({"a": 1, "b": 0.5, "c": 2.5, "d": 0.001}, vnodes=10)
    stats = ring.statistics()
    assert stats.points + stats.shadowed_points == 10 + 5 + 25 + 1  # round half up, min 1
    assert ring.weight("b") == 0.5
    assert stats.total_weight == pytest.approx(4.001)


def test_shares_cover_the_whole_ring() -> None:
    ring = HashRing({"a": 1, "b": 3})
    shares = ring.shares()
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["b"] > shares["a"]
    assert HashRing().shares() == {}


# ------------------------------------------------------------------- collisions of points


@pytest.fixture
def colliding_points(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {"a": [200, 300], "b": [100, 200], "c": [200]}
    monkeypatch.setattr(ring_module, "vnode_points", lambda node, count: table[node][:count])


@pytest.mark.usefixtures("colliding_points")
def test_a_shared_point_goes_to_the_smaller_name_in_any_order() -> None:
    for order in (["a", "b", "c"], ["c", "b", "a"]):
        ring = HashRing(vnodes=2)
        for node in order:
            ring.add(node, weight=1 if node != "c" else 0.5)
        assert ring._snapshot()[:2] == ([100, 200, 300], ["b", "a", "a", "b"])
        assert ring.statistics().shadowed_points == 2
    ring.remove("a")
    assert ring._snapshot()[:2] == ([100, 200], ["b", "b", "b"])  # "b" wins over "c"
    ring.remove("b")
    assert ring._snapshot()[:2] == ([200], ["c", "c"])
    assert ring.get(b"anything") == "c"


# ---------------------------------------------------------------- membership and changes


def test_add_remove_len_in_nodes() -> None:
    ring = HashRing()
    assert len(ring) == 0
    assert ring.nodes == ()
    ring.add("b")
    ring.add("a", weight=2)
    assert len(ring) == 2
    assert "a" in ring
    assert "z" not in ring
    assert [] not in ring  # unhashable: simply not a node
    assert ring.nodes == ("a", "b")
    ring.remove("a")
    assert ring.nodes == ("b",)
    assert repr(ring) == "HashRing(nodes=1, points=160, vnodes=160)"


def test_an_empty_ring_says_it_has_no_nodes() -> None:
    ring = HashRing(["a"])
    ring.remove("a")
    for lookup in (lambda: ring.get("k"), lambda: ring.get_n("k", 2)):
        with pytest.raises(EmptyRingError, match="no nodes"):
            lookup()


def test_adding_a_node_twice_is_refused() -> None:
    ring = HashRing(["a"])
    with pytest.raises(InvalidArgumentError, match=r"node='a'.*not on the ring yet.*set_weight"):
        ring.add("a", weight=2)
    assert ring.weight("a") == 1
    with pytest.raises(InvalidArgumentError, match="distinct"):
        HashRing(["a", "b", "a"])


def test_unknown_nodes_are_named_in_the_error() -> None:
    ring = HashRing([f"n{i}" for i in range(8)])
    with pytest.raises(InvalidArgumentError, match=r"node='x'.*'n0', 'n1'.*and 3 more"):
        ring.remove("x")
    with pytest.raises(InvalidArgumentError, match="node='x'"):
        ring.set_weight("x", 2)
    with pytest.raises(InvalidArgumentError, match="node='x'"):
        ring.weight("x")
    with pytest.raises(InvalidArgumentError, match="ring is empty"):
        HashRing().remove("x")
    assert len(ring) == 8


@pytest.mark.parametrize("weight", [0, -1, float("nan"), float("inf"), 1e300])
def test_weights_must_be_positive_finite_numbers(weight: float) -> None:
    ring = HashRing()
    with pytest.raises(InvalidArgumentError, match="weight="):
        ring.add("a", weight)
    with pytest.raises(InvalidArgumentError, match="weight="):
        HashRing({"a": weight})
    assert len(ring) == 0


@pytest.mark.parametrize("weight", ["2", None, True])
def test_weights_must_be_numbers(weight: object) -> None:
    with pytest.raises(ArgumentTypeError, match="weight="):
        HashRing().add("a", weight)  # type: ignore[arg-type]
    ring = HashRing(["a"])
    with pytest.raises(ArgumentTypeError, match="weight="):
        ring.set_weight("a", weight)  # type: ignore[arg-type]


@pytest.mark.parametrize("vnodes", [0, -5, 2**21])
def test_vnodes_must_be_in_range(vnodes: int) -> None:
    with pytest.raises(InvalidArgumentError, match=r"vnodes=.*an int from 1 to"):
        HashRing(vnodes=vnodes)


@pytest.mark.parametrize("vnodes", [1.5, "160", True])
def test_vnodes_must_be_an_int(vnodes: object) -> None:
    with pytest.raises(ArgumentTypeError, match="vnodes="):
        HashRing(vnodes=vnodes)  # type: ignore[arg-type]


@pytest.mark.parametrize("nodes", ["abc", b"abc", 3])
def test_nodes_must_be_an_iterable_of_names(nodes: object) -> None:
    with pytest.raises(ArgumentTypeError, match="nodes="):
        HashRing(nodes)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="node="):
        HashRing([1, 2])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match="non-empty"):
        HashRing().add("")


@pytest.mark.parametrize(("n", "error"), [(0, InvalidArgumentError), (1.0, ArgumentTypeError)])
def test_get_n_needs_a_positive_int(n: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"n=.*an int >= 1"):
        HashRing(NODES).get_n("k", n)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- statistics


def test_statistics_is_a_frozen_snapshot() -> None:
    ring = HashRing(NODES, vnodes=100)
    stats = ring.statistics()
    assert isinstance(stats, HashRingStatistics)
    assert (stats.nodes, stats.points, stats.shadowed_points, stats.vnodes) == (3, 300, 0, 100)
    assert stats.total_weight == 3.0
    assert 0 < stats.min_share_ratio <= 1 <= stats.max_share_ratio < 1.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.nodes = 4  # type: ignore[misc]
    empty = HashRing().statistics()
    assert (empty.nodes, empty.points, empty.max_share_ratio) == (0, 0, 0.0)


# ---------------------------------------------------------------- concurrency contract


def test_lookups_see_a_whole_snapshot_while_the_ring_changes() -> None:
    # A reader must see the ring wholly before or wholly after each change: a torn read
    # (new points with old owners, say) would give an answer no ring state gives.
    four, five = "10.0.0.4:8080", "10.0.0.5:8080"
    states = [NODES, [*NODES, four], [*NODES, four, five], [*NODES, five]]
    probe = KEYS[:64]
    expected = {key: {tuple(HashRing(s).get_n(key, 5)) for s in states} for key in probe}
    ring = HashRing(NODES)
    stop = threading.Event()
    torn: list[tuple[str, tuple[str, ...]]] = []
    reads = [0]

    def read() -> None:
        while not stop.is_set():
            for key in probe:
                got = tuple(ring.get_n(key, 5))
                if got not in expected[key]:
                    torn.append((key, got))
                reads[0] += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    readers = [threading.Thread(target=read) for _ in range(3)]
    try:
        for reader in readers:
            reader.start()
        for _ in range(100):
            ring.add(four)
            ring.add(five)
            ring.remove(four)
            ring.remove(five)
    finally:
        stop.set()
        for reader in readers:
            reader.join()
        sys.setswitchinterval(interval)
    assert torn == []
    assert reads[0] > 0


def test_a_lookup_between_any_two_lines_of_a_change_sees_a_whole_ring() -> None:
    # Deterministic version of the race above: a tracer runs lookups at every line the
    # writer executes inside the ring's module, so any moment where the published state
    # is half-updated is observed.
    four = "10.0.0.4:8080"
    probe = KEYS[:32]
    expected = {
        key: {tuple(HashRing(s).get_n(key, 4)) for s in (NODES, [*NODES, four])} for key in probe
    }
    ring = HashRing(NODES)
    checks: list[bool] = []

    def check(frame: FrameType, event: str, arg: object) -> Callable[..., object]:
        checks.extend(tuple(ring.get_n(key, 4)) in expected[key] for key in probe)
        return check

    def on_call(frame: FrameType, event: str, arg: object) -> Callable[..., object] | None:
        return check if frame.f_code.co_filename == ring_module.__file__ else None

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        ring.add(four)
        ring.remove(four)
        ring.set_weight(NODES[0], 1)
    finally:
        sys.settrace(previous)
    assert len(checks) > 10 * len(probe)
    assert all(checks)


def test_concurrent_writers_lose_no_change() -> None:
    ring = HashRing(vnodes=4)

    def add(prefix: str) -> None:
        for i in range(50):
            ring.add(f"{prefix}{i}")

    writers = [threading.Thread(target=add, args=(p,)) for p in "abcd"]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert len(ring) == 200
    assert ring.statistics().points + ring.statistics().shadowed_points == 800
