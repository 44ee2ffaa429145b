"""Actions: a function run on every partition where it is computed, and a driver-side finish.

An action is engine-neutral: ``run_partition(index, records)`` runs in the task (on
Spark: ``mapPartitionsWithIndex``; on Dask: ``map_partitions``) and returns a small
value; ``finish(values)`` runs in the driver on the values in partition order. Saving
files follows Hadoop's output committer: each task writes ``_temporary/part-<i>`` under
a temporary name and renames it when done, the driver moves the parts into place and
writes ``_SUCCESS`` last, so a failed job never leaves output that claims success.
"""

from __future__ import annotations

import functools
import heapq
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any, Generic, Literal, TypeVar

import msgspec

from distsys.dataflow._errors import EmptyDatasetError, RecordTypeError
from distsys.dataflow._shuffle_write import chunks
from distsys.errors import InvalidArgumentError

__all__ = [
    "Action",
    "collect_action",
    "count_action",
    "prepare_output",
    "reduce_action",
    "save_action",
    "take_action",
    "top_action",
]

R = TypeVar("R")
T = TypeVar("T")
SUCCESS = "_SUCCESS"
TEMPORARY = "_temporary"


@dataclass(frozen=True, slots=True)
class Action(Generic[R, T]):
    """What a job computes from its dataset.

    Attributes:
        name: the user-facing name (``"collect"``).
        run_partition: ``(index, records) -> R``, run once per partition in the task;
            picklable.
        finish: ``(values) -> T``, run in the driver on the partitions' values in order.
        size: ``R -> records`` produced, for statistics, or None.
    """

    name: str
    run_partition: Callable[[int, Iterator[Any]], R]
    finish: Callable[[list[R]], T]
    size: Callable[[R], int] | None = None


def _collect(index: int, records: Iterator[Any]) -> list[Any]:
    return list(records)


def _concat(values: list[list[Any]]) -> list[Any]:
    return list(chain.from_iterable(values))


def collect_action() -> Action[list[Any], list[Any]]:
    """Every record, in partition order."""
    return Action("collect", _collect, _concat, len)


def _count(index: int, records: Iterator[Any]) -> int:
    n = 0
    for n, _ in enumerate(records, 1):  # noqa: B007
        pass
    return n


def _identity_size(value: int) -> int:
    return value


def count_action() -> Action[int, int]:
    """The number of records."""
    return Action("count", _count, sum, _identity_size)


@dataclass(frozen=True, slots=True)
class _Take:
    n: int

    def __call__(self, index: int, records: Iterator[Any]) -> list[Any]:
        return list(islice(records, self.n))


@dataclass(frozen=True, slots=True)
class _TakeFinish:
    n: int

    def __call__(self, values: list[list[Any]]) -> list[Any]:
        return list(islice(chain.from_iterable(values), self.n))


def take_action(n: int) -> Action[list[Any], list[Any]]:
    """The first ``n`` records of the partitions run, in partition order."""
    return Action("take", _Take(n), _TakeFinish(n), len)


@dataclass(frozen=True, slots=True)
class _Top:
    n: int
    key: Callable[[Any], Any] | None

    def __call__(self, index: int, records: Iterator[Any]) -> list[Any]:
        try:
            return heapq.nlargest(self.n, records, key=self.key)
        except TypeError as exc:
            raise RecordTypeError(
                "top", None, "records that compare", detail=str(exc), shown="a record"
            ) from None

    def finish(self, values: list[list[Any]]) -> list[Any]:
        return heapq.nlargest(self.n, chain.from_iterable(values), key=self.key)


def top_action(n: int, key: Callable[[Any], Any] | None) -> Action[list[Any], list[Any]]:
    """The ``n`` largest records (by ``key``), largest first."""
    top = _Top(n, key)
    return Action("top", top, top.finish, len)


