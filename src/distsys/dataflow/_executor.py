"""The executor interface: what an engine implements to run plans.

An executor runs *jobs*. A job is the plan under one node (:mod:`distsys.dataflow._plan`)
plus an :class:`~distsys.dataflow._actions.Action`, optionally restricted to some of the
node's partitions (``take`` asks for a few partitions at a time). The executor returns the
action's value with the job's statistics. It owns whatever it needs to run them (worker
processes, a Dask client, a SparkContext) from construction to ``close()``.

What an implementation must do, and the local executor does:

1. Before any work, check what must hold for its workers (the local executor checks that
   every function pickles by reference); raise a :class:`~distsys.errors.DistsysError`
   naming the operation otherwise.
2. Compute the job's node: partition ``i`` of every node as :mod:`~distsys.dataflow._plan`
   defines it. Chains of narrow nodes should run as one pass per partition; shuffle
   outputs (and ``Cache`` nodes) should be reused by later jobs of the same executor
   while the node is alive.
3. Run ``action.run_partition(i, records)`` for each partition of the job and
   ``action.finish(values)`` on the values in partition order, in the driver.
4. Re-raise :class:`~distsys.dataflow.MalformedRecordError` and
   :class:`~distsys.dataflow.RecordTypeError` raised by tasks as they are (they are
   deterministic); raise :class:`~distsys.dataflow.TaskFailedError` for a task that kept
   failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from distsys.dataflow._actions import Action
from distsys.dataflow._metrics import JobStatistics, SessionStatistics
from distsys.dataflow._plan import Cache, Node

__all__ = ["Executor", "Job", "JobResult"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True, slots=True)
class Job(Generic[T]):
    """One action on the plan under ``root``.

    Attributes:
        root: the node whose partitions the action consumes.
        action: what to compute from them.
        partitions: which partitions to run the action on (None: all, in order).
    """

    root: Node
    action: Action[Any, T]
    partitions: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class JobResult(Generic[T]):
    """The value of a job's action, and what the job did."""

    value: T
    statistics: JobStatistics


@runtime_checkable
class Executor(Protocol):
    """An engine that runs jobs: ``LocalExecutor`` here; Dask and Spark ones plug in too.

    Implementations state their own concurrency contract; the local one is used from
    one thread at a time.
    """

    @property
    def name(self) -> str:
        """The engine's name (``"local"``, ``"dask"``, ``"spark"``)."""
        ...

    @property
    def parallelism(self) -> int:
        """Partitions a wide operation or ``from_iterable`` gets when not told."""
        ...

    def run(self, job: Job[T]) -> JobResult[T]:
        """Run ``job`` to completion and return its value and statistics."""
        ...

    def unpersist(self, node: Cache) -> None:
        """Drop what is kept for a cached node (nothing happens if nothing is)."""
        ...

    def statistics(self) -> SessionStatistics:
        """Return a snapshot of what the executor did so far."""
        ...

    def close(self) -> None:
        """Release every resource; idempotent."""
        ...
