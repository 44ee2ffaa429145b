"""The shuffle of the Dask and Spark executors: pieces of partitions, in memory.

A map task cuts its partition into one *piece* per reduce partition with :func:`split`
(combined map-side for ``reduce_by_key``, ``count_by_value`` and ``distinct``; placed by
the node's own ``partitioner(key, n)``); a ``sort_by`` sorts its partition, samples its
keys (:func:`sample`), and once the driver has chosen range bounds from every sample
(:func:`range_bounds`), cuts the run by range (:func:`split_sorted`). A reduce task gets
piece ``r`` of every map task, in map-task order, and :func:`merge` combines them, so the
result never depends on the order an engine delivered the pieces in — and it is the
local engine's result, record for record where order is defined (sort, repartition).

Pure Python on lists and dicts; nothing imports Dask or PySpark.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any, Final, Literal

from distsys.dataflow._errors import RecordTypeError
from distsys.dataflow._hashing import hash_partition
from distsys.dataflow._plan import (
    Aggregator,
    CombineByKey,
    CountByValue,
    Distinct,
    GroupByKey,
    Join,
    PartitionAndSort,
    Partitioner,
    Repartition,
    Shuffle,
    SortBy,
)
from distsys.errors import InvalidArgumentError

__all__ = [
    "PAIR",
    "ShuffleSpec",
    "build_table",
    "merge",
    "probe",
    "range_bounds",
    "sample",
    "sample_keys",
    "shuffle_spec",
    "sort_run",
    "split",
    "split_sorted",
]

PAIR: Final = "a (key, value) pair: a tuple or list of two items"
SAMPLES: Final = 64  # keys sampled per map task and reduce partition of a sort
_MISSING: Final = object()

Kind = Literal[
    "combine", "count", "distinct", "group", "join", "sort", "partition_and_sort", "repartition"
]


@dataclass(frozen=True, slots=True)
class ShuffleSpec:
    """What map and reduce tasks need of a shuffle node (none of the plan above it).

    Attributes:
        kind: which operation.
        count: reduce partitions.
        label: the user-facing operation, for errors.
        partitioner: ``(key, count) -> partition``.
        aggregator: a ``combine``'s functions.
        key: a ``sort``'s key function.
        ascending: a ``sort``'s direction.
        how: a ``join``'s kind.
    """

    kind: Kind
    count: int
    label: str
    partitioner: Partitioner = hash_partition
    aggregator: Aggregator | None = None
    key: Callable[[Any], Any] | None = None
    ascending: bool = True
    how: str = "inner"


def shuffle_spec(node: Shuffle) -> ShuffleSpec:
    """Return the spec of a shuffle node."""
    count = node.count
    if isinstance(node, CombineByKey):
        return ShuffleSpec("combine", count, node.label, node.partitioner, node.aggregator)
    if isinstance(node, CountByValue):
        return ShuffleSpec("count", count, node.label, node.partitioner)
    if isinstance(node, Distinct):
        return ShuffleSpec("distinct", count, node.label, node.partitioner)
    if isinstance(node, GroupByKey):
        return ShuffleSpec("group", count, node.label, node.partitioner)
    if isinstance(node, Join):
        return ShuffleSpec("join", count, node.label, node.partitioner, how=node.how)
    if isinstance(node, SortBy):
        return ShuffleSpec("sort", count, node.label, key=node.key, ascending=node.ascending)
    if isinstance(node, PartitionAndSort):
        return ShuffleSpec("partition_and_sort", count, "map_reduce", node.partitioner)
    if isinstance(node, Repartition):
        return ShuffleSpec("repartition", count, node.label)
    raise TypeError(f"no shuffle for {node.label}")


def _checked(spec: ShuffleSpec, key: Any) -> int:
    count = spec.count
    if spec.partitioner is hash_partition:
        return hash_partition(key, count)
    partition = spec.partitioner(key, count)
    if type(partition) is not int or not 0 <= partition < count:
        raise InvalidArgumentError(
            f"{spec.label}() partitioner",
            spec.partitioner,
            f"a function returning an int in [0, {count})",
            detail=f"it returned {partition!r} for the key {key!r}",
        )
    return partition


def _not_a_pair(operation: str, record: Any, exc: BaseException) -> BaseException:
    if type(record) not in (tuple, list) or len(record) != 2:
        return RecordTypeError(operation, record, PAIR)
    return exc


def _split_dict(spec: ShuffleSpec, data: dict[Any, Any]) -> list[Any]:
    if spec.count == 1:
        return [data or None]
    parts: list[dict[Any, Any]] = [{} for _ in range(spec.count)]
    for key, value in data.items():
        parts[_checked(spec, key)][key] = value
    return [part or None for part in parts]


def _combine(spec: ShuffleSpec, records: Iterator[Any]) -> dict[Any, Any]:
    agg = spec.aggregator
    assert agg is not None
    create, merge_value = agg.create, agg.merge_value
    data: dict[Any, Any] = {}
    get = data.get
    record: Any = None
    try:
        for record in records:
            key, value = record
            current = get(key, _MISSING)
            data[key] = create(value) if current is _MISSING else merge_value(current, value)
    except (TypeError, ValueError) as exc:
        error = _not_a_pair(spec.label, record, exc)
        if error is exc:
            raise
        raise error from exc
    return data


def _pairs(spec: ShuffleSpec, records: Iterator[Any]) -> list[Any]:
    parts: list[list[Any]] = [[] for _ in range(spec.count)]
    record: Any = None
    try:
        for record in records:
            key, _ = record
            parts[_checked(spec, key)].append(record)
    except (TypeError, ValueError) as exc:
        error = _not_a_pair(spec.label, record, exc)
        if error is exc:
            raise
        raise error from exc
    return [part or None for part in parts]


def split(spec: ShuffleSpec, records: Iterator[Any], task: int) -> list[Any]:
    """Return map task ``task``'s piece (or None) for each reduce partition of a shuffle.

    A ``sort`` is cut by :func:`split_sorted` instead, once its bounds are known.
    """
    kind = spec.kind
    if kind == "count":
        counts: dict[Any, int] = {}
        get = counts.get
        for record in records:
            counts[record] = get(record, 0) + 1
        return _split_dict(spec, counts)
    if kind == "distinct":
        return _split_dict(spec, dict.fromkeys(records))
    if kind == "combine":
        return _split_dict(spec, _combine(spec, records))
    if kind in ("group", "join", "partition_and_sort"):
        return _pairs(spec, records)
    if kind == "repartition":
        everything = list(records)
        count = spec.count
        offset = task % count
        return [everything[(p - offset) % count :: count] or None for p in range(count)]
    raise TypeError(f"split() cannot cut a {kind} shuffle")


def _sort_key(spec: ShuffleSpec) -> Callable[[Any], Any]:
    assert spec.key is not None
    return spec.key


def sort_run(spec: ShuffleSpec, records: Iterable[Any]) -> list[Any]:
    """Return the records sorted by the sort's key, stably, in its direction."""
    try:
        return sorted(records, key=_sort_key(spec), reverse=not spec.ascending)
    except TypeError as exc:
        raise RecordTypeError(
            "sort_by", None, "records whose keys compare", detail=str(exc), shown="a record"
        ) from None


