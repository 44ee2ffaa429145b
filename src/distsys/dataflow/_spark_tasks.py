"""The functions the Spark executor hands to PySpark: they run in Spark's Python workers.

Each is a small picklable object over the parts of the plan one task needs (never the
plan above a shuffle), and each wraps its records in
:func:`~distsys.dataflow._remote.guarded`, so a task's exception reaches the driver as a
:class:`~distsys.dataflow._remote.RemoteTaskError` inside Spark's error text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from distsys.dataflow._exchange import (
    ShuffleSpec,
    merge,
    probe,
    sample_keys,
    sort_run,
    split,
    split_sorted,
)
from distsys.dataflow._plan import Map, Narrow, Source
from distsys.dataflow._remote import Slot, guarded, narrow, result_task

__all__ = [
    "COLLECT",
    "PLACEHOLDER",
    "MapSide",
    "NarrowStep",
    "ProbeTable",
    "ReadSplit",
    "ReduceSide",
    "RunAction",
    "SampleKeys",
    "SortSide",
    "own_partition",
    "passed",
]

PLACEHOLDER = Slot(0, 0, "input")  # the parent of a narrow node shipped alone


@dataclass(frozen=True, slots=True)
class ReadSplit:
    source: Source
    stage: str

    def __call__(self, index: int, ignored: Iterator[Any]) -> Iterator[Any]:
        return guarded(self.stage, index, self.source.read(index))


@dataclass(frozen=True, slots=True)
class NarrowStep:
    node: Narrow
    stage: str

    def __call__(self, index: int, records: Iterator[Any]) -> Iterator[Any]:
        return guarded(self.stage, index, narrow(self.node, records))


@dataclass(frozen=True, slots=True)
class ProbeTable:
    table: Any  # a pyspark Broadcast of the table
    how: str
    stage: str
    label: str

    def __call__(self, index: int, records: Iterator[Any]) -> Iterator[Any]:
        return guarded(self.stage, index, probe(records, self.table.value, self.how, self.label))


def _pieces(side: int, index: int, pieces: list[Any]) -> Iterator[Any]:
    for reduce, piece in enumerate(pieces):
        if piece is not None:
            yield reduce, (side, index, piece)


@dataclass(frozen=True, slots=True)
class MapSide:
    spec: ShuffleSpec
    side: int
    stage: str

    def __call__(self, index: int, records: Iterator[Any]) -> Iterator[Any]:
        def pieces() -> Iterator[Any]:
            yield from _pieces(self.side, index, split(self.spec, records, index))

        return guarded(self.stage, index, pieces())


@dataclass(frozen=True, slots=True)
class SampleKeys:
    spec: ShuffleSpec
    stage: str

    def __call__(self, index: int, records: Iterator[Any]) -> Iterator[Any]:
        def samples() -> Iterator[Any]:
            yield from sample_keys(self.spec, records)

        return guarded(self.stage, index, samples())


@dataclass(frozen=True, slots=True)
class SortSide:
    spec: ShuffleSpec
    bounds: tuple[Any, ...]
    stage: str

    def __call__(self, index: int, records: Iterator[Any]) -> Iterator[Any]:
        def pieces() -> Iterator[Any]:
            run = sort_run(self.spec, records)
            yield from _pieces(0, index, split_sorted(self.spec, run, self.bounds))

        return guarded(self.stage, index, pieces())


@dataclass(frozen=True, slots=True)
class ReduceSide:
    spec: ShuffleSpec
    stage: str

    def __call__(self, index: int, records: Iterator[Any]) -> Iterator[Any]:
        def merged() -> Iterator[Any]:
            tagged = sorted((value for _, value in records), key=itemgetter(0, 1))
            left = [piece for side, _, piece in tagged if side == 0]
            right = [piece for side, _, piece in tagged if side == 1]
            yield from merge(self.spec, left, right)

        return guarded(self.stage, index, merged())


def own_partition(reduce: int) -> int:
    return reduce


def passed(records: Iterator[Any]) -> Iterator[Any]:
    return records


@dataclass(frozen=True, slots=True)
class RunAction:
    stage: str
    run_partition: Callable[[int, Iterator[Any]], Any]
    size: Callable[[Any], int] | None

    def __call__(self, index: int, records: Iterator[Any]) -> Iterator[Any]:
        plan = Slot(0, index + 1, self.stage)
        yield result_task(
            self.stage, plan, index, self.run_partition, self.size, {(0, index): records}
        )


def _identity(record: Any) -> Any:
    return record


# a no-op narrow node, so a broadcast side's errors are reported like any task's
COLLECT = Map(PLACEHOLDER, _identity)
