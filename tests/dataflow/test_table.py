"""TableDataset: joins, aggregations, select / filter and conversions against plain Python."""

from __future__ import annotations

import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.dataflow import Dataset, Session, TableDataset
from distsys.errors import ArgumentTypeError, InvalidArgumentError

pa = pytest.importorskip("pyarrow")
pc = pytest.importorskip("pyarrow.compute")

examples = settings(max_examples=30, deadline=None)
SALES = {"customer": "int64", "count": "int64"}
CUSTOMERS = {"customer": "int64", "country": "string"}
keys = st.one_of(st.none(), st.integers(-3, 12))
sales_rows = st.lists(st.tuples(keys, st.one_of(st.none(), st.integers(-50, 50))), max_size=40)
customer_rows = st.lists(st.tuples(keys, st.sampled_from(["fr", "de", "it", None])), max_size=15)


def cell(value: object) -> str:
    return "" if value is None else str(value)


def csv_file(directory: str, name: str, header: str, rows: list[tuple[Any, ...]]) -> str:
    path = Path(directory) / name
    body = "".join(",".join(map(cell, row)) + "\n" for row in rows)
    path.write_text(f"{header}\n{body}")
    return str(path)


def tables(
    session: Session, sales: list[tuple[Any, Any]], customers: list[tuple[Any, Any]]
) -> Iterator[tuple[TableDataset, TableDataset]]:
    with tempfile.TemporaryDirectory() as tmp:
        left = csv_file(tmp, "sales.csv", "customer,count", sales)
        right = csv_file(tmp, "customers.csv", "customer,country", customers)
        yield (
            session.read_table(left, schema=SALES, split_size=64),
            session.read_table(right, schema=CUSTOMERS, split_size=32),
        )


def reference_join(
    sales: list[tuple[Any, Any]], customers: list[tuple[Any, Any]], how: str
) -> Counter[tuple[Any, ...]]:
    """The SQL join, by hand: null keys match nothing."""
    countries = defaultdict(list)
    for key, country in customers:
        if key is not None:
            countries[key].append(country)
    rows: Counter[tuple[Any, ...]] = Counter()
    for key, count in sales:
        found = countries.get(key, []) if key is not None else []
        for country in found:
            rows[(key, count, country)] += 1
        if not found and how == "left":
            rows[(key, count, None)] += 1
    return rows


@examples
@given(
    sales=sales_rows,
    customers=customer_rows,
    how=st.sampled_from(["inner", "left"]),
    broadcast=st.booleans(),
    partitions=st.integers(1, 4),
)
def test_join_matches_plain_python(
    inline: Session,
    sales: list[tuple[Any, Any]],
    customers: list[tuple[Any, Any]],
    how: str,
    broadcast: bool,
    partitions: int,
) -> None:
    for left, right in tables(inline, sales, customers):
        joined = left.join(
            right,
            on="customer",
            how=how,  # type: ignore[arg-type]
            broadcast=broadcast,
            partitions=None if broadcast else partitions,
        )
        assert joined.columns == ["customer", "count", "country"]
        got = Counter(joined.to_rows().collect())
    assert got == reference_join(sales, customers, how)


@examples
@given(sales=sales_rows, customers=customer_rows, broadcast=st.booleans())
def test_join_then_group_by_sums_per_country(
    inline: Session,
    sales: list[tuple[Any, Any]],
    customers: list[tuple[Any, Any]],
    broadcast: bool,
) -> None:
    for left, right in tables(inline, sales, customers):
        joined = left.join(right, on="customer", broadcast=broadcast)
        result = joined.group_by("country").agg(total=("count", "sum"), n=("count", "count"))
        got = {row["country"]: (row["total"], row["n"]) for row in result.to_pylist()}
    expected: dict[str, list[int]] = {}
    for (_, count, country), times in reference_join(sales, customers, "inner").items():
        values = [count] * times if count is not None else []
        expected.setdefault(country, []).extend(values)
    assert got == {c: (sum(v) if v else None, len(v)) for c, v in expected.items()}


