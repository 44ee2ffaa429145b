"""Every transformation and action against plain Python, on Hypothesis-generated data.

Each property runs on two in-process sessions: ``inline`` (ample memory) and ``tiny``
(a 2,000-byte memory limit, so every shuffle spills and merges). The same engine code
runs in worker processes; ``test_local.py`` checks that path.
"""

from __future__ import annotations

import operator
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.dataflow import Dataset, EmptyDatasetError, Session
from tests.dataflow import functions as f

ints = st.lists(st.integers(-20, 20), max_size=60)
parts = st.integers(1, 4)
examples = settings(max_examples=25, deadline=None)


@pytest.fixture(scope="module", params=["inline", "tiny"])
def engine(request: pytest.FixtureRequest) -> Session:
    session: Session = request.getfixturevalue(request.param)
    return session


def dataset(session: Session, data: list[Any], partitions: int) -> Dataset[Any]:
    return session.from_iterable(data, partitions=partitions)


def chunks(data: list[Any], n: int) -> list[list[Any]]:
    bounds = [len(data) * i // n for i in range(n + 1)]
    return [data[bounds[i] : bounds[i + 1]] for i in range(n)]


def grouped(pairs: list[tuple[Any, Any]]) -> dict[Any, list[Any]]:
    groups: dict[Any, list[Any]] = defaultdict(list)
    for key, value in pairs:
        groups[key].append(value)
    return {k: sorted(v) for k, v in groups.items()}


# ------------------------------------------------------------------ narrow


@examples
@given(data=ints, n=parts)
def test_narrow_transformations_fuse_and_keep_order(
    engine: Session, data: list[int], n: int
) -> None:
    ds = dataset(engine, data, n)
    assert ds.map(f.double).collect() == [2 * x for x in data]
    assert ds.filter(f.is_even).collect() == [x for x in data if x % 2 == 0]
    assert ds.flat_map(f.upto).collect() == [y for x in data for y in range(x % 4)]
    chained = ds.map(f.double).filter(f.is_even).flat_map(f.upto).map(f.neg)
    assert chained.collect() == [-y for x in data for y in range(2 * x % 4)]
    assert ds.map_partitions(f.partition_sum).collect() == [sum(c) for c in chunks(data, n)]


@examples
@given(data=ints, n=parts)
def test_pair_helpers(engine: Session, data: list[int], n: int) -> None:
    keyed = dataset(engine, data, n).key_by(f.mod7)
    assert keyed.collect() == [(x % 7, x) for x in data]
    assert keyed.map_values(f.double).collect() == [(x % 7, 2 * x) for x in data]
    assert keyed.keys().collect() == [x % 7 for x in data]
    assert keyed.values().collect() == data


@examples
@given(data=ints, other=ints, n=parts)
def test_union_concatenates_partitions(
    engine: Session, data: list[int], other: list[int], n: int
) -> None:
    a, b = dataset(engine, data, n), dataset(engine, other, 2)
    union = a.union(b, a)
    assert union.partitions == 2 * n + 2
    assert union.collect() == data + other + data
    assert union.map(f.double).count() == 2 * len(data) + len(other)


# ------------------------------------------------------------------ wide


@examples
@given(data=ints, n=parts, out=parts)
def test_reduce_by_key(engine: Session, data: list[int], n: int, out: int) -> None:
    pairs = [(x % 5, x) for x in data]
    expected = {k: sum(v) for k, v in grouped(pairs).items()}
    keyed = dataset(engine, data, n).map(f.pair_mod5)
    fast = keyed.reduce_by_key(operator.add, partitions=out)
    generic = keyed.reduce_by_key(f.add)
    assert fast.partitions == out
    assert dict(fast.collect()) == expected
    assert dict(generic.collect()) == expected
    assert len(generic.collect()) == len(expected)


@examples
@given(words=st.lists(st.sampled_from(["a", "b", "cc", "é", "\ud800"]), max_size=80), n=parts)
def test_reduce_by_key_counts_words_like_counter(engine: Session, words: list[str], n: int) -> None:
    counts = dataset(engine, words, n).map(f.pair_one).reduce_by_key(operator.add)
    assert dict(counts.collect()) == Counter(words)


@examples
@given(data=ints, n=parts)
def test_aggregate_by_key_folds_into_a_fresh_zero_per_key(
    engine: Session, data: list[int], n: int
) -> None:
    keyed = dataset(engine, data, n).map(f.pair_mod5)
    aggregated = keyed.aggregate_by_key([], f.append, f.concat).collect()
    assert {k: sorted(v) for k, v in aggregated} == grouped([(x % 5, x) for x in data])
    sums = keyed.aggregate_by_key(100, f.add, f.add).collect()
    per_key = Counter(x % 5 for x in data)
    assert sorted(k for k, _ in sums) == sorted(per_key)
    # Each map task starts each key from zero once, so the zero is added once per task.
    for key, value in sums:
        plain = sum(x for x in data if x % 5 == key)
        assert (value - plain) % 100 == 0
        assert 100 <= value - plain <= 100 * n


@examples
@given(data=ints, n=parts)
def test_group_by_key(engine: Session, data: list[int], n: int) -> None:
    groups = dataset(engine, data, n).map(f.pair_mod5).group_by_key(partitions=2).collect()
    assert {k: sorted(v) for k, v in groups} == grouped([(x % 5, x) for x in data])
    assert len(groups) == len({x % 5 for x in data})


keys = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([1.0, 2.5, True, False, None, b"x", "x", "", (1, "a"), (1.0, "a")]),
    st.text(max_size=2),
)


