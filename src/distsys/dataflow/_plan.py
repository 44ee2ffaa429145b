"""The logical plan: a small immutable DAG of operations, shared by every engine.

A :class:`~distsys.dataflow.Dataset` is a handle on one node of this DAG. Nodes are
frozen dataclasses compared by identity (the same sub-plan used twice — a self-join, a
cached dataset — is one node, computed once). Every node has a number of
``partitions``; partition ``i`` of a node is a function of its parents' partitions:

======================  ===============================================================
node                    partition ``i`` is
======================  ===============================================================
``Source``              ``source.read(i)``: split ``i`` of the files, chunk ``i`` of an
                        iterable (engine-neutral: any engine can call ``read``)
``Map`` / ``FlatMap``   ``map(fn, p)``, ``chain.from_iterable(map(fn, p))``,
``Filter``              ``filter(fn, p)``, ``fn(p)`` where ``p`` is the parent's
``MapPartitions``       partition ``i`` (narrow: no data moves between partitions)
``Union``               partition ``i`` of the parent it falls in (partitions of the
                        parents are concatenated in order; narrow)
``BroadcastJoin``       ``parent``'s partition ``i`` joined with all of ``right``, which
                        is computed first and sent whole to every task (a map-side join)
``Cache``               its parent's partition ``i``, computed once and kept
``CombineByKey``        the ``(key, combiner)`` pairs whose ``partitioner(key, n) == i``,
                        values combined with the :class:`Aggregator` (map-side first)
``CountByValue``        ``(record, count)`` pairs of the records hashed to ``i``
``Distinct``            the distinct records hashed to ``i``
``GroupByKey``          ``(key, [values])`` of the keys hashed to ``i`` (no map-side
                        combining)
``Join``                ``(key, (left, right))`` for the keys hashed to ``i``; ``how`` is
                        ``"inner"`` or ``"left"`` (right is ``None`` when missing)
``SortBy``              the records whose ``key(record)`` falls in range ``i``: range
                        partitioning by sampled bounds, sorted within the partition, so
                        partitions in order are globally sorted
``PartitionAndSort``    the ``(key, value)`` pairs hashed to ``i``, sorted by key (the
                        MapReduce shuffle; Spark's ``repartitionAndSortWithinPartitions``)
``Repartition``         an even, round-robin share of all records
======================  ===============================================================

The last eight (subclasses of :class:`Shuffle`) are *wide*: an engine must move data
between partitions (a shuffle) to compute them; everything else is *narrow* and an
engine should fuse chains of narrow nodes into one pass per partition. Every function in
a node is a picklable callable (engines ship them to workers); every ``partitioner`` is
``(key, partitions) -> int`` and defaults to :func:`~distsys.dataflow.hash_partition`,
which is stable across processes.

An engine translates the DAG from the action's node down. For example on Spark:
``Source`` → ``sc.parallelize(range(n), n).flatMap(source.read)``, narrow chains →
``mapPartitions``, ``CombineByKey`` → ``combineByKey(create, merge_value,
merge_combiners, n, partitionFunc)``, ``GroupByKey`` → ``groupByKey``, ``Join`` →
``join`` / ``leftOuterJoin``, ``BroadcastJoin`` → ``sc.broadcast`` of the collected
right side and a ``mapPartitions`` lookup, ``SortBy`` → ``sortBy``, ``PartitionAndSort`` →
``repartitionAndSortWithinPartitions``, ``Cache`` → ``persist``; on Dask bags: narrow
chains → ``map_partitions``, ``CombineByKey`` → ``foldby``, ``CountByValue`` →
``frequencies``. :mod:`distsys.dataflow._local` is the reference implementation.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from distsys.dataflow._hashing import hash_partition

__all__ = [
    "Aggregator",
    "BroadcastJoin",
    "Cache",
    "CombineByKey",
    "CountByValue",
    "Distinct",
    "Filter",
    "FlatMap",
    "GroupByKey",
    "Join",
    "Map",
    "MapPartitions",
    "Narrow",
    "Node",
    "PartitionAndSort",
    "Partitioner",
    "Repartition",
    "Shuffle",
    "SortBy",
    "Source",
    "Union",
    "describe",
    "estimated_bytes",
    "functions",
    "identity",
    "walk",
]

Partitioner = Callable[[Any, int], int]
"""``(key, partitions) -> partition``: must give equal keys the same partition everywhere."""


def identity(value: Any) -> Any:
    """Return ``value`` (a picklable identity function)."""
    return value


class Node:
    """A node of the logical plan (abstract). Immutable; compared and hashed by identity."""

    __slots__ = ("__weakref__",)
    op: ClassVar[str] = "node"

    @property
    def parents(self) -> tuple[Node, ...]:
        """The nodes this one reads from."""
        return ()

    @property
    def partitions(self) -> int:
        """How many partitions the node's output has."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        """The user-facing name of the operation that made this node."""
        return self.op


