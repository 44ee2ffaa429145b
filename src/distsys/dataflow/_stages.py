"""The local executor's DAG scheduler: cut a job's plan into stages at its shuffles.

As in Spark, a *stage* is the largest piece of the plan that runs without moving data
between partitions: a chain of narrow nodes (fused into one pass per partition) whose
leaves are sources, cached datasets or the outputs of earlier shuffles. A job has one
*result* stage (the action runs at its end) and, for each shuffle it needs whose output
does not exist yet, one *map* stage per shuffle input (its tasks write the map outputs);
a ``Cache`` node not yet computed gets a stage that keeps its partitions. A stage runs
when the stages it reads from are done.

Shuffle outputs and cached partitions stay on disk, keyed by their node, and later jobs
reuse them (Spark's "skipped stages"); they are deleted when the node is garbage
collected, when the dataset is unpersisted, or when the executor closes.
"""

from __future__ import annotations

import os
import shutil
import weakref
from dataclasses import dataclass, field, replace
from typing import Any

from distsys.dataflow._executor import Job
from distsys.dataflow._patterns import pairs_with_one
from distsys.dataflow._plan import (
    BroadcastJoin,
    Cache,
    CombineByKey,
    CountByValue,
    Distinct,
    GroupByKey,
    Join,
    Map,
    Narrow,
    Node,
    PartitionAndSort,
    Repartition,
    Shuffle,
    SortBy,
    Union,
)
from distsys.dataflow._shuffle_read import (
    BroadcastProbe,
    CacheRead,
    CombinedRead,
    ConcatRead,
    GroupRead,
    JoinRead,
    SortedPairsRead,
    SortRead,
    range_bounds,
)
from distsys.dataflow._shuffle_write import (
    CombineWriter,
    CountWriter,
    DistinctWriter,
    MapOutput,
    PairWriter,
    RoundRobinWriter,
    SortWriter,
    Writer,
)
from distsys.dataflow._tasks import CacheOutput, ResultOutput, ShuffleOutput, StageSpec

__all__ = ["CacheState", "Planner", "ShuffleState", "StagePlan"]


@dataclass(eq=False)
class ShuffleState:
    """The map outputs of one shuffle node, on disk."""

    directory: str
    maps: tuple[int, ...]  # map tasks per input side
    outputs: list[list[MapOutput | None]]
    done: set[int] = field(default_factory=set)  # sides whose map stage completed
    bounds: tuple[Any, ...] = ()  # a sort's range bounds

    @property
    def complete(self) -> bool:
        return len(self.done) == len(self.maps)


@dataclass(eq=False)
class CacheState:
    """The kept partitions of one cached node."""

    directory: str
    done: bool = False


@dataclass(eq=False)
class StagePlan:
    """One stage of a job, before and while it runs.

    Attributes:
        node: the node whose partitions the tasks compute.
        kind: ``"shuffle"``, ``"cache"``, ``"broadcast"`` or ``"result"``.
        tasks: the partitions to compute.
        parents: stages that must finish first.
        name: the operations it runs, for people.
        target: the shuffle or cache node it writes (None for the result stage).
        side: which input of ``target`` it computes.
    """

    node: Node
    kind: str
    tasks: tuple[int, ...]
    parents: list[StagePlan]
    name: str
    target: Node | None = None
    side: int = 0


def _remove(states: dict[int, Any], key: int, directory: str) -> None:
    states.pop(key, None)
    shutil.rmtree(directory, ignore_errors=True)


def boundaries(node: Node) -> list[Node]:
    """Return the nodes whose output a stage computing ``node`` reads: shuffles, caches,
    and broadcast joins (for their broadcast side)."""
    found: list[Node] = []
    seen: set[int] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, Shuffle | Cache):
            found.append(current)
        elif isinstance(current, BroadcastJoin):
            found.append(current)  # its right side is computed by a stage of its own
            stack.append(current.parent)
        else:
            stack.extend(current.parents)
    return found


def stage_labels(node: Node) -> list[str]:
    """Return the operations of the stage computing ``node``, leaves first."""
    labels: list[str] = []

    def visit(current: Node) -> None:
        if isinstance(current, BroadcastJoin):
            visit(current.parent)
        elif not isinstance(current, Shuffle | Cache):
            for parent in current.parents:
                visit(parent)
        if not labels or labels[-1] != current.label:
            labels.append(current.label)

    visit(node)
    return labels


