"""read_table: typed CSV files as Arrow tables, split on line boundaries; bad input."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.dataflow import MalformedRecordError, MissingLibraryError, Session
from distsys.errors import InvalidArgumentError, MissingDependencyError

pa = pytest.importorskip("pyarrow")

SALES = {"customer": "int64", "count": "int64"}


def write(path: Path, text: str) -> str:
    path.write_bytes(text.encode())
    return str(path)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(-(2**40), 2**40), st.one_of(st.none(), st.integers(0, 999))),
        max_size=60,
    ),
    split_size=st.integers(1, 300),
    header=st.booleans(),
    crlf=st.booleans(),
)
def test_every_row_is_read_once_in_order_whatever_the_splits(
    inline: Session,
    rows: list[tuple[int, int | None]],
    split_size: int,
    header: bool,
    crlf: bool,
) -> None:
    end = "\r\n" if crlf else "\n"
    lines = ["customer,count"] if header else []
    lines += [f"{a},{'' if b is None else b}" for a, b in rows]
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "sales.csv", "".join(line + end for line in lines))
        table = inline.read_table(path, header=header, schema=SALES, split_size=split_size)
        got = table.to_pylist()
        assert table.count() == len(rows)
    assert got == [{"customer": a, "count": b} for a, b in rows]


def test_a_header_picks_the_schema_columns_in_schema_order(inline: Session, tmp_path: Path) -> None:
    path = write(tmp_path / "people.csv", "name,age,city\nada,36,london\nalan,41,wilmslow\n")
    table = inline.read_table(path, schema={"city": "string", "age": "int32"})
    assert table.columns == ["city", "age"]
    assert str(table.schema.field("age").type) == "int32"
    assert table.to_pylist() == [{"city": "london", "age": 36}, {"city": "wilmslow", "age": 41}]


def test_without_a_schema_the_types_are_inferred_from_the_header_file(
    inline: Session, tmp_path: Path
) -> None:
    path = write(tmp_path / "t.csv", "id,score,name\n1,2.5,x\n2,3.0,y\n")
    table = inline.read_table(path)
    assert [str(f.type) for f in table.schema] == ["int64", "double", "string"]
    assert table.collect().num_rows == 2


def test_globs_and_several_files_become_partitions(inline: Session, tmp_path: Path) -> None:
    for i in range(3):
        write(tmp_path / f"part-{i}.csv", "customer,count\n" + f"{i},{i * 10}\n" * 5)
    table = inline.read_table(str(tmp_path / "part-*.csv"), schema=SALES)
    assert table.partitions == 3
    assert table.count() == 15
    assert sum(r["count"] for r in table.to_pylist()) == 5 * (0 + 10 + 20)


def test_a_value_of_another_type_names_file_and_line(inline: Session, tmp_path: Path) -> None:
    text = "customer,count\n" + "".join(f"{i},{i}\n" for i in range(1, 500))
    text += "500,five hundred\n501,1\n"
    path = write(tmp_path / "sales.csv", text)
    table = inline.read_table(path, schema=SALES, split_size=700)
    with pytest.raises(MalformedRecordError) as caught:
        table.collect()
    assert caught.value.path == path
    assert caught.value.line == 501
    assert "five hundred" in caught.value.reason
    assert "int64" in caught.value.reason


def test_a_row_with_too_few_fields_names_file_and_line(inline: Session, tmp_path: Path) -> None:
    path = write(tmp_path / "sales.csv", "1,2\n3,4\n5\n6,7\n")
    with pytest.raises(MalformedRecordError) as caught:
        inline.read_table(path, header=False, schema=SALES).collect()
    assert (caught.value.path, caught.value.line) == (path, 3)


def test_errors_skip_drops_bad_lines_and_counts_them(inline: Session, tmp_path: Path) -> None:
    path = write(tmp_path / "sales.csv", "1,2\nx,4\n5\n6,7\n8,9,10\n11,12\n")
    table = inline.read_table(path, header=False, schema=SALES, errors="skip")
    assert table.to_pylist() == [
        {"customer": 1, "count": 2},
        {"customer": 6, "count": 7},
        {"customer": 11, "count": 12},
    ]
    job = inline.statistics().jobs[-1]
    assert sum(stage.skipped for stage in job.stages) == 3
    assert any(":2:" in problem for problem in job.problems)


def test_a_schema_column_missing_from_the_header_fails_before_work(
    inline: Session, tmp_path: Path
) -> None:
    path = write(tmp_path / "sales.csv", "customer,count\n1,2\n")
    jobs = len(inline.statistics().jobs)
    with pytest.raises(InvalidArgumentError, match=r"'amount'.*customer, count"):
        inline.read_table(path, schema={"amount": "int64"})
    assert len(inline.statistics().jobs) == jobs


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"schema": {"count": "int65"}}, r"int65.*'int64'"),
        ({"schema": {}}, "non-empty dict"),
        ({"schema": SALES, "format": "parquet"}, "'csv'"),
        ({"header": False}, "no header"),
        ({"schema": SALES, "errors": "ignore"}, "'fail' or 'skip'"),
        ({"schema": SALES, "delimiter": ";;"}, "one character"),
    ],
)
def test_bad_options_name_the_field_and_what_is_accepted(
    inline: Session, tmp_path: Path, options: dict[str, object], message: str
) -> None:
    path = write(tmp_path / "sales.csv", "customer,count\n1,2\n")
    with pytest.raises(InvalidArgumentError, match=message):
        inline.read_table(path, **options)  # type: ignore[arg-type]


def test_a_missing_pyarrow_names_the_extra(
    inline: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "sales.csv", "customer,count\n1,2\n")
    for name in ("pyarrow", "pyarrow.compute", "pyarrow.csv"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingLibraryError) as caught:
        inline.read_table(path, schema=SALES)
    assert isinstance(caught.value, MissingDependencyError)
    assert isinstance(caught.value, ImportError)
    assert caught.value.extra == "columnar"
    assert "pip install 'distsys[columnar]'" in str(caught.value)
    assert "read_table()" in str(caught.value)


def test_importing_the_dataflow_package_does_not_import_pyarrow() -> None:
    code = "import sys, distsys.dataflow; print('pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_an_empty_field_is_null_and_a_quoted_empty_text_is_empty(
    inline: Session, tmp_path: Path
) -> None:
    path = write(tmp_path / "t.csv", 'id,name,score\n1,,\n2,"",7\n,NA,8\n')
    table = inline.read_table(path, schema={"id": "int64", "name": "string", "score": "int64"})
    assert table.to_pylist() == [
        {"id": 1, "name": None, "score": None},
        {"id": 2, "name": "", "score": 7},
        {"id": None, "name": "NA", "score": 8},
    ]


def test_each_file_is_read_by_its_own_header(inline: Session, tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "customer,count\n1,10\n")
    write(tmp_path / "b.csv", "count,extra,customer\n20,x,2\n")
    table = inline.read_table(str(tmp_path), schema=SALES)
    assert table.to_pylist() == [{"customer": 1, "count": 10}, {"customer": 2, "count": 20}]
