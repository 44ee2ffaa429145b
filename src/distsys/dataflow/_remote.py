"""What the Dask and Spark executors run in their tasks, and how their failures return.

- :func:`compute` runs a stage's fused chain of narrow nodes over a *physical plan*:
  the plan under the stage with its inputs from earlier stages (shuffle outputs, cached
  partitions, a broadcast table) replaced by :class:`Slot` and :class:`Probe` nodes that
  read them from the task's arguments; :func:`result_task` runs an action on it.
- A task's exception returns to the driver as a :class:`RemoteTaskError` carrying a
  :class:`~distsys.dataflow._tasks.Failure`; :func:`raise_failure` turns it into what the
  local engine raises (the error itself when it is deterministic, ``TaskFailedError``
  otherwise).
- :func:`check_shippable` checks, before any work, that every function pickles the way
  these engines ship them (cloudpickle).

The shuffle itself is in :mod:`distsys.dataflow._exchange`. Nothing here imports Dask or
PySpark.
"""

from __future__ import annotations

import base64
import pickle
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, ClassVar, Final

from distsys.dataflow._errors import NotPicklableError, RecordTypeError, TaskFailedError
from distsys.dataflow._exchange import probe
from distsys.dataflow._executor import Job
from distsys.dataflow._metrics import StageStatistics, TaskMetrics
from distsys.dataflow._plan import (
    BroadcastJoin,
    Cache,
    Filter,
    FlatMap,
    Map,
    MapPartitions,
    Narrow,
    Node,
    Shuffle,
    Source,
    Union,
    functions,
    walk,
)
from distsys.dataflow._sources import IterableSource
from distsys.dataflow._tasks import Failure, failure

__all__ = [
    "MARKER",
    "Probe",
    "RemoteTaskError",
    "Slot",
    "call_guarded",
    "check_shippable",
    "cloudpickle_module",
    "compute",
    "describe_stage",
    "found_failure",
    "guarded",
    "narrow",
    "raise_failure",
    "result_stage",
    "result_task",
    "unshippable_record",
]

MARKER: Final = "DISTSYS-FAILURE"
_FOUND = re.compile(MARKER + r"\[([A-Za-z0-9+/=]+)\]")


# ------------------------------------------------------------------ failures


class RemoteTaskError(Exception):
    """A task's exception, carried to the driver.

    Dask sends the exception object itself; Spark sends only the text of the Python
    traceback, so the message also holds the pickled :class:`Failure` in base64 between
    ``DISTSYS-FAILURE[...]``, which :func:`raise_failure` finds again.
    """

    def __init__(self, stage: str, partition: int, problem: Failure) -> None:
        self.stage = stage
        self.partition = partition
        self.problem = problem
        blob = base64.b64encode(pickle.dumps((stage, partition, problem), protocol=5)).decode()
        super().__init__(
            f"{problem.error_type}: {problem.message} {MARKER}[{blob}]",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.stage, self.partition, self.problem))


def guarded(stage: str, partition: int, records: Iterable[Any]) -> Iterator[Any]:
    """Yield ``records``; turn an exception into a :class:`RemoteTaskError` once."""
    try:
        yield from records
    except RemoteTaskError:
        raise
    except Exception as exc:
        raise RemoteTaskError(stage, partition, failure(exc)) from exc


def call_guarded(stage: str, partition: int, fn: Callable[[], Any]) -> Any:
    """Return ``fn()``; turn an exception into a :class:`RemoteTaskError` once."""
    try:
        return fn()
    except RemoteTaskError:
        raise
    except Exception as exc:
        raise RemoteTaskError(stage, partition, failure(exc)) from exc


def found_failure(exc: BaseException) -> tuple[str, int, Failure] | None:
    """Return the task failure ``exc`` carries (as an object or in its text), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RemoteTaskError):
            return current.stage, current.partition, current.problem
        current = current.__cause__ or current.__context__
    match = _FOUND.search(str(exc))
    if match is None:
        return None
    try:
        stage, partition, problem = pickle.loads(base64.b64decode(match.group(1)))
    except Exception:
        return None
    return stage, partition, problem


def raise_failure(exc: BaseException, attempts: int) -> None:
    """Raise what a job that failed with ``exc`` should raise, if ``exc`` is a task's.

    A deterministic error (malformed input, a record of the wrong shape) is raised as
    it is, like the local engine does; any other becomes :class:`TaskFailedError`. Returns
    (so the caller re-raises ``exc``) when ``exc`` does not come from a task.
    """
    found = found_failure(exc)
    if found is None:
        return
    stage, partition, problem = found
    if problem.deterministic:
        original = problem.exception()
        if original is not None:
            original.add_note(f"raised by task {partition} of stage {stage}")
            raise original from None
    raise TaskFailedError(
        stage, partition, attempts, problem.error_type, problem.message, problem.traceback
    ) from problem.exception()


# ------------------------------------------------------------------ checks


def cloudpickle_module() -> Any:
    """Return cloudpickle: Dask's dependency, or the copy PySpark ships inside itself."""
    try:
        import cloudpickle  # type: ignore[import-untyped]
    except ImportError:
        from pyspark import cloudpickle
    return cloudpickle


