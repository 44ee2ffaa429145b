"""The local executor: a plan's stages run as tasks on a pool of worker processes.

Shuffles go through files under the session's scratch directory; each task holds at
most ``memory_limit`` bytes of data (estimated) and spills beyond it; a failed task is
retried up to ``max_task_failures`` attempts in all (Spark's ``spark.task.maxFailures``,
also 4) — a task whose worker process died is retried on a fresh worker. See
:mod:`distsys.dataflow._stages` for the planning and :mod:`distsys.dataflow._pool` for
the processes.
"""

from __future__ import annotations

import io
import itertools
import os
import pickle
import shutil
import sys
import tempfile
import time
import types
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from distsys.dataflow._errors import NotPicklableError, RecordTypeError, TaskFailedError
from distsys.dataflow._executor import Job, JobResult
from distsys.dataflow._metrics import (
    MAX_PROBLEMS,
    JobStatistics,
    SessionStatistics,
    StageStatistics,
    TaskMetrics,
)
from distsys.dataflow._plan import Cache, functions, walk
from distsys.dataflow._pool import Event, InlineRunner, ProcessRunner, Runner, default_start_method
from distsys.dataflow._progress import ProgressListener, make_listener
from distsys.dataflow._sizes import parse_size
from distsys.dataflow._sources import IterableSource
from distsys.dataflow._stages import Planner, StagePlan
from distsys.dataflow._tasks import StageSpec
from distsys.errors import ArgumentTypeError, DistsysError, InvalidArgumentError

__all__ = ["DEFAULT_MEMORY_LIMIT", "LocalExecutor", "check_picklable", "default_workers"]

T = TypeVar("T")
DEFAULT_MEMORY_LIMIT = 512 << 20
MAX_TASK_FAILURES = 4
BROADCAST_SHARE = 32  # a join broadcasts inputs under memory_limit / 32 (about 1/4 in memory)


def default_workers() -> int:
    """Return the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class _MainReferences(pickle.Pickler):
    """A pickler that notes every function or class that lives in ``__main__``."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), protocol=5)
        self.found: list[Any] = []

    def reducer_override(self, obj: Any) -> Any:
        if (
            isinstance(obj, types.FunctionType | type)
            and getattr(obj, "__module__", "") == "__main__"
        ):
            self.found.append(obj)
        return NotImplemented


def check_picklable(job: Job[Any]) -> None:
    """Check that every function of the job can be shipped to worker processes.

    Raises:
        NotPicklableError: naming the operation whose function cannot be.
    """
    main_has_file = bool(getattr(sys.modules.get("__main__"), "__file__", None))
    checks = [item for node in walk(job.root) for item in functions(node)]
    checks.append((job.action.name, job.action.run_partition))
    for operation, fn in checks:
        pickler = _MainReferences()
        try:
            pickler.dump(fn)
        except Exception as exc:
            raise NotPicklableError(operation, fn, f"it cannot be pickled ({exc})") from None
        if pickler.found and not main_has_file:
            raise NotPicklableError(
                operation,
                fn,
                f"{pickler.found[0].__qualname__} is defined in the __main__ of an interactive "
                "session or `python -c`, which the worker processes cannot import",
            )


def _unpicklable_data(plan: StagePlan, exc: Exception) -> Exception:
    """Return the error for a stage that does not pickle: a from_iterable record, if one."""
    for node in walk(plan.node):
        if isinstance(node, IterableSource):
            for records in node.chunks:
                for record in records:
                    try:
                        pickle.dumps(record, protocol=5)
                    except Exception as problem:
                        return RecordTypeError(
                            "from_iterable",
                            record,
                            "records that pickle, to send them to the worker processes",
                            detail=f"{type(problem).__name__}: {problem}",
                        )
    return NotPicklableError(plan.name, plan.node, f"the stage cannot be pickled ({exc})")