def sample(spec: ShuffleSpec, records: Iterator[Any]) -> tuple[list[Any], list[Any]]:
    """Sort a map task's records; return them and a weighted sample of their keys."""
    run = sort_run(spec, records)
    if not run:
        return run, []
    key = _sort_key(spec)
    wanted = min(len(run), SAMPLES * spec.count)
    step = len(run) / wanted
    return run, [(key(run[int(i * step)]), step) for i in range(wanted)]


def sample_keys(spec: ShuffleSpec, records: Iterator[Any]) -> list[Any]:
    """Return a weighted sample of the sort keys of a partition (without sorting it)."""
    held = list(records)
    if not held:
        return []
    key = _sort_key(spec)
    wanted = min(len(held), SAMPLES * spec.count)
    step = len(held) / wanted
    return [(key(held[int(i * step)]), step) for i in range(wanted)]


def range_bounds(samples: Sequence[tuple[Any, float]], partitions: int) -> list[Any]:
    """Return up to ``partitions - 1`` increasing keys cutting the weighted samples evenly."""
    if partitions <= 1 or not samples:
        return []
    try:
        ordered = sorted(samples, key=itemgetter(0))
    except TypeError as exc:
        raise RecordTypeError(
            "sort_by", None, "records whose keys compare", detail=str(exc), shown="a record"
        ) from None
    step = sum(weight for _, weight in ordered) / partitions
    bounds: list[Any] = []
    total, target = 0.0, step
    for key, weight in ordered:
        total += weight
        if total >= target and len(bounds) < partitions - 1:
            if not bounds or bounds[-1] < key:
                bounds.append(key)
            target += step
    return bounds


