"""Keeping a task's data within its memory budget: estimates, spill files, and merging.

Two ways of spilling, chosen by what the keys allow:

- **By key (aggregate, group, join): grace hashing.** Per-key state lives in a dict. When
  its estimated size passes the budget, every entry is written to one of ``FANOUT`` spill
  files chosen by a second hash of its key, and the dict starts empty. At the end each
  spill file is processed on its own (recursively, with a new hash, should one still be
  too big), so only about ``1/FANOUT`` of the keys is in memory at a time. Keys need to
  be hashable only — Python keys of mixed types cannot be sorted, so a sort-merge would
  not do.
- **By order (sort_by, the MapReduce shuffle): external sort.** Records accumulate in a
  list; past the budget the list is sorted and written as a run; at the end the runs are
  merged lazily with ``heapq.merge``, holding one frame per run in memory.

Sizes are *estimated*, cheaply: ``sys.getsizeof`` of a few sampled records (one level
into tuples, lists and dicts) times the count, plus a fixed cost per dict entry. They
are estimates of Python object memory, not exact; the budget leaves headroom for that.
"""

from __future__ import annotations

import heapq
import itertools
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from sys import getsizeof
from typing import Any, Final

from distsys.dataflow._frames import read_frames, write_frame
from distsys.dataflow._hashing import mix, stable_hash

__all__ = [
    "CombineTable",
    "GroupTable",
    "SpillArea",
    "batch_size",
    "external_sort",
    "grace_items",
    "hash_join",
    "merge_runs",
    "record_size",
]

FANOUT: Final = 16  # spill files per spill of a by-key table
MAX_LEVEL: Final = 3  # recursion depth of grace hashing; deeper, keep in memory
ENTRY: Final = 100  # bytes a dict entry costs beyond its key and value
FRAME: Final = 4096  # records per frame of a spill file
_MISSING: Final = object()
_CONTAINERS: Final = (tuple, list)


def record_size(record: Any) -> int:
    """Estimate the memory of ``record``: its size plus its items' (two levels deep)."""
    size = getsizeof(record)
    kind = type(record)
    if kind in _CONTAINERS:
        for item in record:
            size += getsizeof(item)
            if type(item) in _CONTAINERS:
                size += sum(map(getsizeof, item))
    elif kind is dict:
        size += sum(getsizeof(k) + getsizeof(v) for k, v in record.items())
    return size


def batch_size(batch: list[Any] | tuple[Any, ...]) -> int:
    """Estimate the memory of the records of ``batch`` from up to 8 evenly sampled ones."""
    n = len(batch)
    if n == 0:
        return 0
    step = max(1, n // 8)
    sample = batch[::step][:8]
    return sum(map(record_size, sample)) * n // len(sample) + 8 * n


class SpillArea:
    """A task's private directory of spill files, removed by ``close()``.

    Not thread-safe; one task owns it.
    """

    __slots__ = ("_counter", "_path", "metrics")

    def __init__(self, root: str, metrics: Any = None) -> None:
        self._path = os.path.join(root, f"spill-{uuid.uuid4().hex}")
        self._counter = itertools.count()
        self.metrics = metrics

    def new_path(self) -> str:
        """Return the path of a new, not yet created spill file."""
        os.makedirs(self._path, exist_ok=True)
        return os.path.join(self._path, f"{next(self._counter):06d}")

    def write(self, path: str, records: Iterable[Any], *, append: bool = True) -> int:
        """Write ``records`` to ``path`` in frames (appended, or replacing it); return bytes."""
        written = 0
        iterator = iter(records)
        with open(path, "ab" if append else "wb") as out:
            while batch := list(itertools.islice(iterator, FRAME)):
                written += write_frame(out, batch)
        if self.metrics is not None:
            self.metrics.spilled += written
        return written

    def read(self, path: str) -> Iterator[Any]:
        """Yield the records of a spill file, and delete it once read."""
        try:
            for batch in read_frames(path):
                yield from batch
        finally:
            os.unlink(path)

    def close(self) -> None:
        """Remove the directory and every spill file left in it."""
        shutil.rmtree(self._path, ignore_errors=True)


def _sub_partition(key: Any, level: int) -> int:
    return mix(stable_hash(key) ^ (0x5BD1E995 * (level + 1))) % FANOUT


class _Table:
    """Per-key state in a dict, with a cheap size estimate (abstract)."""

    __slots__ = ("_entry", "_since", "data")

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}
        self._entry = 0  # estimated bytes per entry, sampled
        self._since = 0  # batches since the last sample

    def _sample(self) -> None:
        sample = list(itertools.islice(self.data.items(), 16))
        if sample:
            size = sum(getsizeof(k) + record_size(v) for k, v in sample) // len(sample)
            self._entry = ENTRY + size

    def estimate(self) -> int:
        """Return the estimated bytes held."""
        self._since += 1
        if self._entry == 0 or self._since >= 64:
            self._since = 0
            self._sample()
        return len(self.data) * self._entry

    def add(self, batch: Any) -> None:
        """Merge a batch of input into the table."""
        raise NotImplementedError

    def add_state(self, items: Iterable[tuple[Any, Any]]) -> None:
        """Merge ``(key, state)`` items read back from a spill file."""
        raise NotImplementedError

    def fresh(self) -> _Table:
        """Return an empty table of the same kind."""
        raise NotImplementedError