@dataclass(eq=False)
class _Stage:
    """A stage while it runs: its plan, spec, outstanding tasks and running totals."""

    plan: StagePlan
    id: int
    number: int
    spec: StageSpec | None = None
    left: set[int] = field(default_factory=set)
    failures: dict[int, int] = field(default_factory=dict)
    metrics: TaskMetrics = field(default_factory=TaskMetrics)
    task_seconds: float = 0.0
    retries: int = 0
    started: float = field(default_factory=time.perf_counter)

    def add(self, metrics: TaskMetrics, seconds: float) -> None:
        total = self.metrics
        total.records_in += metrics.records_in
        total.records_out += metrics.records_out
        total.shuffle_read += metrics.shuffle_read
        total.shuffle_written += metrics.shuffle_written
        total.spilled += metrics.spilled
        total.skipped += metrics.skipped
        total.peak_memory = max(total.peak_memory, metrics.peak_memory)
        total.cpu_seconds += metrics.cpu_seconds
        room = MAX_PROBLEMS - len(total.problems)
        total.problems += metrics.problems[: max(room, 0)]
        self.task_seconds += seconds

    def statistics(self) -> StageStatistics:
        m = self.metrics
        return StageStatistics(
            stage=self.number,
            name=self.plan.name,
            output=self.plan.kind,
            tasks=len(self.plan.tasks),
            records_in=m.records_in,
            records_out=m.records_out,
            shuffle_read=m.shuffle_read,
            shuffle_written=m.shuffle_written,
            spilled=m.spilled,
            skipped=m.skipped,
            retries=self.retries,
            seconds=time.perf_counter() - self.started,
            task_seconds=self.task_seconds,
            cpu_seconds=m.cpu_seconds,
            peak_memory=m.peak_memory,
        )


