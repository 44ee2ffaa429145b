"""The map side of a shuffle: combine, partition and write one map task's output.

A map task of shuffle ``S`` writes into ``S/s<side>-m<task>/``: one file ``r<partition>``
per reduce partition that receives records (a sort writes sorted runs ``run-<n>``
instead). Files are sequences of frames (:mod:`distsys.dataflow._frames`). The task
writes into a temporary directory and renames it into place when it succeeds, so a
failed or killed attempt never leaves output a reduce task could read.

Each writer streams the partition's records in chunks, so per-record Python work is
only what the operation needs:

- ``count_by_value``: ``Counter.update(chunk)`` — a C loop — then one dict per reduce
  partition;
- ``reduce_by_key`` / ``aggregate_by_key``: a dict of combiners (``+`` inlined when the
  function is ``operator.add``), then partitioned;
- ``distinct``: ``dict.fromkeys``; ``group_by_key``, ``join``, the MapReduce shuffle:
  hash partitioning of the pairs (no combining); ``repartition``: round-robin slices;
- ``sort_by``: sorted runs, a sparse index of each run, and a sample of its keys.

Map-side dicts that outgrow the memory budget are flushed early as partial combiners:
the reduce side merges them anyway.
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from xxhash import xxh3_64_intdigest

from distsys.dataflow._errors import RecordTypeError
from distsys.dataflow._frames import write_frame
from distsys.dataflow._hashing import GOLDEN, M64, hash_partition, stable_hash
from distsys.dataflow._plan import Aggregator, Partitioner
from distsys.dataflow._spill import ENTRY, batch_size, record_size
from distsys.errors import InvalidArgumentError

__all__ = [
    "CombineWriter",
    "CountWriter",
    "DistinctWriter",
    "MapOutput",
    "PairWriter",
    "RoundRobinWriter",
    "Run",
    "SortWriter",
    "Writer",
    "commit_directory",
    "map_directory",
]

CHUNK: Final = 512  # records taken from the stream at a time: few enough to stay in cache
COUNT_CHUNK: Final = 65_536  # records a Counter consumes between two budget checks
WRITE_BUFFER: Final = 16 << 20  # bytes buffered across buckets before they are written
SORT_FRAME: Final = 2048  # records per frame of a sorted run
SAMPLES: Final = 64  # keys sampled per sorted run and reduce partition
PAIR: Final = "a (key, value) pair: a tuple or list of two items"
_MISSING: Final = object()
_ONE: Final = 1


@dataclass(frozen=True, slots=True)
class Run:
    """One sorted run a sort's map task wrote.

    Attributes:
        path: the file, relative to the shuffle directory.
        frames: per frame: ``(first key, last key, byte offset, bytes, records)``.
    """

    path: str
    frames: tuple[tuple[Any, Any, int, int, int], ...]


@dataclass(frozen=True, slots=True)
class MapOutput:
    """What a map task wrote, reported to the driver.

    Attributes:
        sizes: bytes written for each reduce partition (a sort: one total).
        records: records written.
        runs: a sort's sorted runs.
        samples: a sort's sampled keys, each with the number of records it stands for.
    """

    sizes: tuple[int, ...]
    records: int
    runs: tuple[Run, ...] = ()
    samples: tuple[tuple[Any, float], ...] = ()


def map_directory(shuffle: str, side: int, task: int) -> str:
    """Return where map task ``task`` of input ``side`` of a shuffle keeps its output."""
    return os.path.join(shuffle, f"s{side}-m{task:05d}")


def commit_directory(temporary: str, final: str) -> None:
    """Move a successful attempt's output into place (an earlier success is kept)."""
    try:
        os.rename(temporary, final)
    except OSError:
        if not os.path.isdir(final):
            raise
        shutil.rmtree(temporary, ignore_errors=True)


