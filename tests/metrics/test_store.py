"""CollapsingStore: bounded range, folding of the lowest keys, order-free state, merging."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.metrics._store import CollapsingStore


def store_of(keys: list[int], limit: int) -> CollapsingStore:
    store = CollapsingStore(limit)
    for key in keys:
        store.add(key)
    return store


def state(store: CollapsingStore) -> tuple[int, list[int], int]:
    return store.lo, store.counts, store.min_key


def expected_counts(keys: list[int], limit: int) -> dict[int, int]:
    """The definition: range [max(min, max - limit + 1), max]; lower keys count at lo."""
    hi = max(keys)
    lo = max(min(keys), hi - limit + 1)
    return dict(Counter(max(key, lo) for key in keys))


def test_counts_keys_in_a_contiguous_list() -> None:
    store = store_of([5, 3, 5, 7], limit=10)
    assert state(store) == (3, [1, 0, 2, 0, 1], 3)
    assert not store.collapsed


def test_a_key_too_far_above_folds_the_lowest_keys() -> None:
    store = store_of([1, 2, 3], limit=3)
    store.add(5)
    assert state(store) == (3, [3, 0, 1], 1)
    assert store.collapsed


def test_a_key_too_far_below_is_counted_at_the_lowest_key() -> None:
    store = store_of([10, 11], limit=3)
    store.add(0)
    assert state(store) == (9, [1, 1, 1], 0)
    store.add(-50)
    assert state(store) == (9, [2, 1, 1], -50)


def test_a_huge_jump_keeps_memory_bounded() -> None:
    store = store_of([-(10**9), 10**9], limit=4)
    assert state(store) == (10**9 - 3, [1, 0, 0, 1], -(10**9))


def test_keys_at_ranks() -> None:
    store = store_of([2, 2, 4, 7], limit=10)
    assert store.keys_at_ranks([0, 1, 2, 3]) == [2, 2, 4, 7]


def test_copy_is_independent_and_clear_empties() -> None:
    store = store_of([1, 2], limit=5)
    twin = store.copy()
    twin.add(9)
    assert state(store) == (1, [1, 1], 1)
    store.clear()
    assert state(store) == (0, [], 0)
    assert not store.collapsed


keys = st.lists(st.integers(-60, 60), min_size=1, max_size=80)
limits = st.integers(1, 40)


@settings(deadline=None)
@given(keys=keys, limit=limits)
def test_the_state_follows_the_definition(keys: list[int], limit: int) -> None:
    store = store_of(keys, limit)
    assert len(store.counts) <= limit
    got = {store.lo + i: c for i, c in enumerate(store.counts) if c}
    assert got == expected_counts(keys, limit)
    assert store.min_key == min(keys)


@settings(deadline=None)
@given(keys=keys, limit=limits, data=st.data())
def test_the_state_does_not_depend_on_the_order_of_keys(
    keys: list[int], limit: int, data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(keys))
    assert state(store_of(keys, limit)) == state(store_of(shuffled, limit))


@settings(deadline=None)
@given(parts=st.lists(keys | st.just([]), min_size=1, max_size=5), limit=limits)
def test_merging_equals_adding_every_key_to_one_store(parts: list[list[int]], limit: int) -> None:
    first, *rest = (store_of(part, limit) for part in parts)
    first.merge(rest)
    everything = [key for part in parts for key in part]
    assert state(first) == state(store_of(everything, limit))