class LocalExecutor:
    """Runs plans on this machine: worker processes, shuffle files, bounded memory.

    Use it through :func:`~distsys.dataflow.open_session`. Used from one thread at a
    time (jobs run one after another); the worker processes are reused across jobs.

    Args:
        workers: worker processes (default: one per CPU this process may use). Also the
            default number of partitions of wide operations.
        memory_limit: bytes (or a size such as ``"256MB"``) of data one task may hold in
            memory before it spills to disk; per worker (default 512 MiB).
        processes: False runs every task in the calling thread, one at a time — for
            debugging and tests; functions then need not pickle.
        workdir: where the scratch directory (shuffle, spill and cache files) is made;
            default: the system's temporary directory.
        progress: True for a progress bar per stage (rich, on standard error), False
            for none, None to show it only on a terminal, or a ``ProgressListener``.
        max_task_failures: attempts of a task before its job fails (default 4).
        broadcast_limit: input bytes (or a size) under which ``join`` sends the other
            side whole to every task instead of shuffling both (default: 1/32 of
            ``memory_limit``, as its in-memory table is several times its input; 0: never).
        start_method: ``"forkserver"`` (default where available) or ``"spawn"``.
        modules: ``(name, path)`` scripts every worker imports first.
    """

    def __init__(
        self,
        *,
        workers: int | None = None,
        memory_limit: int | str | None = None,
        processes: bool = True,
        workdir: str | os.PathLike[str] | None = None,
        progress: bool | ProgressListener | None = None,
        max_task_failures: int = MAX_TASK_FAILURES,
        broadcast_limit: int | str | None = None,
        start_method: str | None = None,
        modules: Sequence[tuple[str, str]] = (),
    ) -> None:
        if workers is None:
            workers = default_workers()
        if isinstance(workers, bool) or not isinstance(workers, int):
            raise ArgumentTypeError("workers", workers, "an int >= 1")
        if workers < 1:
            raise InvalidArgumentError("workers", workers, "an int >= 1")
        limit = (
            DEFAULT_MEMORY_LIMIT
            if memory_limit is None
            else parse_size(memory_limit, "memory_limit")
        )
        if broadcast_limit is None:
            self._broadcast_limit = limit // BROADCAST_SHARE
        elif broadcast_limit == 0:
            self._broadcast_limit = 0
        else:
            self._broadcast_limit = parse_size(broadcast_limit, "broadcast_limit")
        if isinstance(max_task_failures, bool) or not isinstance(max_task_failures, int):
            raise ArgumentTypeError("max_task_failures", max_task_failures, "an int >= 1")
        if max_task_failures < 1:
            raise InvalidArgumentError("max_task_failures", max_task_failures, "an int >= 1")
        method = start_method or default_start_method()
        if method not in ("forkserver", "spawn"):
            raise InvalidArgumentError("start_method", method, "'forkserver' or 'spawn'")
        if workdir is not None and not os.path.isdir(workdir):
            raise InvalidArgumentError("workdir", workdir, "an existing directory")
        self._workers = workers
        self._memory_limit = limit
        self._processes = processes
        self._max_failures = max_task_failures
        self._listener = make_listener(progress)
        self._root = tempfile.mkdtemp(prefix="distsys-dataflow-", dir=workdir)
        self._planner = Planner(self._root, limit)
        self._jobs: list[JobStatistics] = []
        self._problems: list[list[str]] = []  # the running job's messages, per stage
        self._stage_ids = itertools.count(1)
        self._closed = False
        started = time.perf_counter()
        try:
            self._runner: Runner = (
                ProcessRunner(workers, method, modules) if processes else InlineRunner()
            )
        except BaseException:
            shutil.rmtree(self._root, ignore_errors=True)
            raise
        self._startup = time.perf_counter() - started

    @property
    def name(self) -> str:
        return "local"

    @property
    def parallelism(self) -> int:
        return self._workers

    @property
    def broadcast_limit(self) -> int:
        """Input bytes under which a join broadcasts its other side (0: never)."""
        return self._broadcast_limit

    @property
    def memory_limit(self) -> int:
        """Bytes of data one task may hold before it spills."""
        return self._memory_limit

    @property
    def workdir(self) -> str:
        """The scratch directory of shuffle, spill and cache files."""
        return self._root

    @property
    def worker_pids(self) -> list[int]:
        """The worker processes' ids (empty with ``processes=False``)."""
        return self._runner.pids if isinstance(self._runner, ProcessRunner) else []

    def statistics(self) -> SessionStatistics:
        restarts = self._runner.restarts if isinstance(self._runner, ProcessRunner) else 0
        return SessionStatistics(
            engine="local",
            workers=self._workers if self._processes else 0,
            jobs=tuple(self._jobs),
            startup_seconds=self._startup,
            worker_restarts=restarts,
            cached=sum(1 for c in self._planner.caches.values() if c.done),
        )

    def unpersist(self, node: Cache) -> None:
        self._planner.unpersist(node)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._runner.close()
        finally:
            self._planner.close()
            shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, job: Job[T]) -> JobResult[T]:
        """Run ``job`` and return the action's value and the job's statistics.

        Raises:
            NotPicklableError: a function cannot be sent to the workers (before any work).
            MalformedRecordError: a bad input record, with ``errors="fail"``.
            RecordTypeError: a record of the wrong shape reached an operation.
            TaskFailedError: a task failed ``max_task_failures`` times.
        """
        if self._closed:
            raise InvalidArgumentError(
                "session", "closed", "an open session", detail="it was closed"
            )
        if self._processes:
            check_picklable(job)
        number = len(self._jobs) + 1
        started = time.perf_counter()
        plans = self._planner.plan(job)
        stages: list[StageStatistics] = []
        self._listener.job_started(number, job.action.name)
        try:
            values = self._execute(job, plans, stages)
            value = job.action.finish([values[p] for p in plans[-1].tasks])
        except BaseException:
            self._planner.discard_incomplete()
            self._runner.abort()
            self._listener.job_ended(None)
            raise
        problems = tuple(itertools.islice((p for s in self._problems for p in s), MAX_PROBLEMS))
        statistics = JobStatistics(
            number, job.action.name, "local", tuple(stages), time.perf_counter() - started, problems
        )
        self._jobs.append(statistics)
        self._listener.job_ended(statistics)
        return JobResult(value, statistics)

    def _launch(self, plan: StagePlan, number: int, job: Job[Any]) -> _Stage:
        stage = _Stage(plan, next(self._stage_ids), number)
        stage.spec = self._planner.spec(plan, stage.id, job)
        blob = None
        if self._processes:
            try:
                blob = pickle.dumps(stage.spec, protocol=5)
            except Exception as exc:
                raise _unpicklable_data(plan, exc) from None
        self._runner.add_stage(stage.id, stage.spec, blob)
        stage.left = set(plan.tasks)
        self._listener.stage_started(number, plan.name, len(plan.tasks))
        return stage

    def _execute(
        self, job: Job[Any], plans: list[StagePlan], done: list[StageStatistics]
    ) -> dict[int, Any]:
        waiting = list(plans)
        finished: set[int] = set()
        running: dict[int, _Stage] = {}
        queue: deque[tuple[int, int, int]] = deque()
        results: dict[int, Any] = {}
        active = 0
        self._problems.clear()
        while True:
            for plan in list(waiting):
                if all(id(parent) in finished for parent in plan.parents):
                    waiting.remove(plan)
                    stage = self._launch(plan, len(done) + len(running) + 1, job)
                    running[stage.id] = stage
                    queue.extend((stage.id, p, 1) for p in plan.tasks)
                    if not plan.tasks:
                        self._finish(stage, running, finished, done)
            if id(plans[-1]) in finished:
                return results
            while queue and self._runner.idle() > 0:
                self._runner.start(*queue.popleft())
                active += 1
            if active == 0:  # pragma: no cover - defensive: nothing can make progress
                raise DistsysError("the job's stages cannot make progress (a planning error)")
            for event in self._runner.wait():
                active -= 1
                stage = running[event.stage]
                if event.failure is None:
                    self._succeeded(stage, event, results)
                    if not stage.left:
                        self._finish(stage, running, finished, done)
                else:
                    self._failed(stage, event, queue)

    def _succeeded(self, stage: _Stage, event: Event, results: dict[int, Any]) -> None:
        if event.partition not in stage.left:
            return
        stage.left.discard(event.partition)
        stage.add(event.metrics, event.seconds)
        self._planner.task_done(stage.plan, event.partition, event.value)
        if stage.plan.kind == "result":
            results[event.partition] = event.value
        self._listener.task_ended(stage.number, event.metrics)

    def _failed(self, stage: _Stage, event: Event, queue: deque[tuple[int, int, int]]) -> None:
        problem = event.failure
        assert problem is not None
        attempts = stage.failures.get(event.partition, 0) + 1
        stage.failures[event.partition] = attempts
        self._listener.task_ended(stage.number, None)
        where = f"{stage.number} ({stage.plan.name})"
        if problem.deterministic:
            original = problem.exception()
            if original is not None:
                original.add_note(f"raised by task {event.partition} of stage {where}")
                raise original
        if problem.deterministic or attempts >= self._max_failures:
            error = TaskFailedError(
                where,
                event.partition,
                attempts,
                problem.error_type,
                problem.message,
                problem.traceback,
            )
            raise error from problem.exception()
        stage.retries += 1
        queue.appendleft((stage.id, event.partition, event.attempt + 1))

    def _finish(
        self,
        stage: _Stage,
        running: dict[int, _Stage],
        finished: set[int],
        done: list[StageStatistics],
    ) -> None:
        self._planner.stage_done(stage.plan)
        finished.add(id(stage.plan))
        del running[stage.id]
        self._runner.forget(stage.id)
        statistics = stage.statistics()
        done.append(statistics)
        self._problems.append(stage.metrics.problems)
        self._listener.stage_ended(statistics)
