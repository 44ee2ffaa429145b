"""map_reduce(): the MapReduce paper's model on the dataset engine."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.dataflow import RecordTypeError, Session, map_reduce
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from tests.dataflow import functions as f

lines = st.lists(st.text(alphabet="abc \t", max_size=12), max_size=40)


@settings(max_examples=30, deadline=None)
@given(text=lines, reducers=st.integers(1, 4), combine=st.booleans())
def test_word_count_matches_counter(
    tiny: Session, text: list[str], reducers: int, combine: bool
) -> None:
    inputs = tiny.from_iterable(text, partitions=2)
    combiner = f.total if combine else None
    counts = map_reduce(inputs, f.words, f.total, combiner=combiner, reducers=reducers)
    assert counts.partitions == reducers
    result = counts.collect()
    assert dict(result) == Counter(w for line in text for w in line.split())
    if reducers == 1:  # one reduce task sees every key, in increasing order
        assert [k for k, _ in result] == sorted(k for k, _ in result)


def test_each_reduce_task_sees_its_keys_in_increasing_order(inline: Session) -> None:
    data = inline.from_iterable(["b a c", "a d", "e c b"], partitions=3)
    counts = map_reduce(data, f.words, f.total, reducers=1)
    assert counts.collect() == [("a", 2), ("b", 2), ("c", 2), ("d", 1), ("e", 1)]
    named = map_reduce(data, f.words, f.total, reducers=2, partitioner=f.first_letter)
    # first_letter: ord(k[0]) % 2 -> "b" and "d" in partition 0, the rest in partition 1
    assert named.collect() == [("b", 2), ("d", 1), ("a", 2), ("c", 2), ("e", 1)]


def test_reads_paths_with_a_session(pool: Session, tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("the cat\nthe hat\n")
    counts = map_reduce(path, f.words, f.total, combiner=f.total, session=pool)
    assert sorted(counts.collect()) == [("cat", 1), ("hat", 1), ("the", 2)]
    stages = pool.statistics().jobs[-1].stages
    assert stages[0].name == "read_text → map → combine → partition_and_sort"
    assert stages[1].name == "partition_and_sort → reduce → collect"


def test_bad_arguments(inline: Session) -> None:
    data = inline.from_iterable(["x"])
    with pytest.raises(InvalidArgumentError, match="pass session="):
        map_reduce("in.txt", f.words, f.total)
    with pytest.raises(ArgumentTypeError, match="mapper"):
        map_reduce(data, 3, f.total)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="reducers=0"):
        map_reduce(data, f.words, f.total, reducers=0)
    with pytest.raises(RecordTypeError, match="map_reduce"):
        map_reduce(data, list, f.total).collect()  # emits "x", not a pair
