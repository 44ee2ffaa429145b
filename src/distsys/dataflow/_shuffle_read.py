"""The reduce side of a shuffle, and reading a cache: the leaves of a stage's physical plan.

The local executor replaces every shuffle (and cached) node in a stage's plan with one
of these readers before it ships the stage to the workers. A reader is a
:class:`~distsys.dataflow._plan.Source` whose partition ``r`` is the shuffle's output
partition ``r``: it reads the ``r`` files of every map task and merges them, within the
task's memory budget (:mod:`distsys.dataflow._spill`).
"""

from __future__ import annotations

import bisect
import gc
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any, Final

from distsys.dataflow._errors import RecordTypeError
from distsys.dataflow._frames import read_frame_at, read_frames
from distsys.dataflow._plan import Node, Source
from distsys.dataflow._shuffle_write import PAIR, Run, chunks, map_directory
from distsys.dataflow._spill import (
    CombineTable,
    GroupTable,
    SpillArea,
    external_sort,
    grace_items,
    hash_join,
    merge_runs,
)

__all__ = [
    "BroadcastProbe",
    "CacheRead",
    "CombinedRead",
    "ConcatRead",
    "GroupRead",
    "JoinRead",
    "Physical",
    "SortRead",
    "SortedPairsRead",
    "TaskEnv",
    "range_bounds",
    "range_partition",
]

EXPANSION: Final = 4  # in-memory bytes per serialized byte, roughly, for small records


@dataclass(slots=True)
class TaskEnv:
    """What a running task's readers and writers share: counters, budget, spill area."""

    metrics: Any
    budget: int
    spill: SpillArea
    worker: bool = False  # running in a worker process (not the driver)


class Physical(Source):
    """A leaf the executor substitutes for a shuffle or cache node (abstract)."""

    __slots__ = ()

    def read_in(self, index: int, env: TaskEnv) -> Iterator[Any]:
        """Yield the records of partition ``index``."""
        raise NotImplementedError

    def read(self, index: int, metrics: Any = None) -> Iterator[Any]:
        raise TypeError("a physical reader needs a TaskEnv: call read_in()")


def _batches(directory: str, side: int, maps: int, partition: int, env: TaskEnv) -> Iterator[Any]:
    """Yield the frames every map task of ``side`` wrote for ``partition``."""
    name = f"r{partition:05d}"
    metrics = env.metrics
    for task in range(maps):
        path = os.path.join(map_directory(directory, side, task), name)
        if os.path.exists(path):
            for batch in read_frames(path, metrics):
                metrics.records_in += len(batch)
                yield batch


def _bytes(directory: str, side: int, maps: int, partition: int) -> int:
    name = f"r{partition:05d}"
    total = 0
    for task in range(maps):
        path = os.path.join(map_directory(directory, side, task), name)
        if os.path.exists(path):
            total += os.path.getsize(path)
    return total


@dataclass(frozen=True, eq=False, slots=True)
class CombinedRead(Physical):
    """Merge map-side combined dicts: ``count_by_value``, ``reduce_by_key``, ``distinct``.

    ``kind`` is a :class:`~distsys.dataflow._spill.CombineTable` kind; ``keys_only``
    yields keys (``distinct``) instead of ``(key, combiner)`` pairs.
    """

    directory: str
    maps: int
    count: int
    kind: str
    merge: Callable[[Any, Any], Any] | None = None
    keys_only: bool = False

    @property
    def partitions(self) -> int:
        return self.count

    def read_in(self, index: int, env: TaskEnv) -> Iterator[Any]:
        batches = _batches(self.directory, 0, self.maps, index, env)
        items = grace_items(CombineTable(self.kind, self.merge), batches, env.budget, env.spill)
        return map(itemgetter(0), items) if self.keys_only else items


@dataclass(frozen=True, eq=False, slots=True)
class GroupRead(Physical):
    """``group_by_key``: ``(key, [values])`` per key."""

    directory: str
    maps: int
    count: int

    @property
    def partitions(self) -> int:
        return self.count

    def read_in(self, index: int, env: TaskEnv) -> Iterator[Any]:
        batches = _batches(self.directory, 0, self.maps, index, env)
        return grace_items(GroupTable(), batches, env.budget, env.spill)


def _probe_left(outer: bool) -> Callable[[list[Any], Callable[[Any], Any]], list[Any]]:
    def probe(batch: list[Any], lookup: Callable[[Any], Any]) -> list[Any]:
        out: list[Any] = []
        append = out.append
        for key, value in batch:
            matches = lookup(key)
            if matches is not None:
                for other in matches:
                    append((key, (value, other)))
            elif outer:
                append((key, (value, None)))
        return out

    return probe


