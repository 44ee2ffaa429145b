"""``map_reduce``: the model of Dean and Ghemawat's MapReduce paper, on the dataset engine.

::

    split ─map─▶ (k, v) ─combine─▶ (k, v') ─partition(k) mod R─▶ R files per map task
                                                                   │ shuffle: reduce task r
    output ◀─reduce(k, values)─ group by k ◀─ sort by k ◀─ reads file r of every map task

``map(record)`` emits intermediate ``(key, value)`` pairs; the optional ``combine(key,
values)`` runs on each map task's output (grouped by key, a buffer at a time) and emits
pairs too — usually the reducer itself, as in the paper; ``partitioner(key, R)`` picks
the reduce task; each reduce task sorts its pairs by key (spilling sorted runs to disk
and merging them when they outgrow memory) and calls ``reduce(key, values)`` once per
key, in increasing key order, with an iterator over that key's values.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Any, Final, TypeVar

from distsys.dataflow._dataset import Dataset
from distsys.dataflow._hashing import hash_partition
from distsys.dataflow._plan import FlatMap, MapPartitions, Node, PartitionAndSort, Partitioner
from distsys.dataflow._session import Session
from distsys.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["map_reduce"]

K = TypeVar("K")
V = TypeVar("V")
U = TypeVar("U")
COMBINE_BUFFER: Final = 65_536  # values a map task buffers before it runs the combiner


@dataclass(frozen=True, slots=True)
class _Combine:
    """Run the combiner on a map task's pairs, grouped by key, a buffer at a time."""

    combiner: Callable[[Any, Iterator[Any]], Iterable[tuple[Any, Any]]]

    def __call__(self, pairs: Iterator[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
        buffer: dict[Any, list[Any]] = {}
        held = 0
        for key, value in pairs:
            values = buffer.get(key)
            if values is None:
                buffer[key] = [value]
            else:
                values.append(value)
            held += 1
            if held >= COMBINE_BUFFER:
                yield from self._flush(buffer)
                buffer, held = {}, 0
        yield from self._flush(buffer)

    def _flush(self, buffer: dict[Any, list[Any]]) -> Iterator[tuple[Any, Any]]:
        for key, values in buffer.items():
            yield from self.combiner(key, iter(values))


@dataclass(frozen=True, slots=True)
class _Reduce:
    """Call the reducer once per key of a partition sorted by key."""

    reducer: Callable[[Any, Iterator[Any]], Iterable[Any]]

    def __call__(self, pairs: Iterator[tuple[Any, Any]]) -> Iterator[Any]:
        value = itemgetter(1)
        for key, group in groupby(pairs, key=itemgetter(0)):
            yield from self.reducer(key, map(value, group))


def map_reduce(
    inputs: Dataset[Any] | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    mapper: Callable[[Any], Iterable[tuple[K, V]]],
    reducer: Callable[[K, Iterator[V]], Iterable[U]],
    *,
    combiner: Callable[[K, Iterator[V]], Iterable[tuple[K, V]]] | None = None,
    partitioner: Partitioner = hash_partition,
    reducers: int | None = None,
    session: Session | None = None,
) -> Dataset[U]:
    """Return the dataset of what ``reducer`` emits: MapReduce over ``inputs``. Lazy.

    Args:
        inputs: a dataset, or text files (read line by line with ``session.read_text``).
        mapper: ``record -> iterable of (key, value)``.
        reducer: ``(key, iterator of values) -> iterable of outputs``; called once per
            key, in increasing key order within each reduce task.
        combiner: ``(key, iterator of values) -> iterable of (key, value)``, run on each
            map task's output before the shuffle; must not change the result (often the
            reducer).
        partitioner: ``(key, R) -> reduce task``; default a stable hash of the key.
        reducers: ``R``, the number of reduce tasks (default: the session's parallelism).
        session: the session, needed when ``inputs`` are paths.

    Raises:
        InvalidArgumentError: paths without a session, or a bad ``reducers``.
        ArgumentTypeError: a function is not callable.
    """
    if isinstance(inputs, Dataset):
        data = inputs
    elif session is None:
        raise InvalidArgumentError(
            "session", None, "a Session when inputs are paths", detail="pass session=..."
        )
    else:
        data = session.read_text(inputs)
    for name, fn in (("mapper", mapper), ("reducer", reducer), ("combiner", combiner)):
        if fn is not None and not callable(fn):
            raise ArgumentTypeError(f"map_reduce() {name}", fn, "a callable")
    count = data.session.parallelism if reducers is None else reducers
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidArgumentError("map_reduce() reducers", reducers, "an int >= 1")
    node: Node = FlatMap(data.node, mapper, "map")
    if combiner is not None:
        node = MapPartitions(node, _Combine(combiner), "combine")
    shuffled = PartitionAndSort(node, count, partitioner)
    return Dataset(data.session, MapPartitions(shuffled, _Reduce(reducer), "reduce"))
