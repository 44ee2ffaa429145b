"""The Arrow helpers: hash partitioning of tables, and the lookup join against pyarrow's."""

from __future__ import annotations

import pickle
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.dataflow import MissingLibraryError
from distsys.dataflow._arrow import partition_ids, split_by
from distsys.dataflow._table_ops import join_tables

pa = pytest.importorskip("pyarrow")

examples = settings(max_examples=60, deadline=None)
int_keys = st.lists(st.one_of(st.none(), st.integers(-(2**40), 2**40)), max_size=60)
text_keys = st.lists(st.one_of(st.none(), st.text(max_size=3)), max_size=60)


@examples
@given(keys=st.one_of(int_keys, text_keys), partitions=st.integers(1, 6))
def test_split_by_cuts_rows_into_pieces_by_key(keys: list[Any], partitions: int) -> None:
    kind = pa.string() if any(isinstance(k, str) for k in keys) else pa.int64()
    table = pa.table({"k": pa.array(keys, kind), "row": pa.array(range(len(keys)), pa.int64())})
    pieces = split_by(table, ["k"], partitions)
    seen: dict[Any, int] = {}
    rows = []
    for partition, piece in pieces:
        assert 0 <= partition < partitions
        assert piece.num_rows > 0
        for row in piece.to_pylist():
            assert seen.setdefault(row["k"], partition) == partition  # a key in one place
            rows.append(row["row"])
    assert sorted(rows) == list(range(len(keys)))
    assert [p for p, _ in pieces] == sorted({p for p, _ in pieces})


@examples
@given(keys=st.lists(st.integers(-1000, 1000), min_size=1, max_size=40))
def test_equal_keys_of_both_int_widths_go_to_the_same_partition(keys: list[int]) -> None:
    wide = pa.table({"k": pa.array(keys, pa.int64()), "j": pa.array(keys, pa.int64())})
    narrow = pa.table({"k": pa.array(keys, pa.int32()), "j": pa.array(keys, pa.int16())})
    for names in (["k"], ["k", "j"]):
        assert partition_ids(wide, names, 7).tolist() == partition_ids(narrow, names, 7).tolist()


@examples
@given(
    left=st.lists(st.one_of(st.none(), st.integers(-5, 30)), max_size=40),
    right=st.lists(st.one_of(st.none(), st.integers(-5, 30)), max_size=20),
    spread=st.sampled_from([1, 10**9]),
    text=st.booleans(),
    how=st.sampled_from(["inner", "left"]),
)
def test_the_lookup_join_equals_pyarrows_hash_join(
    left: list[Any], right: list[Any], spread: int, text: bool, how: str
) -> None:
    """Distinct right keys take the lookup path (dense ids, sparse ids, text keys)."""

    def key(value: int | None) -> Any:
        if value is None:
            return None
        return f"k{value}" if text else value * spread

    distinct = list(dict.fromkeys(right))
    kind = pa.string() if text else pa.int64()
    a = pa.table(
        {"k": pa.array([key(v) for v in left], kind), "v": pa.array(range(len(left)), pa.int64())}
    )
    b = pa.table(
        {
            "k": pa.array([key(v) for v in distinct], kind),
            "w": pa.array([f"w{i}" for i in range(len(distinct))], pa.string()),
        }
    )
    empty = join_tables(a.schema.empty_table(), b.schema.empty_table(), ["k"], ["k"], how, "_r")
    fast = join_tables(a, b, ["k"], ["k"], how, "_r", empty.schema)  # type: ignore[arg-type]
    general = join_tables(a, b, ["k"], ["k"], how, "_r")  # type: ignore[arg-type]
    assert fast.schema == general.schema
    assert rows(fast) == rows(general)


def rows(table: Any) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(row.values()) for row in table.to_pylist())


def test_the_missing_library_error_pickles() -> None:
    error = MissingLibraryError("read_table()", "pyarrow", "columnar")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.operation, copy.library, copy.extra) == ("read_table()", "pyarrow", "columnar")
    assert str(copy) == str(error)