@dataclass(frozen=True, slots=True)
class _Reduce:
    fn: Callable[[Any, Any], Any]

    def __call__(self, index: int, records: Iterator[Any]) -> tuple[bool, Any]:
        marker = object()
        first = next(records, marker)
        if first is marker:
            return False, None
        return True, functools.reduce(self.fn, records, first)

    def finish(self, values: list[tuple[bool, Any]]) -> Any:
        present = [value for found, value in values if found]
        if not present:
            raise EmptyDatasetError("reduce")
        return functools.reduce(self.fn, present)


def _found(value: tuple[bool, Any]) -> int:
    return 1 if value[0] else 0


def reduce_action(fn: Callable[[Any, Any], Any]) -> Action[tuple[bool, Any], Any]:
    """All records folded with ``fn`` (per partition, then across partitions)."""
    reduce = _Reduce(fn)
    return Action("reduce", reduce, reduce.finish, _found)


Format = Literal["text", "jsonl"]


def _text_lines(chunk: list[Any]) -> bytes:
    return ("\n".join(map(str, chunk)) + "\n").encode()


def _jsonl_lines(chunk: list[Any]) -> bytes:
    encode = msgspec.json.encode
    try:
        return b"\n".join(map(encode, chunk)) + b"\n"
    except (TypeError, msgspec.EncodeError) as exc:
        for record in chunk:
            try:
                encode(record)
            except (TypeError, msgspec.EncodeError):
                raise RecordTypeError(
                    "save_jsonl", record, "records JSON can encode", detail=str(exc)
                ) from None
        raise


@dataclass(frozen=True, slots=True)
class _Save:
    directory: str
    format: Format

    def __call__(self, index: int, records: Iterator[Any]) -> int:
        staging = os.path.join(self.directory, TEMPORARY)
        final = os.path.join(staging, f"part-{index:05d}")
        temporary = f"{final}.{uuid.uuid4().hex[:12]}.tmp"
        lines = _text_lines if self.format == "text" else _jsonl_lines
        count = 0
        try:
            with open(temporary, "wb") as out:
                for chunk in chunks(records):
                    out.write(lines(chunk))
                    count += len(chunk)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        os.replace(temporary, final)
        return count

    def finish(self, counts: list[int]) -> list[str]:
        staging = os.path.join(self.directory, TEMPORARY)
        written = []
        for name in sorted(os.listdir(staging)):
            if name.startswith("part-") and not name.endswith(".tmp"):
                target = os.path.join(self.directory, name)
                os.replace(os.path.join(staging, name), target)
                written.append(target)
        shutil.rmtree(staging, ignore_errors=True)
        marker = os.path.join(self.directory, SUCCESS)
        with open(f"{marker}.tmp", "wb"):
            pass
        os.replace(f"{marker}.tmp", marker)
        return written


def _size(count: int) -> int:
    return count


def prepare_output(directory: str, *, overwrite: bool) -> str:
    """Make ``directory`` ready for a save: absent or empty, or emptied with ``overwrite``.

    Raises:
        InvalidArgumentError: it exists with files in it and ``overwrite`` is false, or
            it is a file.
    """
    path = os.path.abspath(directory)
    if os.path.isfile(path):
        raise InvalidArgumentError(
            "path", directory, "a directory to write into", detail="it is a file"
        )
    if os.path.isdir(path) and os.listdir(path):
        if not overwrite:
            raise InvalidArgumentError(
                "path",
                directory,
                "a directory that does not exist or is empty",
                detail="it has files in it; pass overwrite=True to replace them",
            )
        shutil.rmtree(path)
    os.makedirs(os.path.join(path, TEMPORARY), exist_ok=True)
    return path


def abort_output(directory: str) -> None:
    """Remove what a failed save left: its staging directory (no ``_SUCCESS`` was written)."""
    shutil.rmtree(os.path.join(directory, TEMPORARY), ignore_errors=True)


def save_action(directory: str, format: Format) -> Action[int, list[str]]:
    """Write each partition to ``directory/part-<i>``, then ``_SUCCESS``; return the parts."""
    save = _Save(directory, format)
    return Action(f"save_{format}", save, save.finish, _size)
