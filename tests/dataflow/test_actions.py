"""Saving datasets: one file per partition, then _SUCCESS; a failed job claims nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distsys.dataflow import RecordTypeError, Session, TaskFailedError
from distsys.errors import InvalidArgumentError
from tests.dataflow import functions as f


def test_save_text_writes_parts_then_success(pool: Session, tmp_path: Path) -> None:
    out = tmp_path / "out"
    parts = pool.from_iterable(range(10), partitions=3).save_text(out)
    assert [Path(p).name for p in parts] == ["part-00000", "part-00001", "part-00002"]
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", *[Path(p).name for p in parts]]
    assert "".join(Path(p).read_text() for p in parts) == "".join(f"{i}\n" for i in range(10))
    assert pool.read_text(out).map(int).collect() == list(range(10))  # _SUCCESS is skipped
    assert pool.statistics().jobs[-2].stages[-1].records_out == 10


def test_save_jsonl_round_trips(inline: Session, tmp_path: Path) -> None:
    records = [{"a": 1}, [1, "x"], None, "s"]
    inline.from_iterable(records, partitions=2).save_jsonl(tmp_path / "j")
    assert inline.read_jsonl(tmp_path / "j").collect() == records
    lines = (tmp_path / "j" / "part-00000").read_text().splitlines()
    assert [json.loads(line) for line in lines] == records[:2]


def test_an_existing_output_is_refused_unless_overwrite(inline: Session, tmp_path: Path) -> None:
    ds = inline.from_iterable([1], partitions=1)
    ds.save_text(tmp_path / "o")
    with pytest.raises(InvalidArgumentError, match="overwrite=True"):
        ds.save_text(tmp_path / "o")
    ds.map(f.double).save_text(tmp_path / "o", overwrite=True)
    assert (tmp_path / "o" / "part-00000").read_text() == "2\n"
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidArgumentError, match="it is a file"):
        ds.save_text(tmp_path / "file")


def test_a_failed_save_leaves_no_success_and_no_partial_parts(
    pool: Session, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with pytest.raises(TaskFailedError):
        pool.from_iterable(range(10), partitions=3).map(f.fail_always).save_text(out)
    assert list(out.iterdir()) == []
    with pytest.raises(RecordTypeError, match=r"save_jsonl\(\)=\(1\+2j\)"):
        pool.from_iterable([1 + 2j]).save_jsonl(tmp_path / "sets")
    assert list((tmp_path / "sets").iterdir()) == []