@examples
@given(data=st.lists(keys, max_size=60), n=parts)
def test_count_by_value_and_distinct_group_python_equal_keys(
    engine: Session, data: list[Any], n: int
) -> None:
    ds = dataset(engine, data, n)
    counted = ds.count_by_value().collect()
    assert dict(counted) == Counter(data)
    assert len(counted) == len(Counter(data))  # 1, 1.0 and True are one key, as in a dict
    distinct = ds.distinct(partitions=3).collect()
    assert len(distinct) == len(set(data))
    assert set(distinct) == set(data)


@examples
@given(
    left=st.lists(st.tuples(st.integers(0, 6), st.integers()), max_size=40),
    right=st.lists(st.tuples(st.integers(0, 6), st.text(max_size=2)), max_size=20),
    n=parts,
    broadcast=st.booleans(),
)
def test_join_and_left_join(
    engine: Session,
    left: list[tuple[int, int]],
    right: list[tuple[int, str]],
    n: int,
    broadcast: bool,
) -> None:
    a, b = dataset(engine, left, n), dataset(engine, right, 2)
    inner = sorted((k, (v, w)) for k, v in left for k2, w in right if k == k2)
    assert sorted(a.join(b, broadcast=broadcast).collect()) == inner
    swapped = sorted((k, (w, v)) for k, (v, w) in inner)
    assert sorted(b.join(a, broadcast=broadcast).collect()) == swapped
    keys_right = {k for k, _ in right}
    outer = inner + [(k, (v, None)) for k, v in left if k not in keys_right]
    got = a.left_join(b, broadcast=broadcast).collect()
    assert sorted(got, key=repr) == sorted(outer, key=repr)


def test_join_broadcasts_small_inputs_by_default(inline: Session) -> None:
    a = inline.from_iterable([(1, "a")])
    b = inline.from_iterable([(1, "b")])
    assert "broadcast" in a.join(b).explain()
    assert "broadcast" not in a.join(b, partitions=2).explain()
    assert "broadcast" not in a.join(b.group_by_key()).explain()  # size unknown


@examples
@given(data=ints, n=parts, out=parts, ascending=st.booleans())
def test_sort_by_is_global_and_stable(
    engine: Session, data: list[int], n: int, out: int, ascending: bool
) -> None:
    ds = dataset(engine, data, n)
    expected = sorted(data, key=f.mod7, reverse=not ascending)
    ordered = ds.sort_by(f.mod7, ascending=ascending, partitions=out)
    assert ordered.partitions == out
    assert ordered.collect() == expected
    assert ds.sort_by(f.neg).collect() == sorted(data, reverse=True)


@examples
@given(data=ints, n=parts, out=parts)
def test_repartition_spreads_records_evenly(
    engine: Session, data: list[int], n: int, out: int
) -> None:
    spread = dataset(engine, data, n).repartition(out)
    assert spread.partitions == out
    assert sorted(spread.collect()) == sorted(data)
    sizes = spread.map_partitions(f.partition_size).collect()
    assert len(sizes) == out
    assert max(sizes) - min(sizes) <= n  # each of the n map tasks deals round robin


# ------------------------------------------------------------------ actions


@examples
@given(data=ints, n=parts, k=st.integers(0, 70))
def test_actions(engine: Session, data: list[int], n: int, k: int) -> None:
    ds = dataset(engine, data, n)
    assert ds.count() == len(data)
    assert ds.take(k) == data[:k]
    assert ds.top(k) == sorted(data, reverse=True)[:k]
    assert ds.top(k, key=f.neg) == sorted(data)[:k]
    if data:
        assert ds.reduce(operator.add) == sum(data)
        assert ds.first() == data[0]
    else:
        with pytest.raises(EmptyDatasetError, match=r"reduce\(\) of an empty dataset"):
            ds.reduce(operator.add)
        with pytest.raises(EmptyDatasetError):
            ds.first()


def test_take_reads_few_partitions(inline: Session) -> None:
    ds = inline.from_iterable(range(100), partitions=10)
    assert ds.take(3) == [0, 1, 2]
    assert inline.statistics().jobs[-1].stages[0].tasks == 1
    assert ds.take(25) == list(range(25))
    # 1 partition, then 4 more: the first 25 records live in the first 3 partitions.
    assert [j.stages[0].tasks for j in inline.statistics().jobs[-2:]] == [1, 4]


def test_cache_computes_once_and_unpersist_drops_it(inline: Session) -> None:
    ds = inline.from_iterable(range(50), partitions=5).map(f.double).cache()
    assert ds.cache() is ds
    assert ds.count() == 50
    first = inline.statistics().jobs[-1]
    assert [s.output for s in first.stages] == ["cache", "result"]
    assert inline.statistics().cached >= 1
    assert ds.map(f.neg).collect() == [-2 * x for x in range(50)]
    assert [s.output for s in inline.statistics().jobs[-1].stages] == ["result"]
    ds.unpersist()
    assert ds.count() == 50  # computed and kept again
    assert [s.output for s in inline.statistics().jobs[-1].stages] == ["cache", "result"]


def test_shuffle_output_is_reused_by_later_jobs(inline: Session) -> None:
    counts = inline.from_iterable(list("abracadabra"), partitions=3).count_by_value()
    assert dict(counts.collect()) == Counter("abracadabra")
    assert len(inline.statistics().jobs[-1].stages) == 2
    assert counts.count() == 5
    assert len(inline.statistics().jobs[-1].stages) == 1  # the shuffle's map stage is skipped


def fake_records() -> Iterator[int]:
    yield from range(3)


def test_from_iterable_takes_any_iterable_but_not_a_string(inline: Session) -> None:
    assert inline.from_iterable(fake_records()).collect() == [0, 1, 2]
    assert inline.from_iterable(range(5), partitions=5).partitions == 5
    with pytest.raises(TypeError, match="not one str"):
        inline.from_iterable("text")  # type: ignore[arg-type]