def chunks(records: Iterator[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    """Yield lists of up to ``size`` records."""
    islice = itertools.islice
    while chunk := list(islice(records, size)):
        yield chunk


def _not_a_pair(operation: str, chunk: list[Any], exc: BaseException) -> BaseException:
    """Return the error to raise for ``exc``: about the chunk's first non-pair, if any."""
    for record in chunk:
        if type(record) not in (tuple, list) or len(record) != 2:
            return RecordTypeError(operation, record, PAIR)
    return exc


def _check_first(operation: str, chunk: list[Any]) -> None:
    first = chunk[0]
    if type(first) not in (tuple, list) or len(first) != 2:
        raise RecordTypeError(operation, first, PAIR)


class _Buckets:
    """Per-partition buffers of one map task, written as frames when they grow."""

    __slots__ = ("buckets", "count", "directory", "metrics", "pending", "records", "sizes")

    def __init__(self, directory: str, count: int, metrics: Any) -> None:
        self.directory = directory
        self.count = count
        self.metrics = metrics
        self.buckets: list[Any] = [[] for _ in range(count)]
        self.sizes = [0] * count
        self.pending = 0
        self.records = 0

    def output(self) -> MapOutput:
        """Return what was written."""
        return MapOutput(tuple(self.sizes), self.records)

    def write(self, partition: int, batch: Any) -> None:
        """Append one frame to partition ``partition``'s file."""
        path = os.path.join(self.directory, f"r{partition:05d}")
        with open(path, "ab") as out:
            written = write_frame(out, batch)
        self.sizes[partition] += written
        self.records += len(batch)
        if self.metrics is not None:
            self.metrics.shuffle_written += written
            self.metrics.records_out += len(batch)

    def flush(self) -> None:
        """Write every non-empty bucket."""
        for partition, bucket in enumerate(self.buckets):
            if bucket:
                self.write(partition, bucket)
                self.buckets[partition] = []
        self.pending = 0


def split_dict(
    data: dict[Any, Any], count: int, partitioner: Partitioner, operation: str
) -> list[dict[Any, Any]]:
    """Return ``data`` cut into ``count`` dicts by the partition of each key."""
    if count == 1:
        return [data]
    parts: list[dict[Any, Any]] = [{} for _ in range(count)]
    if partitioner is hash_partition:
        xxh = xxh3_64_intdigest
        for key, value in data.items():
            kind = type(key)
            if kind is str:
                parts[xxh(key.encode("utf-8", "surrogatepass")) % count][key] = value
            elif kind is int:
                h = ((key & M64) * GOLDEN) & M64
                parts[(h ^ (h >> 32)) % count][key] = value
            else:
                parts[stable_hash(key) % count][key] = value
    else:
        for key, value in data.items():
            parts[_checked(partitioner, key, count, operation)][key] = value
    return parts


def _checked(partitioner: Partitioner, key: Any, count: int, operation: str) -> int:
    partition = partitioner(key, count)
    if type(partition) is not int or not 0 <= partition < count:
        raise InvalidArgumentError(
            f"{operation}() partitioner",
            partitioner,
            f"a function returning an int in [0, {count})",
            detail=f"it returned {partition!r} for the key {key!r}",
        )
    return partition


class Writer:
    """How a map task writes its partition's records for one shuffle (abstract)."""

    __slots__ = ()

    def write(
        self, records: Iterator[Any], directory: str, budget: int, metrics: Any, task: int = 0
    ) -> MapOutput:
        """Consume map task ``task``'s ``records``, write them under ``directory``.

        Returns:
            What was written, for the driver.
        """
        raise NotImplementedError


class _DictWriter(Writer):
    """A writer whose output is a dict per reduce partition, flushed when too big."""

    __slots__ = ()
    count: int
    partitioner: Partitioner
    operation: str

    def flush(self, data: dict[Any, Any], buckets: _Buckets) -> None:
        for partition, part in enumerate(
            split_dict(data, self.count, self.partitioner, self.operation)
        ):
            if part:
                buckets.write(partition, part)


@dataclass(frozen=True, slots=True)
class CountWriter(_DictWriter):
    """``count_by_value``: a Counter of the records, map-side.

    The Counter consumes the lazy record stream directly (``Counter.update`` on an
    ``islice``: a C loop, and each record is counted while still in the CPU cache); the
    stream is interrupted only to check the budget.
    """

    count: int
    partitioner: Partitioner = hash_partition
    operation: str = "count_by_value"

    def write(
        self, records: Iterator[Any], directory: str, budget: int, metrics: Any, task: int = 0
    ) -> MapOutput:
        buckets = _Buckets(directory, self.count, metrics)
        counter: Counter[Any] = Counter()
        islice = itertools.islice
        entry = 0
        while (first := next(records, _MISSING)) is not _MISSING:
            counter[first] += 1
            counter.update(islice(records, COUNT_CHUNK))
            if not entry:
                sample = list(islice(counter, 64))
                entry = ENTRY + batch_size(sample) // len(sample)
            if len(counter) * entry > budget:
                self.flush(counter, buckets)
                counter = Counter()
        self.flush(counter, buckets)
        return buckets.output()


@dataclass(frozen=True, slots=True)
class DistinctWriter(_DictWriter):
    """``distinct``: a dict of the records seen (``dict.fromkeys``), map-side."""

    count: int
    partitioner: Partitioner = hash_partition
    operation: str = "distinct"

    def write(
        self, records: Iterator[Any], directory: str, budget: int, metrics: Any, task: int = 0
    ) -> MapOutput:
        buckets = _Buckets(directory, self.count, metrics)
        seen: dict[Any, None] = {}
        entry = 0
        for chunk in chunks(records):
            seen.update(dict.fromkeys(chunk))
            if not entry:
                entry = ENTRY + batch_size(chunk[:64]) // min(64, len(chunk))
            if len(seen) * entry > budget:
                self.flush(seen, buckets)
                seen = {}
        self.flush(seen, buckets)
        return buckets.output()


@dataclass(frozen=True, slots=True)
class CombineWriter(_DictWriter):
    """``reduce_by_key`` / ``aggregate_by_key``: a dict of combiners, map-side."""

    count: int
    aggregator: Aggregator
    partitioner: Partitioner = hash_partition
    operation: str = "reduce_by_key"

    def write(
        self, records: Iterator[Any], directory: str, budget: int, metrics: Any, task: int = 0
    ) -> MapOutput:
        buckets = _Buckets(directory, self.count, metrics)
        data: Counter[Any] = Counter()  # a dict whose update() counts an iterable in C
        entry = 0
        combine = self._combine_add if self.aggregator.is_add else self._combine
        for chunk in chunks(records):
            _check_first(self.operation, chunk)
            try:
                combine(data, chunk)
            except (TypeError, ValueError) as exc:
                error = _not_a_pair(self.operation, chunk, exc)
                if error is exc:
                    raise
                raise error from exc
            if not entry and data:
                sample = list(itertools.islice(data.items(), 32))
                entry = ENTRY + sum(map(record_size, sample)) // len(sample)
            if len(data) * entry > budget:
                self.flush(data, buckets)
                data = Counter()
        self.flush(data, buckets)
        return buckets.output()

    @staticmethod
    def _combine_add(data: Counter[Any], chunk: list[Any]) -> None:
        # Pairs whose values are all the int 1 (word counts) are counted in C. The sum
        # is an int only if no value is a float, Decimal or Fraction equal to 1.
        if chunk[0][1] is _ONE:  # identity: the int 1, not True or 1.0 (a cheap first test)
            keys, values = zip(*chunk, strict=True)
            if values.count(1) == len(values) and type(sum(values)) is int:
                data.update(keys)  # Counter.update: a C loop
                return
        get = data.get
        missing = _MISSING
        for key, value in chunk:
            current = get(key, missing)
            data[key] = value if current is missing else current + value

    def _combine(self, data: Counter[Any], chunk: list[Any]) -> None:
        get = data.get
        missing = _MISSING
        create, merge = self.aggregator.create, self.aggregator.merge_value
        for key, value in chunk:
            current = get(key, missing)
            data[key] = create(value) if current is missing else merge(current, value)


@dataclass(frozen=True, slots=True)
class PairWriter(Writer):
    """``group_by_key``, ``join``, the MapReduce shuffle: pairs hash partitioned by key."""

    count: int
    partitioner: Partitioner = hash_partition
    operation: str = "group_by_key"

    def write(
        self, records: Iterator[Any], directory: str, budget: int, metrics: Any, task: int = 0
    ) -> MapOutput:
        count = self.count
        buckets = _Buckets(directory, count, metrics)
        limit = min(budget, WRITE_BUFFER)
        lists = buckets.buckets
        for chunk in chunks(records):
            _check_first(self.operation, chunk)
            try:
                self._partition(chunk, lists, count)
            except (TypeError, ValueError) as exc:
                error = _not_a_pair(self.operation, chunk, exc)
                if error is exc:
                    raise
                raise error from exc
            buckets.pending += batch_size(chunk)
            if buckets.pending > limit:
                buckets.flush()
        buckets.flush()
        return buckets.output()

    def _partition(self, chunk: list[Any], lists: list[list[Any]], count: int) -> None:
        # ``key, _ = record`` also checks that the record is a pair, at no extra cost.
        if count == 1:
            for _key, _ in chunk:
                pass
            lists[0] += chunk
            return
        partitioner = self.partitioner
        if partitioner is hash_partition:
            # stable_hash inlined for the common key types: a call per record costs more.
            xxh = xxh3_64_intdigest
            for record in chunk:
                key, _ = record
                kind = type(key)
                if kind is str:
                    lists[xxh(key.encode("utf-8", "surrogatepass")) % count].append(record)
                elif kind is int:
                    h = ((key & M64) * GOLDEN) & M64
                    lists[(h ^ (h >> 32)) % count].append(record)
                else:
                    lists[stable_hash(key) % count].append(record)
        else:
            for record in chunk:
                key, _ = record
                lists[_checked(partitioner, key, count, self.operation)].append(record)


@dataclass(frozen=True, slots=True)
class RoundRobinWriter(Writer):
    """``repartition``: record ``j`` of map task ``m`` goes to ``(m + j) % count``."""

    count: int

    def write(
        self, records: Iterator[Any], directory: str, budget: int, metrics: Any, task: int = 0
    ) -> MapOutput:
        count = self.count
        buckets = _Buckets(directory, count, metrics)
        limit = min(budget, WRITE_BUFFER)
        offset = task % count
        for chunk in chunks(records):
            for partition in range(count):
                buckets.buckets[partition] += chunk[(partition - offset) % count :: count]
            offset = (offset + len(chunk)) % count
            buckets.pending += batch_size(chunk)
            if buckets.pending > limit:
                buckets.flush()
        buckets.flush()
        return buckets.output()


@dataclass(frozen=True, slots=True)
class SortWriter(Writer):
    """``sort_by``: sorted runs of at most the budget each, indexed and sampled."""

    count: int
    key: Callable[[Any], Any]
    ascending: bool = True

    def write(
        self, records: Iterator[Any], directory: str, budget: int, metrics: Any, task: int = 0
    ) -> MapOutput:
        runs: list[Run] = []
        samples: list[tuple[Any, float]] = []
        buffer: list[Any] = []
        size = 0
        written = 0
        final = os.path.basename(directory).split(".", 1)[0]  # the directory after commit
        for chunk in chunks(records):
            buffer += chunk
            size += batch_size(chunk)
            if size > budget:
                written += self._run(buffer, directory, final, runs, samples, metrics)
                buffer, size = [], 0
        if buffer or not runs:
            written += self._run(buffer, directory, final, runs, samples, metrics)
        return MapOutput(
            (written,), sum(f[4] for r in runs for f in r.frames), tuple(runs), tuple(samples)
        )

    def _run(
        self,
        buffer: list[Any],
        directory: str,
        final: str,
        runs: list[Run],
        samples: list[tuple[Any, float]],
        metrics: Any,
    ) -> int:
        key = self.key
        try:
            buffer.sort(key=key, reverse=not self.ascending)
        except TypeError as exc:
            raise RecordTypeError(
                "sort_by", None, "records whose keys compare", detail=str(exc), shown="a record"
            ) from None
        name = f"run-{len(runs):03d}"
        frames = []
        offset = 0
        with open(os.path.join(directory, name), "wb") as out:
            for start in range(0, len(buffer), SORT_FRAME):
                frame = buffer[start : start + SORT_FRAME]
                size = write_frame(out, frame)
                frames.append((key(frame[0]), key(frame[-1]), offset, size, len(frame)))
                offset += size
        runs.append(Run(os.path.join(final, name), tuple(frames)))
        if buffer:
            wanted = min(len(buffer), SAMPLES * self.count)
            step = len(buffer) / wanted
            weight = len(buffer) / wanted
            samples += [(key(buffer[int(i * step)]), weight) for i in range(wanted)]
        if metrics is not None:
            metrics.shuffle_written += offset
            metrics.records_out += len(buffer)
        return offset


def temporary_directory(final: str) -> str:
    """Return a fresh directory for an attempt whose output will be renamed to ``final``."""
    path = f"{final}.{uuid.uuid4().hex[:12]}.tmp"
    os.makedirs(path)
    return path