class Source(Node):
    """A node that reads records from outside the plan (abstract).

    ``read(i)`` yields the records of partition ``i``. It runs wherever the engine runs
    the task, so a source holds only small, picklable descriptions (file byte ranges,
    chunks of a list), never open files.
    """

    __slots__ = ()

    def estimated_bytes(self) -> int | None:
        """Return about how many bytes the source holds, or None if unknown."""
        return None

    def read(self, index: int, metrics: Any = None) -> Iterator[Any]:
        """Yield the records of partition ``index``.

        Args:
            index: the partition, in ``[0, partitions)``.
            metrics: a :class:`~distsys.dataflow.TaskMetrics` to count records and
                skipped lines into, or None.
        """
        raise NotImplementedError


@dataclass(frozen=True, eq=False, slots=True)
class Narrow(Node):
    """A one-to-one transformation of each partition (abstract)."""

    parent: Node
    fn: Callable[..., Any]
    name: str = ""  # the user-facing operation when it differs from ``op`` (e.g. key_by)

    @property
    def parents(self) -> tuple[Node, ...]:
        return (self.parent,)

    @property
    def partitions(self) -> int:
        return self.parent.partitions

    @property
    def label(self) -> str:
        return self.name or self.op


@dataclass(frozen=True, eq=False, slots=True)
class Map(Narrow):
    """Each record ``r`` becomes ``fn(r)``."""

    op: ClassVar[str] = "map"


@dataclass(frozen=True, eq=False, slots=True)
class FlatMap(Narrow):
    """Each record ``r`` becomes the records of the iterable ``fn(r)``."""

    op: ClassVar[str] = "flat_map"


@dataclass(frozen=True, eq=False, slots=True)
class Filter(Narrow):
    """Keep the records ``r`` for which ``fn(r)`` is true."""

    op: ClassVar[str] = "filter"


@dataclass(frozen=True, eq=False, slots=True)
class MapPartitions(Narrow):
    """Each partition's iterator ``it`` becomes the iterable ``fn(it)``."""

    op: ClassVar[str] = "map_partitions"


@dataclass(frozen=True, eq=False, slots=True)
class Union(Node):
    """The partitions of every parent, concatenated in order."""

    inputs: tuple[Node, ...]
    op: ClassVar[str] = "union"

    @property
    def parents(self) -> tuple[Node, ...]:
        return self.inputs

    @property
    def partitions(self) -> int:
        return sum(p.partitions for p in self.inputs)

    def locate(self, index: int) -> tuple[Node, int]:
        """Return the parent holding partition ``index`` and its index there."""
        for parent in self.inputs:
            if index < parent.partitions:
                return parent, index
            index -= parent.partitions
        raise IndexError(index)


@dataclass(frozen=True, eq=False, slots=True)
class Cache(Node):
    """The parent, computed once per engine session and kept for reuse."""

    parent: Node
    op: ClassVar[str] = "cache"

    @property
    def parents(self) -> tuple[Node, ...]:
        return (self.parent,)

    @property
    def partitions(self) -> int:
        return self.parent.partitions


@dataclass(frozen=True, eq=False, slots=True)
class BroadcastJoin(Node):
    """``join`` without shuffling ``parent``: ``right`` is computed whole and sent to
    every task of ``parent``, which looks its keys up in it (a map-side join).

    Partition ``i`` is ``parent``'s partition ``i`` joined: ``(k, (v, w))`` for each
    ``(k, v)`` and each ``(k, w)`` of ``right`` (``w`` is ``None`` when ``how="left"``
    and ``k`` is missing). Narrow for ``parent``; ``right`` must be small.
    """

    parent: Node
    right: Node
    how: Literal["inner", "left"] = "inner"
    op: ClassVar[str] = "join"

    @property
    def parents(self) -> tuple[Node, ...]:
        return (self.parent, self.right)

    @property
    def partitions(self) -> int:
        return self.parent.partitions

    @property
    def label(self) -> str:
        return f"{'join' if self.how == 'inner' else 'left_join'} (broadcast)"


@dataclass(frozen=True, slots=True)
class Aggregator:
    """How values of one key are combined (Spark's ``combineByKey`` triple).

    ``create(v)`` starts a combiner from a key's first value, ``merge_value(c, v)`` adds
    a value, ``merge_combiners(c1, c2)`` merges two partial combiners (map-side combining
    produces partial combiners; the reduce side merges them).
    """

    create: Callable[[Any], Any]
    merge_value: Callable[[Any, Any], Any]
    merge_combiners: Callable[[Any, Any], Any]

    @classmethod
    def reducing(cls, fn: Callable[[Any, Any], Any]) -> Aggregator:
        """The aggregator of ``reduce_by_key(fn)``: combiners are values."""
        return cls(identity, fn, fn)

    @property
    def is_add(self) -> bool:
        """True for ``reduce_by_key(operator.add)``: engines may use a faster path."""
        return (
            self.create is identity
            and self.merge_value is operator.add
            and self.merge_combiners is operator.add
        )