class CombineTable(_Table):
    """``key -> combiner``: merges dicts (map-side combined frames) or ``(k, c)`` pairs.

    ``kind`` is ``"add"`` (combiners merge with ``+``: counts, sums), ``"first"`` (keep
    the first: distinct) or ``"generic"`` (``merge(c1, c2)``).
    """

    __slots__ = ("kind", "merge")

    def __init__(self, kind: str, merge: Callable[[Any, Any], Any] | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.merge = merge

    def add(self, batch: Any) -> None:
        data = self.data
        if self.kind == "first":
            if isinstance(batch, dict):
                for key in batch:
                    data.setdefault(key, None)
            else:
                for key, _ in batch:
                    data.setdefault(key, None)
            return
        items = batch.items() if isinstance(batch, dict) else batch
        if not data and isinstance(batch, dict):
            data.update(batch)
            return
        get = data.get
        if self.kind == "add":
            for key, value in items:
                current = get(key, _MISSING)
                data[key] = value if current is _MISSING else current + value
        else:
            merge = self.merge
            assert merge is not None
            for key, value in items:
                current = get(key, _MISSING)
                data[key] = value if current is _MISSING else merge(current, value)

    def add_state(self, items: Iterable[tuple[Any, Any]]) -> None:
        self.add(items if isinstance(items, list) else list(items))

    def fresh(self) -> CombineTable:
        return CombineTable(self.kind, self.merge)


class GroupTable(_Table):
    """``key -> [values]`` from ``(key, value)`` pairs."""

    __slots__ = ("_value_size", "_values")

    def __init__(self) -> None:
        super().__init__()
        self._values = 0
        self._value_size = 0

    def add(self, batch: Any) -> None:
        data = self.data
        get = data.get
        for key, value in batch:
            values = get(key)
            if values is None:
                data[key] = [value]
            else:
                values.append(value)
        if not self._value_size and batch:
            self._value_size = max(
                16, batch_size([v for _, v in batch[:64]]) // min(64, len(batch))
            )
        self._values += len(batch)

    def add_state(self, items: Iterable[tuple[Any, Any]]) -> None:
        data = self.data
        get = data.get
        for key, values in items:
            current = get(key)
            if current is None:
                data[key] = values
            else:
                current.extend(values)
            self._values += len(values)

    def estimate(self) -> int:
        self._since += 1
        if self._entry == 0 or self._since >= 64:
            self._since = 0
            sample = list(itertools.islice(self.data, 16))
            if sample:
                self._entry = ENTRY + 64 + sum(map(getsizeof, sample)) // len(sample)
        return len(self.data) * self._entry + self._values * (self._value_size + 8)

    def fresh(self) -> GroupTable:
        return GroupTable()


def _spill_table(table: _Table, files: list[str], spill: SpillArea, level: int) -> None:
    parts: list[list[tuple[Any, Any]]] = [[] for _ in range(FANOUT)]
    for item in table.data.items():
        parts[_sub_partition(item[0], level)].append(item)
    for path, part in zip(files, parts, strict=True):
        if part:
            spill.write(path, part)
    table.data.clear()
    if isinstance(table, GroupTable):
        table._values = 0


def grace_items(
    table: _Table,
    batches: Iterable[Any],
    budget: int,
    spill: SpillArea,
    *,
    level: int = 0,
    spilled_input: bool = False,
) -> Iterator[tuple[Any, Any]]:
    """Merge ``batches`` into ``table`` and yield its ``(key, state)`` items, within ``budget``.

    Args:
        table: an empty table deciding how batches merge.
        batches: input batches (or, with ``spilled_input``, lists of ``(key, state)``).
        budget: bytes the table may hold before it spills.
        spill: where spill files go.
        level: recursion depth (selects the sub-partitioning hash).
        spilled_input: the batches are state items read back from a spill.
    """
    files: list[str] | None = None
    add = table.add_state if spilled_input else table.add
    for batch in batches:
        add(batch)
        if level < MAX_LEVEL and table.estimate() > budget:
            if files is None:
                files = [spill.new_path() for _ in range(FANOUT)]
            _spill_table(table, files, spill, level)
    if files is None:
        yield from table.data.items()
        return
    _spill_table(table, files, spill, level)
    for path in files:
        if os.path.exists(path):
            chunks = _chunks(spill.read(path))
            yield from grace_items(
                table.fresh(), chunks, budget, spill, level=level + 1, spilled_input=True
            )


def _chunks(records: Iterator[Any], size: int = FRAME) -> Iterator[list[Any]]:
    while batch := list(itertools.islice(records, size)):
        yield batch


def hash_join(
    probe: Iterable[list[tuple[Any, Any]]],
    build: Iterable[list[tuple[Any, Any]]],
    *,
    probe_batch: Callable[[list[tuple[Any, Any]], Callable[[Any], Any]], list[Any]],
    budget: int,
    spill: SpillArea,
    level: int = 0,
) -> Iterator[Any]:
    """Join two streams of ``(key, value)`` batches: a table of ``build``, probed by ``probe``.

    ``probe_batch(batch, lookup)`` returns the output records of a probe batch, where
    ``lookup(key)`` is the list of the build side's values for ``key``, or None. When
    the build side outgrows ``budget``, both sides are partitioned into spill files by a
    second hash and joined file pair by file pair.
    """
    table = GroupTable()
    build_iter = iter(build)
    files: list[str] | None = None
    for batch in build_iter:
        table.add(batch)
        if level < MAX_LEVEL and table.estimate() > budget:
            files = [spill.new_path() for _ in range(FANOUT)]
            _spill_table(table, files, spill, level)
            break
    if files is None:
        lookup = table.data.get
        for batch in probe:
            yield from probe_batch(batch, lookup)
        return
    # Grace: spill the rest of the build side as (key, [value]) states, then the probe side.
    for batch in build_iter:
        _spill_pairs(batch, files, spill, level, wrap=True)
    probe_files = [spill.new_path() for _ in range(FANOUT)]
    for batch in probe:
        _spill_pairs(batch, probe_files, spill, level, wrap=False)
    for build_path, probe_path in zip(files, probe_files, strict=True):
        probe_part = _chunks(spill.read(probe_path)) if os.path.exists(probe_path) else iter(())
        build_part = (
            _chunks(_unwrap(spill.read(build_path))) if os.path.exists(build_path) else iter(())
        )
        yield from hash_join(
            probe_part,
            build_part,
            probe_batch=probe_batch,
            budget=budget,
            spill=spill,
            level=level + 1,
        )


def _spill_pairs(
    batch: list[tuple[Any, Any]], files: list[str], spill: SpillArea, level: int, *, wrap: bool
) -> None:
    parts: list[list[Any]] = [[] for _ in range(FANOUT)]
    for key, value in batch:
        parts[_sub_partition(key, level)].append((key, [value]) if wrap else (key, value))
    for path, part in zip(files, parts, strict=True):
        if part:
            spill.write(path, part)


def _unwrap(states: Iterator[tuple[Any, list[Any]]]) -> Iterator[tuple[Any, Any]]:
    for key, values in states:
        for value in values:
            yield key, value


def external_sort(
    batches: Iterable[list[Any]],
    key: Callable[[Any], Any] | None,
    *,
    reverse: bool,
    budget: int,
    spill: SpillArea,
) -> Iterator[Any]:
    """Yield the records of ``batches`` sorted (stably) by ``key``, within ``budget``."""
    buffer: list[Any] = []
    size = 0
    runs: list[str] = []
    for batch in batches:
        buffer += batch
        size += batch_size(batch)
        if size > budget:
            buffer.sort(key=key, reverse=reverse)
            path = spill.new_path()
            spill.write(path, buffer, append=False)
            runs.append(path)
            buffer, size = [], 0
    buffer.sort(key=key, reverse=reverse)
    if not runs:
        yield from buffer
        return
    # A stream being merged holds one frame of FRAME records in memory.
    per_stream = max(1, batch_size(buffer[:64]) * FRAME // max(1, min(64, len(buffer))))
    streams: list[Iterator[Any]] = [spill.read(path) for path in runs]
    streams.append(iter(buffer))
    yield from merge_runs(streams, key, reverse=reverse, fan_in=budget // per_stream, spill=spill)


def merge_runs(
    streams: list[Iterator[Any]],
    key: Callable[[Any], Any] | None,
    *,
    reverse: bool,
    fan_in: int,
    spill: SpillArea,
) -> Iterator[Any]:
    """Merge sorted streams (stably), at most ``fan_in`` at a time.

    Each stream being merged holds a frame in memory, so when there are more streams
    than the budget allows, groups of ``fan_in`` are first merged into spilled runs
    (multi-pass merging, as external sorts do). Streams should be lazy: one that has not
    been started holds nothing.
    """
    fan_in = max(2, fan_in)
    while len(streams) > fan_in:
        merged: list[Iterator[Any]] = []
        for start in range(0, len(streams), fan_in):
            group = streams[start : start + fan_in]
            if len(group) == 1:
                merged.append(group[0])
                continue
            path = spill.new_path()
            spill.write(path, heapq.merge(*group, key=key, reverse=reverse), append=False)
            merged.append(spill.read(path))
        streams = merged
    return heapq.merge(*streams, key=key, reverse=reverse)