def check_shippable(job: Job[Any]) -> None:
    """Check that every function of ``job`` pickles with cloudpickle (as Dask and Spark
    ship them: by value when they cannot be imported, so lambdas work).

    Raises:
        NotPicklableError: naming the operation whose function cannot be.
    """
    checks = [item for node in walk(job.root) for item in functions(node)]
    checks.append((job.action.name, job.action.run_partition))
    dumps = cloudpickle_module().dumps
    for operation, fn in checks:
        try:
            dumps(fn)
        except Exception as exc:
            raise NotPicklableError(
                operation,
                fn,
                f"it cannot be pickled, even by value ({type(exc).__name__}: {exc})",
                hint="functions are sent to the cluster's workers with cloudpickle: they must "
                "not hold locks, open files, sockets or other live resources; create those "
                "inside the function, or pass a module-level function",
            ) from None


def unshippable_record(root: Node) -> RecordTypeError | None:
    """Return the error for a ``from_iterable`` record under ``root`` that does not pickle."""
    dumps = cloudpickle_module().dumps
    for node in walk(root):
        if isinstance(node, IterableSource):
            for records in node.chunks:
                for record in records:
                    try:
                        dumps(record)
                    except Exception as problem:
                        return RecordTypeError(
                            "from_iterable",
                            record,
                            "records that pickle, to send them to the cluster",
                            detail=f"{type(problem).__name__}: {problem}",
                        )
    return None


# ------------------------------------------------------------------ fused narrow chains


def describe_stage(node: Node) -> str:
    """Return the operations a stage computing ``node`` runs, leaves first."""
    labels: list[str] = []

    def visit(current: Node) -> None:
        if isinstance(current, BroadcastJoin | Probe):
            visit(current.parents[0])
        elif not isinstance(current, Shuffle | Cache | Slot):
            for parent in current.parents:
                visit(parent)
        if not labels or labels[-1] != current.label:
            labels.append(current.label)

    visit(node)
    return " → ".join(labels)


@dataclass(frozen=True, eq=False, slots=True)
class Slot(Node):
    """A stage input computed by an earlier task: partition ``i`` is ``inputs[(ref, i)]``."""

    ref: int
    count: int
    name: str
    op: ClassVar[str] = "input"

    @property
    def partitions(self) -> int:
        return self.count

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True, eq=False, slots=True)
class Probe(Node):
    """A broadcast join's streaming side: each pair looked up in ``inputs[(ref, 0)]``."""

    parent: Node
    ref: int
    how: str
    op: ClassVar[str] = "join"

    @property
    def parents(self) -> tuple[Node, ...]:
        return (self.parent,)

    @property
    def partitions(self) -> int:
        return self.parent.partitions

    @property
    def label(self) -> str:
        return f"{'join' if self.how == 'inner' else 'left_join'} (broadcast)"


def narrow(node: Narrow, records: Iterator[Any]) -> Iterator[Any]:
    """Return ``records`` through one narrow node's function."""
    if isinstance(node, Map):
        return map(node.fn, records)
    if isinstance(node, Filter):
        return filter(node.fn, records)
    if isinstance(node, FlatMap):
        return chain.from_iterable(map(node.fn, records))
    if isinstance(node, MapPartitions):
        return iter(node.fn(records))
    raise TypeError(f"not a narrow node: {node.label}")


def compute(
    node: Node, index: int, inputs: dict[tuple[int, int], Any], metrics: TaskMetrics | None
) -> Iterator[Any]:
    """Return the lazy iterator of partition ``index`` of a physical plan."""
    if isinstance(node, Slot):
        return iter(inputs[(node.ref, index)])
    if isinstance(node, Source):
        return node.read(index, metrics)
    if isinstance(node, Narrow):
        return narrow(node, compute(node.parent, index, inputs, metrics))
    if isinstance(node, Union):
        parent, local = node.locate(index)
        return compute(parent, local, inputs, metrics)
    if isinstance(node, Probe):
        table = inputs[(node.ref, 0)]
        return probe(compute(node.parent, index, inputs, metrics), table, node.how, node.label)
    raise TypeError(f"{node.label} cannot run inside a stage: the executor must plan it")


def result_task(
    stage: str,
    plan: Node,
    index: int,
    run_partition: Callable[[int, Iterator[Any]], Any],
    size: Callable[[Any], int] | None,
    inputs: dict[tuple[int, int], Any],
) -> tuple[Any, TaskMetrics, float]:
    """Run an action on partition ``index`` of ``plan``; return its value, counters, time."""
    started = time.perf_counter()
    metrics = TaskMetrics()
    cpu = time.thread_time()

    def run() -> Any:
        return run_partition(index, compute(plan, index, inputs, metrics))

    value = call_guarded(stage, index, run)
    if size is not None:
        metrics.records_out += size(value)
    metrics.cpu_seconds = time.thread_time() - cpu
    return value, metrics, time.perf_counter() - started


def result_stage(name: str, results: Sequence[Any], seconds: float) -> StageStatistics:
    """Return the statistics of a job's result tasks, from what :func:`result_task` gave."""
    metrics: list[TaskMetrics] = [result[1] for result in results]
    return StageStatistics(
        stage=1,
        name=name,
        output="result",
        tasks=len(results),
        records_in=sum(m.records_in for m in metrics),
        records_out=sum(m.records_out for m in metrics),
        shuffle_read=0,
        shuffle_written=0,
        spilled=0,
        skipped=sum(m.skipped for m in metrics),
        retries=0,
        seconds=seconds,
        task_seconds=sum(result[2] for result in results),
        cpu_seconds=sum(m.cpu_seconds for m in metrics),
        peak_memory=0,
    )