@examples
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", None]),
            st.integers(0, 2),
            st.one_of(st.none(), st.integers(-1000, 1000)),
        ),
        max_size=50,
    ),
    partitions=st.integers(1, 4),
)
def test_group_by_aggregations_match_plain_python(
    inline: Session, rows: list[tuple[Any, int, Any]], partitions: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = csv_file(tmp, "t.csv", "k,j,v", rows)
        schema = {"k": "string", "j": "int64", "v": "int64"}
        table = inline.read_table(path, schema=schema, split_size=40)
        result = table.group_by("k", "j").agg(
            ("v", "sum"),
            ("v", "count"),
            lo=("v", "min"),
            hi=("v", "max"),
            avg=("v", "mean"),
            partitions=partitions,
        )
        assert result.columns == ["k", "j", "v_sum", "v_count", "lo", "hi", "avg"]
        got = {(r["k"], r["j"]): r for r in result.to_pylist()}
    groups: dict[tuple[Any, int], list[int]] = defaultdict(list)
    for k, j, v in rows:
        groups[(k, j)].extend([] if v is None else [v])
    assert set(got) == set(groups)
    for key, values in groups.items():
        row = got[key]
        assert row["v_sum"] == (sum(values) if values else None)
        assert row["v_count"] == len(values)
        assert row["lo"] == (min(values) if values else None)
        assert row["hi"] == (max(values) if values else None)
        if values:
            assert row["avg"] == pytest.approx(sum(values) / len(values))
        else:
            assert row["avg"] is None


def test_join_on_differently_named_keys_with_a_clashing_column(
    inline: Session, tmp_path: Path
) -> None:
    left = csv_file(str(tmp_path), "l.csv", "id,name", [(1, "x"), (2, "y"), (3, "z")])
    right = csv_file(str(tmp_path), "r.csv", "ref,name", [(1, "one"), (3, "three"), (3, "tri")])
    a = inline.read_table(left, schema={"id": "int64", "name": "string"})
    b = inline.read_table(right, schema={"ref": "int64", "name": "string"})
    for broadcast in (True, False):
        joined = a.join(b, on="id", right_on="ref", how="left", broadcast=broadcast)
        assert joined.columns == ["id", "name", "name_right"]
        assert sorted(joined.to_rows().collect(), key=str) == sorted(
            [(1, "x", "one"), (2, "y", None), (3, "z", "three"), (3, "z", "tri")], key=str
        )


def test_a_small_other_side_is_broadcast_and_a_large_one_shuffled(
    inline: Session, tmp_path: Path
) -> None:
    left = inline.read_table(csv_file(str(tmp_path), "l.csv", "customer,count", []), schema=SALES)
    right = inline.read_table(
        csv_file(str(tmp_path), "r.csv", "customer,country", []), schema=CUSTOMERS
    )
    assert "(broadcast)" in left.join(right, on="customer").explain()
    shuffled = left.join(right, on="customer", partitions=3)
    assert "(broadcast)" not in shuffled.explain()
    assert shuffled.partitions == 3
    assert left.join(right, on="customer").to_pylist() == []


def test_select_filter_and_conversions(inline: Session, tmp_path: Path) -> None:
    rows = [(i, i * 10) for i in range(10)]
    table = inline.read_table(
        csv_file(str(tmp_path), "s.csv", "customer,count", rows), schema=SALES, split_size=16
    )
    big = table.filter(pc.field("count") >= 50).select("count")
    assert big.columns == ["count"]
    assert big.to_pylist() == [{"count": c} for _, c in rows[5:]]
    assert big.count() == 5
    assert big.collect().column("count").to_pylist() == [50, 60, 70, 80, 90]
    assert big.to_rows().collect() == [(50,), (60,), (70,), (80,), (90,)]
    as_dicts: Dataset[Any] = table.to_rows("dict")
    assert as_dicts.map(lambda r: r["count"]).reduce(lambda a, b: a + b) == 450
    assert table.cache().count() == 10
    assert "select" in big.explain()
    assert repr(big) == f"TableDataset(count: int64; partitions={big.partitions})"


def test_the_columnar_join_runs_on_worker_processes(pool: Session, tmp_path: Path) -> None:
    sales = [(i % 7, i) for i in range(200)]
    customers = [(i, f"c{i % 3}") for i in range(5)]
    left = pool.read_table(
        csv_file(str(tmp_path), "s.csv", "customer,count", sales), schema=SALES, split_size=300
    )
    right = pool.read_table(
        csv_file(str(tmp_path), "c.csv", "customer,country", customers), schema=CUSTOMERS
    )
    for broadcast in (True, False):
        joined = left.join(right, on="customer", broadcast=broadcast)
        totals = joined.group_by("country").agg(total=("count", "sum")).to_pylist()
        expected: Counter[str] = Counter()
        for key, count in sales:
            if key < 5:
                expected[f"c{key % 3}"] += count
        assert {r["country"]: r["total"] for r in totals} == dict(expected)


# ------------------------------------------------------------------ bad input


@pytest.fixture
def pair(inline: Session, tmp_path: Path) -> tuple[TableDataset, TableDataset]:
    left = csv_file(str(tmp_path), "l.csv", "customer,count", [(1, 2)])
    right = csv_file(str(tmp_path), "r.csv", "customer,country", [(1, "fr")])
    return (
        inline.read_table(left, schema=SALES),
        inline.read_table(right, schema={"customer": "int32", "country": "string"}),
    )


def test_join_on_a_missing_column_names_the_columns(
    pair: tuple[TableDataset, TableDataset],
) -> None:
    left, right = pair
    with pytest.raises(InvalidArgumentError, match=r"'id'.*customer, count"):
        left.join(right, on="id")


def test_join_keys_of_different_types_fail_before_work(
    pair: tuple[TableDataset, TableDataset],
) -> None:
    left, right = pair
    with pytest.raises(InvalidArgumentError, match=r"int32.*int64"):
        left.join(right, on="customer")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda t: t.join(t, on="customer", how="outer"), InvalidArgumentError, "'inner' or"),
        (lambda t: t.join(t.dataset, on="customer"), ArgumentTypeError, "TableDataset"),
        (lambda t: t.group_by("count").agg(x=("count", "median")), InvalidArgumentError, "mean"),
        (lambda t: t.group_by("count").agg(x=("nope", "sum")), InvalidArgumentError, "customer"),
        (lambda t: t.group_by("count").agg(), InvalidArgumentError, "at least one"),
        (lambda t: t.group_by("nope"), InvalidArgumentError, "customer, count"),
        (lambda t: t.group_by(), InvalidArgumentError, "at least one column"),
        (lambda t: t.select("nope"), InvalidArgumentError, "customer, count"),
        (lambda t: t.filter(lambda r: r), ArgumentTypeError, "pyarrow.compute expression"),
        (lambda t: t.filter(pc.field("nope") > 1), InvalidArgumentError, "customer, count"),
        (lambda t: t.to_rows("list"), InvalidArgumentError, "'tuple' or 'dict'"),
        (
            lambda t: t.join(t, on="customer", broadcast=True, partitions=2),
            InvalidArgumentError,
            "partitions",
        ),
    ],
)
def test_bad_arguments_name_the_field_and_what_is_accepted(
    pair: tuple[TableDataset, TableDataset], call: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call(pair[0])


def test_sum_of_a_text_column_is_refused(pair: tuple[TableDataset, TableDataset]) -> None:
    with pytest.raises(InvalidArgumentError, match="numeric"):
        pair[1].group_by("customer").agg(("country", "sum"))
