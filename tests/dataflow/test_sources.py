"""Reading files: byte-range splits on line boundaries, paths, bad lines, JSONL and CSV."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.dataflow import MalformedRecordError, Session
from distsys.dataflow._sources import TextSplit, _blocks, expand_paths, plan_splits
from distsys.errors import InvalidArgumentError

line_bytes = st.lists(
    st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
    max_size=30,
)


def split_lines(data: bytes, split: TextSplit) -> list[bytes]:
    return [line for _, block in _blocks(split) for line in block.split(b"\n")[:-1]] + [
        block.rsplit(b"\n", 1)[-1]
        for _, block in list(_blocks(split))[-1:]
        if not block.endswith(b"\n")
    ]


@settings(max_examples=200, deadline=None)
@given(lines=line_bytes, trailing=st.booleans(), size=st.integers(1, 40))
def test_every_line_belongs_to_exactly_one_split(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], trailing: bool, size: int
) -> None:
    data = b"\n".join(lines) + (b"\n" if trailing and lines else b"")
    path = tmp_path_factory.mktemp("split") / "data.txt"
    path.write_bytes(data)
    splits = plan_splits([str(path)], size)
    assert splits[0].start == 0
    assert splits[-1].end == len(data)
    assert all(a.end == b.start for a, b in itertools.pairwise(splits))
    got = [line for split in splits for line in split_lines(data, split)]
    expected = data.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()  # a final line end does not start another line
    assert got == expected


def write(path: Path, text: str | bytes) -> str:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return str(path)


@settings(max_examples=40, deadline=None)
@given(
    lines=st.lists(st.text(alphabet="ab é\r", max_size=8), max_size=30),
    split_size=st.integers(1, 64),
    crlf=st.booleans(),
)
def test_read_text_returns_each_line_once_in_order(
    inline: Session,
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[str],
    split_size: int,
    crlf: bool,
) -> None:
    lines = [line.replace("\r", "") for line in lines]
    end = "\r\n" if crlf else "\n"
    path = write(tmp_path_factory.mktemp("text") / "f.txt", "".join(x + end for x in lines))
    ds = inline.read_text(path, split_size=split_size)
    assert ds.collect() == lines
    assert ds.count() == len(lines)


def test_read_text_splits_files_for_every_worker(inline: Session, tmp_path: Path) -> None:
    big = write(tmp_path / "big.txt", "x\n" * 5_000_000)  # 10 MB
    assert inline.read_text(big).partitions == inline.parallelism
    assert inline.read_text(big, partitions=7).partitions >= 7
    assert inline.read_text(big, split_size="1MB").partitions == 10
    small = write(tmp_path / "small.txt", "a\nb\n")
    assert inline.read_text(small).partitions == 1


def test_paths_globs_and_directories(inline: Session, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    write(tmp_path / "in" / "b.txt", "2\n")
    write(tmp_path / "in" / "a.txt", "1\n")
    write(tmp_path / "in" / "_SUCCESS", "")
    write(tmp_path / "in" / ".hidden", "x\n")
    assert inline.read_text(tmp_path / "in").collect() == ["1", "2"]
    assert inline.read_text(str(tmp_path / "in" / "*.txt")).collect() == ["1", "2"]
    both = [tmp_path / "in" / "b.txt", str(tmp_path / "in" / "a.txt")]
    assert inline.read_text(both).collect() == ["2", "1"]
    assert expand_paths(str(tmp_path / "**" / "*.txt")) == [
        str(tmp_path / "in" / "a.txt"),
        str(tmp_path / "in" / "b.txt"),
    ]


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        ("nope.txt", "paths='nope.txt' is not accepted: expected an existing file"),
        ("*.nothing", "a glob pattern that matches files (it matches none)"),
        ([], "at least one file"),
    ],
)
def test_bad_paths_fail_before_any_work(
    inline: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, paths: object, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    jobs = len(inline.statistics().jobs)
    with pytest.raises(InvalidArgumentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        inline.read_text(paths)  # type: ignore[arg-type]
    assert len(inline.statistics().jobs) == jobs


def test_an_empty_directory_is_refused(inline: Session, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="a directory with files in it"):
        inline.read_text(tmp_path)


def test_bad_options(inline: Session, tmp_path: Path) -> None:
    path = write(tmp_path / "f.txt", "a\n")
    with pytest.raises(InvalidArgumentError, match="errors='ignore'"):
        inline.read_text(path, errors="ignore")
    with pytest.raises(InvalidArgumentError, match="an ASCII-compatible encoding"):
        inline.read_text(path, encoding="utf-16")
    with pytest.raises(InvalidArgumentError, match="a known text encoding"):
        inline.read_text(path, encoding="klingon")
    with pytest.raises(InvalidArgumentError, match="split_size"):
        inline.read_text(path, split_size="lots")


BAD_UTF8 = b"good\n\xff\xfe bad\nalso good\n\xc3\x28\nend"


@pytest.mark.parametrize("split_size", [3, 1000])
def test_invalid_utf8_fails_naming_file_and_line(
    inline: Session, tmp_path: Path, split_size: int
) -> None:
    path = write(tmp_path / "bad.txt", BAD_UTF8)
    with pytest.raises(MalformedRecordError) as caught:
        inline.read_text(path, split_size=split_size).collect()
    assert caught.value.path == path
    assert caught.value.line == 2
    assert f"{path}:2: not valid utf-8" in str(caught.value)
    assert "errors='skip'" in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("split_size", [3, 1000])
def test_invalid_utf8_lines_can_be_skipped_and_counted(
    inline: Session, tmp_path: Path, split_size: int
) -> None:
    path = write(tmp_path / "bad.txt", BAD_UTF8)
    ds = inline.read_text(path, split_size=split_size, errors="skip")
    assert ds.collect() == ["good", "also good", "end"]
    job = inline.statistics().jobs[-1]
    assert job.skipped == 2
    assert job.problems == (
        f"{path}:2: not valid utf-8: invalid start byte at byte 0",
        f"{path}:4: not valid utf-8: invalid continuation byte at byte 0",
    )


def test_jsonl_records_and_a_malformed_line(inline: Session, tmp_path: Path) -> None:
    good = [{"a": 1}, [1, 2], "x", None]
    text = "\n".join(json.dumps(r) for r in good[:2]) + "\n\n{broken\n"
    text += "\n".join(json.dumps(r) for r in good[2:]) + "\n"
    path = write(tmp_path / "r.jsonl", text)
    with pytest.raises(MalformedRecordError, match=r"r\.jsonl:4: invalid JSON"):
        inline.read_jsonl(path).collect()
    assert inline.read_jsonl(path, errors="skip").collect() == good
    assert inline.statistics().jobs[-1].skipped == 1


def test_csv_with_a_header_across_splits(inline: Session, tmp_path: Path) -> None:
    rows = [{"id": str(i), "name": f"n,{i}"} for i in range(50)]
    text = "id,name\n" + "".join(f'{r["id"]},"{r["name"]}"\n' for r in rows)
    path = write(tmp_path / "t.csv", text)
    ds = inline.read_csv(path, split_size=40)
    assert ds.partitions > 5
    assert ds.collect() == rows
    plain = inline.read_csv(path, header=False, split_size=40).collect()
    assert plain[0] == ["id", "name"]
    assert plain[1:] == [[r["id"], r["name"]] for r in rows]


def test_csv_rows_of_the_wrong_width_are_malformed(inline: Session, tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "a,b\n1,2\n3\n4,5\n")
    with pytest.raises(MalformedRecordError, match=r"t\.csv:3: invalid CSV: 1 fields"):
        inline.read_csv(path).collect()
    assert inline.read_csv(path, errors="skip").collect() == [
        {"a": "1", "b": "2"},
        {"a": "4", "b": "5"},
    ]


def test_multiline_csv_is_read_whole(inline: Session, tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", 'k,v\n1,"two\nlines"\n2,x\n')
    ds = inline.read_csv(path, multiline=True, split_size=4)
    assert ds.partitions == 1
    assert ds.collect() == [{"k": "1", "v": "two\nlines"}, {"k": "2", "v": "x"}]


def test_empty_files(inline: Session, tmp_path: Path) -> None:
    path = write(tmp_path / "empty.txt", "")
    assert inline.read_text(path).collect() == []
    assert os.path.getsize(path) == 0