class Planner:
    """Plans jobs into stages and keeps the shuffle and cache outputs they leave.

    Not thread-safe: owned by one executor, used by one job at a time.
    """

    def __init__(self, workdir: str, memory_limit: int) -> None:
        self.workdir = workdir
        self.memory_limit = memory_limit
        self.shuffles: dict[int, ShuffleState] = {}
        self.caches: dict[int, CacheState] = {}
        self.broadcasts: dict[int, CacheState] = {}
        self._serial = 0
        self._finalizers: list[weakref.finalize[Any, Any]] = []

    def _directory(self, kind: str) -> str:
        self._serial += 1
        path = os.path.join(self.workdir, f"{kind}-{self._serial:05d}")
        os.makedirs(path)
        return path

    def plan(self, job: Job[Any]) -> list[StagePlan]:
        """Return the stages ``job`` needs, parents before children, the result stage last."""
        order: list[StagePlan] = []
        made: dict[tuple[int, int], StagePlan] = {}

        def stages_for(node: Node) -> list[StagePlan]:
            needed = []
            for boundary in boundaries(node):
                if isinstance(boundary, Shuffle):
                    state = self.shuffles.get(id(boundary))
                    if state is not None and state.complete:
                        continue
                    for side, parent in enumerate(boundary.parents):
                        needed.append(stage(boundary, side, parent, "shuffle"))
                elif isinstance(boundary, BroadcastJoin):
                    sent = self.broadcasts.get(id(boundary))
                    if sent is not None and sent.done:
                        continue
                    needed.append(stage(boundary, 1, boundary.right, "broadcast"))
                else:
                    cached = self.caches.get(id(boundary))
                    if cached is not None and cached.done:
                        continue
                    needed.append(stage(boundary, 0, boundary.parents[0], "cache"))
            return needed

        def stage(target: Node, side: int, node: Node, kind: str) -> StagePlan:
            key = (id(target), side)
            if key not in made:
                parents = stages_for(node)
                name = " → ".join([*stage_labels(node), target.label])
                plan = StagePlan(
                    node, kind, tuple(range(node.partitions)), parents, name, target, side
                )
                made[key] = plan
                order.append(plan)
            return made[key]

        parents = stages_for(job.root)
        tasks = job.partitions if job.partitions is not None else tuple(range(job.root.partitions))
        name = " → ".join([*stage_labels(job.root), job.action.name])
        order.append(StagePlan(job.root, "result", tuple(tasks), parents, name))
        return order

    def spec(self, plan: StagePlan, stage_id: int, job: Job[Any]) -> StageSpec:
        """Return the stage's physical plan and output, once its parents are done."""
        consumers = sum(
            1
            for b in boundaries(plan.node)
            if isinstance(b, Shuffle | BroadcastJoin) and not isinstance(b, Repartition)
        )
        memo: dict[int, Node] = {}
        node = plan.node
        output: ShuffleOutput | CacheOutput | ResultOutput
        if plan.kind == "shuffle":
            target = plan.target
            assert isinstance(target, Shuffle)
            state = self._shuffle_state(target)
            chosen = writer(target)
            if counts_pairs(target, node):
                # map(w -> (w, 1)).reduce_by_key(add) is count_by_value: skip the map.
                assert isinstance(node, Narrow)
                assert isinstance(target, CombineByKey)
                chosen = CountWriter(target.count, target.partitioner, target.label)
                node = node.parent
            output = ShuffleOutput(state.directory, plan.side, chosen)
            consumers += 1
        elif plan.kind == "cache":
            assert isinstance(plan.target, Cache)
            output = CacheOutput(self._kept(self.caches, plan.target, "cache").directory)
        elif plan.kind == "broadcast":
            assert isinstance(plan.target, BroadcastJoin)
            output = CacheOutput(self._kept(self.broadcasts, plan.target, "broadcast").directory)
        else:
            output = ResultOutput(job.action.run_partition, job.action.size)
        budget = self.memory_limit // max(1, consumers)
        return StageSpec(stage_id, self._physical(node, memo), output, self.workdir, budget)

    def _shuffle_state(self, node: Shuffle) -> ShuffleState:
        state = self.shuffles.get(id(node))
        if state is None:
            directory = self._directory("shuffle")
            maps = tuple(parent.partitions for parent in node.parents)
            state = ShuffleState(directory, maps, [[None] * n for n in maps])
            self.shuffles[id(node)] = state
            self._finalizers.append(
                weakref.finalize(node, _remove, self.shuffles, id(node), directory)
            )
        return state

    def _kept(self, states: dict[int, CacheState], node: Node, kind: str) -> CacheState:
        state = states.get(id(node))
        if state is None:
            directory = self._directory(kind)
            state = CacheState(directory)
            states[id(node)] = state
            self._finalizers.append(weakref.finalize(node, _remove, states, id(node), directory))
        return state

    def _physical(self, node: Node, memo: dict[int, Node]) -> Node:
        if id(node) in memo:
            return memo[id(node)]
        result: Node
        if isinstance(node, Shuffle):
            result = self._reader(node)
        elif isinstance(node, Cache):
            result = CacheRead(self.caches[id(node)].directory, node.partitions)
        elif isinstance(node, BroadcastJoin):
            sent = self.broadcasts[id(node)]
            parent = self._physical(node.parent, memo)
            result = BroadcastProbe(parent, sent.directory, node.right.partitions, node.how)
        elif isinstance(node, Narrow):
            result = replace(node, parent=self._physical(node.parent, memo))
        elif isinstance(node, Union):
            result = Union(tuple(self._physical(p, memo) for p in node.inputs))
        else:
            result = node
        memo[id(node)] = result
        return result

    def _reader(self, node: Shuffle) -> Node:
        state = self.shuffles[id(node)]
        directory, maps, count = state.directory, state.maps, node.count
        if isinstance(node, CountByValue):
            return CombinedRead(directory, maps[0], count, "add")
        if isinstance(node, CombineByKey):
            agg = node.aggregator
            kind = "add" if agg.is_add else "generic"
            return CombinedRead(directory, maps[0], count, kind, agg.merge_combiners)
        if isinstance(node, Distinct):
            return CombinedRead(directory, maps[0], count, "first", keys_only=True)
        if isinstance(node, GroupByKey):
            return GroupRead(directory, maps[0], count)
        if isinstance(node, Join):
            return JoinRead(directory, maps[0], maps[1], count, node.how)
        if isinstance(node, SortBy):
            runs = tuple(run for out in state.outputs[0] if out is not None for run in out.runs)
            return SortRead(directory, runs, state.bounds, node.key, node.ascending, count)
        if isinstance(node, PartitionAndSort):
            return SortedPairsRead(directory, maps[0], count)
        if isinstance(node, Repartition):
            return ConcatRead(directory, maps[0], count)
        raise TypeError(f"no reader for {node.label}")

    def task_done(self, plan: StagePlan, partition: int, value: Any) -> None:
        """Record a finished task's output."""
        if plan.kind == "shuffle":
            assert isinstance(plan.target, Shuffle)
            self.shuffles[id(plan.target)].outputs[plan.side][partition] = value

    def stage_done(self, plan: StagePlan) -> None:
        """Mark a stage's output complete (and compute a sort's range bounds)."""
        if plan.kind == "shuffle":
            target = plan.target
            assert isinstance(target, Shuffle)
            state = self.shuffles[id(target)]
            state.done.add(plan.side)
            if isinstance(target, SortBy) and state.complete:
                samples = [s for out in state.outputs[0] if out is not None for s in out.samples]
                state.bounds = tuple(range_bounds(samples, target.count))
        elif plan.kind == "cache":
            self.caches[id(plan.target)].done = True
        elif plan.kind == "broadcast":
            self.broadcasts[id(plan.target)].done = True

    def discard_incomplete(self) -> None:
        """Forget the outputs of shuffles a failed job left half written."""
        for key, state in list(self.shuffles.items()):
            if not state.complete:
                _remove(self.shuffles, key, state.directory)
        for states in (self.caches, self.broadcasts):
            for key, kept in list(states.items()):
                if not kept.done:
                    _remove(states, key, kept.directory)

    def unpersist(self, node: Cache) -> None:
        """Delete a cached node's partitions."""
        state = self.caches.get(id(node))
        if state is not None:
            _remove(self.caches, id(node), state.directory)

    def close(self) -> None:
        """Detach every finalizer (the caller removes the working directory)."""
        for finalizer in self._finalizers:
            finalizer.detach()
        self._finalizers.clear()
        self.shuffles.clear()
        self.caches.clear()
        self.broadcasts.clear()