class Shuffle(Node):
    """A wide node: computing it moves records between partitions (abstract).

    Every shuffle has a ``parent`` (``Join`` also a ``right``) and a ``count`` of output
    partitions.
    """

    __slots__ = ()
    parent: Node
    count: int

    @property
    def parents(self) -> tuple[Node, ...]:
        return (self.parent,)

    @property
    def partitions(self) -> int:
        return self.count


@dataclass(frozen=True, eq=False, slots=True)
class CombineByKey(Shuffle):
    """``(key, value)`` pairs → ``(key, combiner)``, one per key, hash partitioned."""

    parent: Node
    count: int
    aggregator: Aggregator
    partitioner: Partitioner = hash_partition
    name: str = "combine_by_key"
    op: ClassVar[str] = "combine_by_key"

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True, eq=False, slots=True)
class CountByValue(Shuffle):
    """Records → ``(record, count)`` pairs, one per distinct record."""

    parent: Node
    count: int
    partitioner: Partitioner = hash_partition
    op: ClassVar[str] = "count_by_value"


@dataclass(frozen=True, eq=False, slots=True)
class Distinct(Shuffle):
    """Records → the distinct records (the first seen of equal ones)."""

    parent: Node
    count: int
    partitioner: Partitioner = hash_partition
    op: ClassVar[str] = "distinct"


@dataclass(frozen=True, eq=False, slots=True)
class GroupByKey(Shuffle):
    """``(key, value)`` pairs → ``(key, [values])``; values in no particular order."""

    parent: Node
    count: int
    partitioner: Partitioner = hash_partition
    op: ClassVar[str] = "group_by_key"


@dataclass(frozen=True, eq=False, slots=True)
class Join(Shuffle):
    """``(k, v)`` pairs of ``parent`` and ``(k, w)`` pairs of ``right`` → ``(k, (v, w))``."""

    parent: Node
    right: Node
    count: int
    how: Literal["inner", "left"] = "inner"
    partitioner: Partitioner = hash_partition
    op: ClassVar[str] = "join"

    @property
    def parents(self) -> tuple[Node, ...]:
        return (self.parent, self.right)

    @property
    def label(self) -> str:
        return "join" if self.how == "inner" else "left_join"


@dataclass(frozen=True, eq=False, slots=True)
class SortBy(Shuffle):
    """Records in ``key`` order, range partitioned so partition order is global order."""

    parent: Node
    count: int
    key: Callable[[Any], Any] = identity
    ascending: bool = True
    op: ClassVar[str] = "sort_by"


@dataclass(frozen=True, eq=False, slots=True)
class PartitionAndSort(Shuffle):
    """``(key, value)`` pairs hash partitioned, sorted by key within each partition."""

    parent: Node
    count: int
    partitioner: Partitioner = hash_partition
    op: ClassVar[str] = "partition_and_sort"


@dataclass(frozen=True, eq=False, slots=True)
class Repartition(Shuffle):
    """The records spread evenly (round robin) over ``count`` partitions."""

    parent: Node
    count: int
    op: ClassVar[str] = "repartition"


def walk(root: Node) -> list[Node]:
    """Return every node ``root`` depends on, and itself, each once, parents first."""
    order: list[Node] = []
    seen: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((parent, False) for parent in reversed(node.parents))
    return order


def functions(node: Node) -> list[tuple[str, Any]]:
    """Return the ``(operation, callable)`` pairs a node ships to workers."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, Narrow):
        found.append((node.label, node.fn))
    if isinstance(node, CombineByKey):
        agg = node.aggregator
        found += [(node.label, agg.create), (node.label, agg.merge_value)]
        found.append((node.label, agg.merge_combiners))
    if isinstance(node, SortBy):
        found.append((node.label, node.key))
    partitioner = getattr(node, "partitioner", None)
    if partitioner is not None and partitioner is not hash_partition:
        found.append((node.label, partitioner))
    return found


def estimated_bytes(node: Node) -> int | None:
    """Return about how many input bytes ``node`` derives from, if its sources say.

    Narrow nodes and combining shuffles are assumed not to grow their input; other
    shuffles and unknown sources give None.
    """
    if isinstance(node, Source):
        return node.estimated_bytes()
    if isinstance(node, Narrow | Cache | CombineByKey | CountByValue | Distinct):
        return estimated_bytes(node.parents[0])
    if isinstance(node, Union):
        sizes = [estimated_bytes(p) for p in node.inputs]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)
    return None


def describe(root: Node) -> str:
    """Return the plan under ``root`` as an indented tree, one node a line.

    Shuffles start a new indentation level, as stage boundaries do in Spark's
    ``toDebugString``.
    """
    lines: list[str] = []

    def visit(node: Node, depth: int) -> None:
        lines.append(f"{'  ' * depth}{node.label} [{node.partitions} partitions]")
        for parent in node.parents:
            visit(parent, depth + 1 if isinstance(node, Shuffle | Union) else depth)

    visit(root, 0)
    return "\n".join(lines)