def split_sorted(spec: ShuffleSpec, run: list[Any], bounds: Sequence[Any]) -> list[Any]:
    """Cut a sorted run into one piece per key range (in the sort's direction)."""
    parts: list[list[Any]] = [[] for _ in range(spec.count)]
    key = _sort_key(spec)
    last = len(bounds)
    for record in run:
        position = bisect.bisect_left(bounds, key(record))
        parts[position if spec.ascending else last - position].append(record)
    return [part or None for part in parts]


def merge(spec: ShuffleSpec, pieces: Sequence[Any], right: Sequence[Any] = ()) -> list[Any]:
    """Return reduce partition's records from its pieces, in map-task order.

    ``pieces`` are the (first) input's, ``right`` a join's other input's; None pieces
    are empty.
    """
    present = [piece for piece in pieces if piece is not None]
    kind = spec.kind
    if kind in ("count", "combine"):
        if not present:
            return []
        total = dict(present[0])
        if kind == "count":
            for piece in present[1:]:
                for key, value in piece.items():
                    total[key] = total.get(key, 0) + value
        else:
            agg = spec.aggregator
            assert agg is not None
            merge_combiners = agg.merge_combiners
            for piece in present[1:]:
                for key, value in piece.items():
                    current = total.get(key, _MISSING)
                    total[key] = value if current is _MISSING else merge_combiners(current, value)
        return list(total.items())
    if kind == "distinct":
        seen: dict[Any, None] = {}
        for piece in present:
            for key in piece:
                seen.setdefault(key)
        return list(seen)
    if kind == "group":
        groups: dict[Any, list[Any]] = {}
        for piece in present:
            for key, value in piece:
                values = groups.get(key)
                if values is None:
                    groups[key] = [value]
                else:
                    values.append(value)
        return list(groups.items())
    if kind == "join":
        table = build_table(p for p in right if p is not None)
        return list(probe(chain.from_iterable(present), table, spec.how, spec.label))
    if kind == "partition_and_sort":
        pairs = list(chain.from_iterable(present))
        try:
            pairs.sort(key=itemgetter(0))
        except TypeError as exc:
            raise RecordTypeError(
                "map_reduce", None, "keys that compare", detail=str(exc), shown="a key"
            ) from None
        return pairs
    if kind == "sort":
        return sort_run(spec, chain.from_iterable(present))
    if kind == "repartition":
        return list(chain.from_iterable(present))
    raise TypeError(f"merge() cannot combine a {kind} shuffle")


def build_table(partitions: Iterable[Iterable[Any]]) -> dict[Any, list[Any]]:
    """Return a join's build side: each key's values, in order."""
    table: dict[Any, list[Any]] = {}
    record: Any = None
    try:
        for records in partitions:
            for record in records:
                key, value = record
                values = table.get(key)
                if values is None:
                    table[key] = [value]
                else:
                    values.append(value)
    except (TypeError, ValueError) as exc:
        error = _not_a_pair("join", record, exc)
        if error is exc:
            raise
        raise error from exc
    return table


def probe(
    records: Iterator[Any], table: dict[Any, list[Any]], how: str, operation: str
) -> Iterator[Any]:
    """Yield ``(k, (v, w))`` for each pair ``(k, v)`` and each value ``w`` of ``k`` in
    ``table``; ``(k, (v, None))`` for a missing key when ``how`` is ``"left"``."""
    left = how == "left"
    record: Any = None
    try:
        for record in records:
            key, value = record
            found = table.get(key)
            if found is None:
                if left:
                    yield key, (value, None)
                continue
            for other in found:
                yield key, (value, other)
    except (TypeError, ValueError) as exc:
        error = _not_a_pair(operation, record, exc)
        if error is exc:
            raise
        raise error from exc