def counts_pairs(target: Shuffle, node: Node) -> bool:
    """True if ``node`` feeding ``target`` is ``map(x -> (x, 1))`` into ``reduce_by_key(add)``."""
    return (
        isinstance(target, CombineByKey)
        and target.aggregator.is_add
        and isinstance(node, Map)
        and pairs_with_one(node.fn)
    )


def writer(node: Shuffle) -> Writer:
    """Return the map-side writer of a shuffle node."""
    count = node.count
    if isinstance(node, CountByValue):
        return CountWriter(count, node.partitioner)
    if isinstance(node, CombineByKey):
        return CombineWriter(count, node.aggregator, node.partitioner, node.label)
    if isinstance(node, Distinct):
        return DistinctWriter(count, node.partitioner)
    if isinstance(node, GroupByKey):
        return PairWriter(count, node.partitioner, "group_by_key")
    if isinstance(node, Join):
        return PairWriter(count, node.partitioner, node.label)
    if isinstance(node, PartitionAndSort):
        return PairWriter(count, node.partitioner, "map_reduce")
    if isinstance(node, Repartition):
        return RoundRobinWriter(count)
    if isinstance(node, SortBy):
        return SortWriter(count, node.key, node.ascending)
    raise TypeError(f"no writer for {node.label}")