def _probe_right(batch: list[Any], lookup: Callable[[Any], Any]) -> list[Any]:
    out: list[Any] = []
    append = out.append
    for key, other in batch:
        matches = lookup(key)
        if matches is not None:
            for value in matches:
                append((key, (value, other)))
    return out


@dataclass(frozen=True, eq=False, slots=True)
class JoinRead(Physical):
    """``join`` / ``left_join``: a hash join of the two sides' partition ``r``.

    The build side (held in memory) is the right one, or for an inner join whichever
    side wrote fewer bytes for this partition; the other side streams past it.
    """

    directory: str
    left_maps: int
    right_maps: int
    count: int
    how: str = "inner"

    @property
    def partitions(self) -> int:
        return self.count

    def read_in(self, index: int, env: TaskEnv) -> Iterator[Any]:
        left = _batches(self.directory, 0, self.left_maps, index, env)
        right = _batches(self.directory, 1, self.right_maps, index, env)
        if self.how == "inner" and _bytes(self.directory, 0, self.left_maps, index) < _bytes(
            self.directory, 1, self.right_maps, index
        ):
            return hash_join(
                right, left, probe_batch=_probe_right, budget=env.budget, spill=env.spill
            )
        probe = _probe_left(self.how == "left")
        return hash_join(left, right, probe_batch=probe, budget=env.budget, spill=env.spill)


@dataclass(frozen=True, eq=False, slots=True)
class BroadcastProbe(Node):
    """A broadcast join's streaming side: look each pair's key up in the broadcast table.

    The table of the small side (kept in ``directory``, one file per partition) is loaded
    once per worker and stage, by the first task that needs it. When its keys are unique
    — the common case: a dimension table — it maps each key to its value, built by
    ``dict.update`` in C and holding no list per key; otherwise each key maps to the list
    of its values. In a worker process the table is then frozen out of the cyclic
    garbage collector's sight (``gc.freeze``): it lives for the whole stage, and each full
    collection would otherwise walk all of it.
    """

    parent: Node
    directory: str
    count: int
    how: str = "inner"
    loaded: list[tuple[dict[Any, Any], bool]] = field(default_factory=list)

    @property
    def parents(self) -> tuple[Node, ...]:
        return (self.parent,)

    @property
    def partitions(self) -> int:
        return self.parent.partitions

    @property
    def operation(self) -> str:
        return "join" if self.how == "inner" else "left_join"

    def _batches(self) -> Iterator[list[Any]]:
        for index in range(self.count):
            yield from read_frames(os.path.join(self.directory, f"part-{index:05d}"))

    def table(self, env: TaskEnv | None = None) -> tuple[dict[Any, Any], bool]:
        """Return the broadcast table and whether its keys are unique (reading it once)."""
        if not self.loaded:
            table: dict[Any, Any] = {}
            records = 0
            for batch in self._batches():
                try:
                    table.update(batch)
                except (TypeError, ValueError) as exc:
                    raise _pair_error(self.operation, batch, exc) from None
                records += len(batch)
            unique = len(table) == records
            if not unique:
                table = {}
                get = table.get
                for batch in self._batches():
                    for key, value in batch:
                        values = get(key)
                        if values is None:
                            table[key] = [value]
                        else:
                            values.append(value)
            self.loaded.append((table, unique))
            if env is not None and env.worker:
                gc.collect()
                gc.freeze()
        return self.loaded[0]

    def probe(self, records: Iterator[Any], env: TaskEnv) -> Iterator[Any]:
        """Return the joined records of one partition of the streaming side."""
        table, unique = self.table(env)
        outer = self.how == "left"
        probe = _probe_unique(outer) if unique else _probe_left(outer)
        lookup = table.get
        operation = self.operation

        def joined(chunk: list[Any]) -> list[Any]:
            try:
                return probe(chunk, lookup)
            except (TypeError, ValueError) as exc:
                raise _pair_error(operation, chunk, exc) from None

        # C iterators all the way: no generator frame to resume per record.
        return chain.from_iterable(map(joined, chunks(records)))


def _probe_unique(outer: bool) -> Callable[[list[Any], Callable[..., Any]], list[Any]]:
    def probe(batch: list[Any], lookup: Callable[..., Any]) -> list[Any]:
        out: list[Any] = []
        append = out.append
        missing = _MISSING
        for key, value in batch:
            other = lookup(key, missing)
            if other is not missing:
                append((key, (value, other)))
            elif outer:
                append((key, (value, None)))
        return out

    return probe


_MISSING: Final = object()


def _pair_error(operation: str, batch: list[Any], exc: BaseException) -> BaseException:
    for record in batch:
        if type(record) not in (tuple, list) or len(record) != 2:
            return RecordTypeError(operation, record, PAIR)
    return exc


