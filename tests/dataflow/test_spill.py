"""Spilling: grace-hash tables, the hash join and the external sort, on tiny budgets."""

from __future__ import annotations

import operator
import os
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.dataflow._metrics import TaskMetrics
from distsys.dataflow._shuffle_read import _probe_left
from distsys.dataflow._spill import (
    CombineTable,
    GroupTable,
    SpillArea,
    batch_size,
    external_sort,
    grace_items,
    hash_join,
    merge_runs,
    record_size,
)

pairs = st.lists(st.tuples(st.integers(0, 300), st.integers(-5, 5)), max_size=300)
budgets = st.sampled_from([1, 200, 5_000, 10**9])


def batches(items: list[object], size: int = 7) -> list[list[object]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@settings(max_examples=40, deadline=None)
@given(data=pairs, budget=budgets)
def test_grace_aggregation_matches_a_dict(
    tmp_path_factory: pytest.TempPathFactory, data: list[tuple[int, int]], budget: int
) -> None:
    root = str(tmp_path_factory.mktemp("spill"))
    metrics = TaskMetrics()
    spill = SpillArea(root, metrics)
    expected: dict[int, int] = defaultdict(int)
    for key, value in data:
        expected[key] += value
    got = dict(grace_items(CombineTable("add"), batches(data), budget, spill))
    generic = dict(grace_items(CombineTable("generic", operator.add), batches(data), budget, spill))
    assert got == generic == expected
    groups: dict[int, list[int]] = defaultdict(list)
    for key, value in data:
        groups[key].append(value)
    grouped = {k: sorted(v) for k, v in grace_items(GroupTable(), batches(data), budget, spill)}
    assert grouped == {k: sorted(v) for k, v in groups.items()}
    if budget == 1 and len(expected) > 1:
        assert metrics.spilled > 0
    spill.close()
    assert os.listdir(root) == []


@settings(max_examples=40, deadline=None)
@given(probe=pairs, build=pairs, budget=budgets, outer=st.booleans())
def test_hash_join_matches_nested_loops(
    tmp_path_factory: pytest.TempPathFactory,
    probe: list[tuple[int, int]],
    build: list[tuple[int, int]],
    budget: int,
    outer: bool,
) -> None:
    spill = SpillArea(str(tmp_path_factory.mktemp("join")))
    joined = hash_join(
        batches(probe), batches(build), probe_batch=_probe_left(outer), budget=budget, spill=spill
    )
    expected = [(k, (v, w)) for k, v in probe for k2, w in build if k == k2]
    keys = {k for k, _ in build}
    if outer:
        expected += [(k, (v, None)) for k, v in probe if k not in keys]
    assert sorted(joined, key=repr) == sorted(expected, key=repr)
    spill.close()


@settings(max_examples=40, deadline=None)
@given(data=st.lists(st.integers(-50, 50), max_size=400), budget=budgets, reverse=st.booleans())
def test_external_sort_is_stable(
    tmp_path_factory: pytest.TempPathFactory, data: list[int], budget: int, reverse: bool
) -> None:
    spill = SpillArea(str(tmp_path_factory.mktemp("sort")))
    tagged = list(enumerate(data))  # (position, value): stability is visible
    out = list(
        external_sort(
            batches(tagged), operator.itemgetter(1), reverse=reverse, budget=budget, spill=spill
        )
    )
    assert out == sorted(tagged, key=operator.itemgetter(1), reverse=reverse)
    spill.close()


def test_size_estimates(tmp_path: Path) -> None:
    assert record_size(("word", 1)) > record_size("word")
    assert record_size({"a": [1, 2]}) > 0
    assert batch_size([]) == 0
    assert batch_size(["x" * 1000] * 10) > 10_000


@settings(max_examples=40, deadline=None)
@given(
    runs=st.lists(st.lists(st.integers(-9, 9), max_size=30), max_size=12), fan_in=st.integers(1, 4)
)
def test_merge_runs_in_several_passes_is_stable(
    tmp_path_factory: pytest.TempPathFactory, runs: list[list[int]], fan_in: int
) -> None:
    spill = SpillArea(str(tmp_path_factory.mktemp("merge")))
    tagged = [
        sorted(((v, (i, j)) for j, v in enumerate(run)), key=operator.itemgetter(0))
        for i, run in enumerate(runs)
    ]
    merged = list(
        merge_runs(
            [iter(t) for t in tagged],
            operator.itemgetter(0),
            reverse=False,
            fan_in=fan_in,
            spill=spill,
        )
    )
    everything = [x for t in tagged for x in t]
    assert merged == sorted(everything, key=operator.itemgetter(0))
    spill.close()
