"""Dataset: a lazy, immutable, partitioned collection (PySpark's RDD, in spirit).

Transformations return a new Dataset over a new plan node and do no work; actions
(``collect``, ``count``, ``take``, ``top``, ``reduce``, ``save_text``, ``save_jsonl``) run
a job on the session's engine and return a value.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from distsys.dataflow._actions import (
    Action,
    abort_output,
    collect_action,
    count_action,
    prepare_output,
    reduce_action,
    save_action,
    take_action,
    top_action,
)
from distsys.dataflow._executor import Job
from distsys.dataflow._hashing import hash_partition
from distsys.dataflow._plan import (
    Aggregator,
    BroadcastJoin,
    Cache,
    CombineByKey,
    CountByValue,
    Distinct,
    Filter,
    FlatMap,
    GroupByKey,
    Join,
    Map,
    MapPartitions,
    Node,
    Partitioner,
    Repartition,
    SortBy,
    Union,
    describe,
    estimated_bytes,
)
from distsys.errors import ArgumentTypeError, InvalidArgumentError

if TYPE_CHECKING:
    from distsys.dataflow._session import Session

__all__ = ["Dataset"]

T = TypeVar("T")
U = TypeVar("U")
K = TypeVar("K")
V = TypeVar("V")
W = TypeVar("W")
A = TypeVar("A")

_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), frozenset, tuple)


@dataclass(frozen=True, slots=True)
class _KeyBy:
    fn: Callable[[Any], Any]

    def __call__(self, record: Any) -> tuple[Any, Any]:
        return self.fn(record), record


@dataclass(frozen=True, slots=True)
class _MapValues:
    fn: Callable[[Any], Any]

    def __call__(self, pair: tuple[Any, Any]) -> tuple[Any, Any]:
        key, value = pair
        return key, self.fn(value)


@dataclass(frozen=True, slots=True)
class _StartFrom:
    """``create`` of ``aggregate_by_key``: fold the first value into a copy of ``zero``."""

    zero: Any
    seq: Callable[[Any, Any], Any]

    def __call__(self, value: Any) -> Any:
        zero = self.zero if isinstance(self.zero, _IMMUTABLE) else copy.deepcopy(self.zero)
        return self.seq(zero, value)


def _callable(operation: str, fn: object) -> None:
    if not callable(fn):
        raise ArgumentTypeError(f"{operation}() function", fn, "a callable")


def _count(operation: str, value: object, field: str = "partitions") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{operation}() {field}", value, "an int >= 1")
    if value < 1:
        raise InvalidArgumentError(f"{operation}() {field}", value, "an int >= 1")
    return value


class Dataset(Generic[T]):
    """A lazy, partitioned collection of records of type ``T``, bound to a session.

    Build one from a :class:`~distsys.dataflow.Session` (``read_text``, ``from_iterable``
    ...), transform it (each transformation returns a new Dataset and computes nothing),
    then run an action. Narrow transformations (``map``, ``filter``...) are fused into one
    pass per partition; by-key ones (``reduce_by_key``, ``join``...) shuffle. Functions
    given to transformations are shipped to worker processes by pickle: define them at
    module level (lambdas do not pickle; the session says which operation got one).

    Immutable, so safe to share between threads; actions run one job at a time on the
    session.
    """

    __slots__ = ("_node", "_session")

    def __init__(self, session: Session, node: Node) -> None:
        self._session = session
        self._node = node

    @property
    def node(self) -> Node:
        """The plan node this dataset stands for."""
        return self._node

    @property
    def session(self) -> Session:
        """The session it runs on."""
        return self._session

    @property
    def partitions(self) -> int:
        """How many partitions it has."""
        return self._node.partitions

    def explain(self) -> str:
        """Return the plan as an indented tree (shuffles indent, like Spark's ``toDebugString``)."""
        return describe(self._node)

    def __repr__(self) -> str:
        return f"Dataset({self._node.label}, partitions={self.partitions})"

    def _new(self, node: Node) -> Dataset[Any]:
        return Dataset(self._session, node)

    def _wide(self, operation: str, partitions: int | None) -> int:
        return self._session.parallelism if partitions is None else _count(operation, partitions)

    # ---------------------------------------------------------------- narrow

    def map(self, fn: Callable[[T], U]) -> Dataset[U]:
        """Return the dataset of ``fn(record)`` for each record."""
        _callable("map", fn)
        return self._new(Map(self._node, fn))

    def flat_map(self, fn: Callable[[T], Iterable[U]]) -> Dataset[U]:
        """Return the records of the iterables ``fn(record)``, flattened (``str.split``!)."""
        _callable("flat_map", fn)
        return self._new(FlatMap(self._node, fn))

    def filter(self, fn: Callable[[T], object]) -> Dataset[T]:
        """Return the records for which ``fn(record)`` is true."""
        _callable("filter", fn)
        return self._new(Filter(self._node, fn))

    def map_partitions(self, fn: Callable[[Iterator[T]], Iterable[U]]) -> Dataset[U]:
        """Return ``fn(records)`` per partition: ``fn`` gets an iterator, returns an iterable."""
        _callable("map_partitions", fn)
        return self._new(MapPartitions(self._node, fn))

    def key_by(self, fn: Callable[[T], K]) -> Dataset[tuple[K, T]]:
        """Return ``(fn(record), record)`` pairs."""
        _callable("key_by", fn)
        return self._new(Map(self._node, _KeyBy(fn), "key_by"))

    def map_values(self: Dataset[tuple[K, V]], fn: Callable[[V], W]) -> Dataset[tuple[K, W]]:
        """Return ``(key, fn(value))`` for each ``(key, value)`` pair."""
        _callable("map_values", fn)
        return self._new(Map(self._node, _MapValues(fn), "map_values"))

    def keys(self: Dataset[tuple[K, V]]) -> Dataset[K]:
        """Return the key of each pair."""
        return self._new(Map(self._node, itemgetter(0), "keys"))

    def values(self: Dataset[tuple[K, V]]) -> Dataset[V]:
        """Return the value of each pair."""
        return self._new(Map(self._node, itemgetter(1), "values"))

    def union(self, *others: Dataset[T]) -> Dataset[T]:
        """Return this dataset's records followed by the others' (partitions concatenated)."""
        for other in others:
            if not isinstance(other, Dataset):
                raise ArgumentTypeError("union() dataset", other, "a Dataset")
            self._same_session("union", other)
        return self._new(Union((self._node, *(o._node for o in others))))

    def cache(self) -> Dataset[T]:
        """Return this dataset, kept once computed (on disk, in the scratch directory).

        The first action computes it; later actions read it back instead of recomputing
        it. ``unpersist()`` drops it.
        """
        if isinstance(self._node, Cache):
            return self
        return self._new(Cache(self._node))

    def unpersist(self) -> None:
        """Drop what ``cache()`` kept of this dataset (nothing if it is not cached)."""
        if isinstance(self._node, Cache):
            self._session.executor.unpersist(self._node)

    def _same_session(self, operation: str, other: Dataset[Any]) -> None:
        if other._session is not self._session:
            raise InvalidArgumentError(
                f"{operation}() dataset", other, "a dataset of the same session"
            )

    # ---------------------------------------------------------------- wide

    def reduce_by_key(
        self: Dataset[tuple[K, V]],
        fn: Callable[[V, V], V],
        *,
        partitions: int | None = None,
        partitioner: Partitioner = hash_partition,
    ) -> Dataset[tuple[K, V]]:
        """Return one ``(key, value)`` per key, its values folded with ``fn`` (map-side first).

        ``fn`` must be associative and commutative. ``operator.add`` takes a faster path.
        """
        _callable("reduce_by_key", fn)
        count = self._wide("reduce_by_key", partitions)
        agg = Aggregator.reducing(fn)
        return self._new(CombineByKey(self._node, count, agg, partitioner, "reduce_by_key"))

    def aggregate_by_key(
        self: Dataset[tuple[K, V]],
        zero: A,
        seq: Callable[[A, V], A],
        combine: Callable[[A, A], A],
        *,
        partitions: int | None = None,
        partitioner: Partitioner = hash_partition,
    ) -> Dataset[tuple[K, A]]:
        """Return ``(key, aggregate)`` per key: values folded into a copy of ``zero`` by ``seq``,
        partial aggregates merged by ``combine`` (Spark's ``aggregateByKey``)."""
        _callable("aggregate_by_key", seq)
        _callable("aggregate_by_key", combine)
        count = self._wide("aggregate_by_key", partitions)
        agg = Aggregator(_StartFrom(zero, seq), seq, combine)
        return self._new(CombineByKey(self._node, count, agg, partitioner, "aggregate_by_key"))

    def group_by_key(
        self: Dataset[tuple[K, V]],
        *,
        partitions: int | None = None,
        partitioner: Partitioner = hash_partition,
    ) -> Dataset[tuple[K, list[V]]]:
        """Return ``(key, [values])`` per key. Prefer ``reduce_by_key`` when you can."""
        count = self._wide("group_by_key", partitions)
        return self._new(GroupByKey(self._node, count, partitioner))

    def count_by_value(
        self, *, partitions: int | None = None, partitioner: Partitioner = hash_partition
    ) -> Dataset[tuple[T, int]]:
        """Return ``(record, count)`` per distinct record (counted map-side with a Counter)."""
        count = self._wide("count_by_value", partitions)
        return self._new(CountByValue(self._node, count, partitioner))

    def distinct(
        self, *, partitions: int | None = None, partitioner: Partitioner = hash_partition
    ) -> Dataset[T]:
        """Return each distinct record once."""
        count = self._wide("distinct", partitions)
        return self._new(Distinct(self._node, count, partitioner))

    def join(
        self: Dataset[tuple[K, V]],
        other: Dataset[tuple[K, W]],
        *,
        partitions: int | None = None,
        partitioner: Partitioner = hash_partition,
        broadcast: bool | None = None,
    ) -> Dataset[tuple[K, tuple[V, W]]]:
        """Return ``(key, (v, w))`` for every pair of values of keys present in both.

        Args:
            other: the dataset to join with.
            partitions: partitions of the result of a shuffled join.
            partitioner: how keys are spread over them.
            broadcast: True computes ``other`` whole and sends it to every task of this
                dataset, which then needs no shuffle (a map-side join; the result keeps
                this dataset's partitions); False shuffles both sides by key; None (the
                default) broadcasts when ``other``'s input is known to be small (under
                the session's ``broadcast_limit``) and neither ``partitions`` nor
                ``partitioner`` is given.
        """
        return self._join("join", other, "inner", partitions, partitioner, broadcast)

    def left_join(
        self: Dataset[tuple[K, V]],
        other: Dataset[tuple[K, W]],
        *,
        partitions: int | None = None,
        partitioner: Partitioner = hash_partition,
        broadcast: bool | None = None,
    ) -> Dataset[tuple[K, tuple[V, W | None]]]:
        """Like ``join``, and ``(key, (v, None))`` for keys missing from ``other``."""
        return self._join("left_join", other, "left", partitions, partitioner, broadcast)

    def _join(
        self,
        operation: str,
        other: Dataset[Any],
        how: str,
        partitions: int | None,
        partitioner: Partitioner,
        broadcast: bool | None,
    ) -> Dataset[Any]:
        if not isinstance(other, Dataset):
            raise ArgumentTypeError(f"{operation}() other", other, "a Dataset")
        self._same_session(operation, other)
        default_layout = partitions is None and partitioner is hash_partition
        if broadcast is None:
            size = estimated_bytes(other._node)
            broadcast = (
                default_layout and size is not None and size <= self._session.broadcast_limit
            )
        if broadcast:
            if not default_layout:
                raise InvalidArgumentError(
                    f"{operation}() broadcast",
                    True,
                    "no partitions= or partitioner= (a broadcast join keeps this dataset's "
                    "partitions)",
                )
            return self._new(BroadcastJoin(self._node, other._node, how))  # type: ignore[arg-type]
        count = self._wide(operation, partitions)
        return self._new(Join(self._node, other._node, count, how, partitioner))  # type: ignore[arg-type]

    def sort_by(
        self, key: Callable[[T], Any], *, ascending: bool = True, partitions: int | None = None
    ) -> Dataset[T]:
        """Return the records sorted by ``key(record)``, globally: partition 0 first.

        Range partitioned with bounds taken from a sample of the keys, and stable: equal
        keys keep the order they had.
        """
        _callable("sort_by", key)
        count = self._wide("sort_by", partitions)
        return self._new(SortBy(self._node, count, key, bool(ascending)))

    def repartition(self, partitions: int) -> Dataset[T]:
        """Return the records spread evenly over ``partitions`` partitions (a shuffle)."""
        count = _count("repartition", partitions)
        return self._new(Repartition(self._node, count))

    # ---------------------------------------------------------------- actions

    def _run(self, action: Action[Any, U], partitions: tuple[int, ...] | None = None) -> U:
        return self._session.run(Job(self._node, action, partitions)).value

    def collect(self) -> list[T]:
        """Return every record, in partition order."""
        return self._run(collect_action())

    def count(self) -> int:
        """Return the number of records."""
        return self._run(count_action())

    def take(self, n: int) -> list[T]:
        """Return the first ``n`` records, reading as few partitions as it can.

        Scans partition 0 first, then four times as many partitions each round.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidArgumentError("take() n", n, "an int >= 0")
        found: list[T] = []
        scanned, step, total = 0, 1, self.partitions
        while len(found) < n and scanned < total:
            chosen = tuple(range(scanned, min(total, scanned + step)))
            found += self._run(take_action(n - len(found)), chosen)  # type: ignore[arg-type]
            scanned += len(chosen)
            step *= 4
        return found[:n]

    def first(self) -> T:
        """Return the first record.

        Raises:
            EmptyDatasetError: there is none.
        """
        from distsys.dataflow._errors import EmptyDatasetError

        found = self.take(1)
        if not found:
            raise EmptyDatasetError("first")
        return found[0]

    def top(self, n: int, *, key: Callable[[T], Any] | None = None) -> list[T]:
        """Return the ``n`` largest records (by ``key``), largest first."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidArgumentError("top() n", n, "an int >= 0")
        if key is not None:
            _callable("top", key)
        return self._run(top_action(n, key))

    def reduce(self, fn: Callable[[T, T], T]) -> T:
        """Return the records folded with ``fn`` (associative and commutative).

        Raises:
            EmptyDatasetError: the dataset has no records.
        """
        _callable("reduce", fn)
        result: T = self._run(reduce_action(fn))
        return result

    def save_text(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> list[str]:
        """Write ``str(record)`` lines to ``path/part-<i>`` per partition, then ``_SUCCESS``.

        Returns:
            The part files written.

        Raises:
            InvalidArgumentError: ``path`` has files and ``overwrite`` is false.
        """
        return self._save(path, "text", overwrite)

    def save_jsonl(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> list[str]:
        """Write each record as a JSON line to ``path/part-<i>``, then ``_SUCCESS``."""
        return self._save(path, "jsonl", overwrite)

    def _save(self, path: str | os.PathLike[str], format: Any, overwrite: bool) -> list[str]:
        directory = prepare_output(os.fspath(path), overwrite=overwrite)
        try:
            return self._run(save_action(directory, format))
        except BaseException:
            abort_output(directory)
            raise