@dataclass(frozen=True, eq=False, slots=True)
class SortedPairsRead(Physical):
    """The MapReduce shuffle: the partition's pairs sorted by key (stable)."""

    directory: str
    maps: int
    count: int

    @property
    def partitions(self) -> int:
        return self.count

    def read_in(self, index: int, env: TaskEnv) -> Iterator[Any]:
        batches = _batches(self.directory, 0, self.maps, index, env)
        try:
            yield from external_sort(
                batches, itemgetter(0), reverse=False, budget=env.budget, spill=env.spill
            )
        except TypeError as exc:
            raise RecordTypeError(
                "map_reduce", None, "keys that compare with <", detail=str(exc), shown="a key"
            ) from None


@dataclass(frozen=True, eq=False, slots=True)
class ConcatRead(Physical):
    """``repartition``: the records every map task sent to partition ``r``."""

    directory: str
    maps: int
    count: int

    @property
    def partitions(self) -> int:
        return self.count

    def read_in(self, index: int, env: TaskEnv) -> Iterator[Any]:
        return chain.from_iterable(_batches(self.directory, 0, self.maps, index, env))


@dataclass(frozen=True, eq=False, slots=True)
class CacheRead(Physical):
    """A cached dataset: partition ``i`` is the file ``part-<i>``."""

    directory: str
    count: int

    @property
    def partitions(self) -> int:
        return self.count

    def read_in(self, index: int, env: TaskEnv) -> Iterator[Any]:
        path = os.path.join(self.directory, f"part-{index:05d}")
        for batch in read_frames(path, None):
            env.metrics.records_in += len(batch)
            yield from batch


def range_bounds(samples: list[tuple[Any, float]], partitions: int) -> list[Any]:
    """Return up to ``partitions - 1`` increasing keys cutting the weighted samples evenly."""
    if partitions <= 1 or not samples:
        return []
    samples = sorted(samples, key=itemgetter(0))
    step = sum(weight for _, weight in samples) / partitions
    bounds: list[Any] = []
    total, target = 0.0, step
    for key, weight in samples:
        total += weight
        if total >= target and len(bounds) < partitions - 1:
            if not bounds or bounds[-1] < key:
                bounds.append(key)
            target += step
    return bounds


def range_partition(key: Any, bounds: list[Any], ascending: bool) -> int:
    """Return the range partition of ``key``: monotone in the sort order."""
    position = bisect.bisect_left(bounds, key)
    return position if ascending else len(bounds) - position


@dataclass(frozen=True, eq=False, slots=True)
class SortRead(Physical):
    """``sort_by``: partition ``r``'s range of every sorted run, merged.

    Frames wholly inside the range are read whole, frames straddling a bound are
    filtered, others are not read. If the selection fits the budget it is sorted in
    memory (timsort merges presorted runs in C); otherwise the runs are merged lazily.
    """

    directory: str
    runs: tuple[Run, ...]
    bounds: tuple[Any, ...]
    key: Callable[[Any], Any]
    ascending: bool
    count: int

    @property
    def partitions(self) -> int:
        return self.count

    def _frames(self, run: Run, index: int) -> list[tuple[int, bool]]:
        bounds = list(self.bounds)
        chosen = []
        for first, last, offset, _, _ in run.frames:
            low = range_partition(first, bounds, self.ascending)
            high = range_partition(last, bounds, self.ascending)
            if low <= index <= high:
                chosen.append((offset, low == high == index))
        return chosen

    def _stream(
        self, run: Run, frames: list[tuple[int, bool]], index: int, env: TaskEnv
    ) -> Iterator[Any]:
        bounds, key, ascending = list(self.bounds), self.key, self.ascending
        with open(os.path.join(self.directory, run.path), "rb") as source:
            for offset, whole in frames:
                batch, size = read_frame_at(source, offset)
                env.metrics.shuffle_read += size
                if not whole:
                    batch = [
                        r for r in batch if range_partition(key(r), bounds, ascending) == index
                    ]
                env.metrics.records_in += len(batch)
                yield from batch

    def read_in(self, index: int, env: TaskEnv) -> Iterator[Any]:
        selected = [(run, self._frames(run, index)) for run in self.runs]
        selected = [(run, frames) for run, frames in selected if frames]
        size = 0
        largest = 1
        for run, frames in selected:
            sizes = {f[2]: f[3] for f in run.frames}
            size += sum(sizes[offset] for offset, _ in frames) * EXPANSION
            largest = max(largest, *(sizes[offset] * EXPANSION for offset, _ in frames))
        reverse = not self.ascending
        streams = [self._stream(run, frames, index, env) for run, frames in selected]
        if size <= env.budget:
            records = list(chain.from_iterable(streams))
            records.sort(key=self.key, reverse=reverse)
            return iter(records)
        fan_in = env.budget // largest  # a stream holds one frame while it is merged
        return merge_runs(streams, self.key, reverse=reverse, fan_in=fan_in, spill=env.spill)
