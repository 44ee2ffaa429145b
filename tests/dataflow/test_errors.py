"""The dataflow errors: what they say, what they are, and that they pickle."""

from __future__ import annotations

import pickle

import pytest

from distsys.dataflow import (
    EmptyDatasetError,
    EngineUnavailableError,
    MalformedRecordError,
    NotPicklableError,
    RecordTypeError,
    TaskFailedError,
)
from distsys.dataflow._sizes import format_size, parse_size
from distsys.errors import ArgumentTypeError, DistsysError, InvalidArgumentError

ERRORS = [
    MalformedRecordError("/data/a.txt", 12, "invalid JSON: truncated"),
    RecordTypeError("join", "x" * 500, "a (key, value) pair"),
    NotPicklableError("map", "<lambda>", "it cannot be pickled"),
    EmptyDatasetError("reduce"),
    EngineUnavailableError("dask", "not implemented yet"),
    TaskFailedError("1 (read_text → map)", 3, 4, "ValueError", "bad", "Traceback..."),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_errors_pickle_and_keep_their_message(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert isinstance(copy, DistsysError)


def test_hierarchy_and_data() -> None:
    bad = ERRORS[0]
    assert isinstance(bad, InvalidArgumentError)
    assert isinstance(bad, ValueError)
    assert (
        str(bad)
        == "/data/a.txt:12: invalid JSON: truncated (pass errors='skip' to skip such lines)"
    )
    shape = ERRORS[1]
    assert isinstance(shape, ArgumentTypeError)
    assert isinstance(shape, TypeError)
    assert len(shape.record) == 200
    assert shape.record.endswith("…")
    assert isinstance(ERRORS[2], TypeError)
    assert isinstance(ERRORS[5], RuntimeError)
    assert ERRORS[5].partition == 3
    assert ERRORS[5].attempts == 4


def test_sizes() -> None:
    assert parse_size("256MB") == 256 << 20
    assert parse_size("1.5 GiB") == 3 << 29
    assert parse_size("4096") == parse_size(4096) == 4096
    assert parse_size("2k") == 2048
    for bad in ("", "-1", "lots", 0):
        with pytest.raises(InvalidArgumentError):
            parse_size(bad)
    with pytest.raises(ArgumentTypeError):
        parse_size(1.5)  # type: ignore[arg-type]
    assert format_size(512) == "512 B"
    assert format_size(3 << 20) == "3.0 MB"
