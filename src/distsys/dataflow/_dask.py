"""The Dask executor: plans run as tasks on a ``dask.distributed`` cluster.

Features: every plan node; a ``LocalCluster`` of worker processes started for the session
(``workers=``, ``memory_limit=``), or any running cluster at ``scheduler_address=``
(``"tcp://host:8786"``), which the session then only connects to and never stops.

How a plan becomes tasks (futures submitted as the plan is walked, nothing waits until
the action gathers its results, except a sort, whose range bounds need its samples):

- a chain of narrow nodes is one task per partition, over a *physical plan* whose
  shuffle, cache and broadcast inputs are replaced by the futures they were computed in;
  the physical plan is scattered once per stage;
- a shuffle is a map task per input partition returning one piece per reduce partition
  (:mod:`distsys.dataflow._remote`), a ``getitem`` task per piece, and a reduce task per
  output partition — Dask's own task-based shuffle, with our partitioner;
- shuffle outputs and ``cache()`` partitions stay in the workers' memory (Dask spills
  them to disk under memory pressure) while their dataset is alive, and later jobs reuse
  them; a broadcast join's table is built once, in one task, and sent to each worker.

Functions travel with cloudpickle, so lambdas work; functions in importable modules are
sent by reference and must be importable on the workers.
"""

from __future__ import annotations

import logging
import operator
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from distsys.dataflow._dask_tasks import (
    ByValue,
    call,
    cut_task,
    map_task,
    partition_task,
    reduce_task,
    run_action,
    samples_of,
    sort_task,
    table_task,
)
from distsys.dataflow._errors import EngineUnavailableError
from distsys.dataflow._exchange import (
    range_bounds,
    shuffle_spec,
)
from distsys.dataflow._executor import Job, JobResult
from distsys.dataflow._metrics import JobStatistics, SessionStatistics
from distsys.dataflow._plan import (
    BroadcastJoin,
    Cache,
    Narrow,
    Node,
    Shuffle,
    SortBy,
    Source,
    Union,
)
from distsys.dataflow._remote import (
    Probe,
    Slot,
    check_shippable,
    describe_stage,
    raise_failure,
    result_stage,
    unshippable_record,
)
from distsys.dataflow._sizes import parse_size
from distsys.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["DaskExecutor"]

T = TypeVar("T")
MAX_TASK_FAILURES = 4
DEFAULT_BROADCAST_LIMIT = 10 << 20  # as Spark's spark.sql.autoBroadcastJoinThreshold


def _forget(kept: dict[int, Any], key: int) -> None:
    kept.pop(key, None)


@dataclass(eq=False)
class _Kept:
    """The futures of a node's partitions, kept while the node lives."""

    futures: list[Any]
    job: int


class DaskExecutor:
    """Runs plans on a Dask distributed cluster.

    Use it through ``open_session("dask", ...)``. Used from one thread at a time.

    Args:
        scheduler_address: a running scheduler (``"tcp://10.0.0.5:8786"``); the session
            connects to it and leaves it running on close. None (the default) starts a
            ``LocalCluster`` on 127.0.0.1, stopped on close.
        workers: worker processes of the local cluster (default: one per CPU), one
            thread each.
        processes: False runs the local cluster's workers as threads of this process.
        memory_limit: bytes (or a size such as ``"2GB"``) per local worker, beyond which
            Dask spills and then restarts it (default: Dask's ``"auto"``, a share of RAM).
        max_task_failures: attempts of a task before its job fails (Dask ``retries``).
        broadcast_limit: input bytes (or a size) under which ``join`` broadcasts the
            other side (default 10 MiB; 0: never).
        parallelism: partitions of wide operations when not told (default: the
            cluster's worker threads).
    """

    def __init__(
        self,
        *,
        scheduler_address: str | None = None,
        workers: int | None = None,
        processes: bool = True,
        memory_limit: int | str | None = None,
        max_task_failures: int = MAX_TASK_FAILURES,
        broadcast_limit: int | str | None = None,
        parallelism: int | None = None,
    ) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:  # pragma: no cover - the engine table checks first
            raise EngineUnavailableError(
                "dask", "it needs the 'distributed' library: pip install 'distsys[dask]'"
            ) from None
        if scheduler_address is not None and not isinstance(scheduler_address, str):
            raise ArgumentTypeError(
                "scheduler_address", scheduler_address, "an address such as 'tcp://host:8786'"
            )
        for field, value in (("workers", workers), ("parallelism", parallelism)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ArgumentTypeError(field, value, "an int >= 1")
            if value is not None and value < 1:
                raise InvalidArgumentError(field, value, "an int >= 1")
        if isinstance(max_task_failures, bool) or not isinstance(max_task_failures, int):
            raise ArgumentTypeError("max_task_failures", max_task_failures, "an int >= 1")
        if max_task_failures < 1:
            raise InvalidArgumentError("max_task_failures", max_task_failures, "an int >= 1")
        limit: int | str = (
            "auto" if memory_limit is None else parse_size(memory_limit, "memory_limit")
        )
        self._broadcast_limit = (
            DEFAULT_BROADCAST_LIMIT
            if broadcast_limit is None
            else 0
            if broadcast_limit == 0
            else parse_size(broadcast_limit, "broadcast_limit")
        )
        self._retries = max_task_failures - 1
        self._attempts = max_task_failures
        started = time.perf_counter()
        self._cluster: Any = None
        if scheduler_address is None:
            from distsys.dataflow._local import default_workers

            try:
                self._cluster = LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=workers or default_workers(),
                    threads_per_worker=1,
                    processes=processes,
                    memory_limit=limit,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",  # a free port: never clash with 8787
                    silence_logs=logging.ERROR,
                )
            except Exception as exc:
                raise EngineUnavailableError(
                    "dask",
                    f"its LocalCluster did not start ({type(exc).__name__}: {exc}); its worker "
                    "processes import the main script again, so a script that opens a "
                    "session must do it under `if __name__ == '__main__':`",
                ) from exc
            address = self._cluster
        else:
            address = scheduler_address
        try:
            self._client: Any = Client(  # type: ignore[no-untyped-call]
                address, set_as_default=False
            )
        except BaseException:
            if self._cluster is not None:
                self._cluster.close()
            raise
        self._startup = time.perf_counter() - started
        threads: dict[str, int] = self._client.nthreads()  # type: ignore[no-untyped-call]
        self._workers = len(threads)
        self._parallelism = parallelism or max(1, sum(threads.values()))
        self._kept: dict[int, _Kept] = {}  # shuffle outputs, caches, broadcast tables
        self._caches: set[int] = set()
        self._finalizers: list[weakref.finalize[Any, Any]] = []
        self._jobs: list[JobStatistics] = []
        self._closed = False

    # ------------------------------------------------------------ protocol

    @property
    def name(self) -> str:
        return "dask"

    @property
    def parallelism(self) -> int:
        return self._parallelism

    @property
    def broadcast_limit(self) -> int:
        """Input bytes under which a join broadcasts its other side (0: never)."""
        return self._broadcast_limit

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` jobs run on."""
        return self._client

    def statistics(self) -> SessionStatistics:
        return SessionStatistics(
            engine="dask",
            workers=self._workers,
            jobs=tuple(self._jobs),
            startup_seconds=self._startup,
            worker_restarts=0,
            cached=sum(1 for key in self._caches if key in self._kept),
        )

    def unpersist(self, node: Cache) -> None:
        self._kept.pop(id(node), None)
        self._caches.discard(id(node))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for finalizer in self._finalizers:
            finalizer.detach()
        self._finalizers.clear()
        self._kept.clear()
        try:
            self._client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, job: Job[T]) -> JobResult[T]:
        """Run ``job`` on the cluster and return the action's value and statistics.

        Raises:
            NotPicklableError: a function cannot be sent to the workers (before any work).
            MalformedRecordError: a bad input record, with ``errors="fail"``.
            RecordTypeError: a record of the wrong shape reached an operation.
            TaskFailedError: a task failed on every attempt.
        """
        if self._closed:
            raise InvalidArgumentError(
                "session", "closed", "an open session", detail="it was closed"
            )
        check_shippable(job)
        number = len(self._jobs) + 1
        started = time.perf_counter()
        action = job.action
        root = job.root
        tasks = job.partitions if job.partitions is not None else tuple(range(root.partitions))
        stage = f"{describe_stage(root)} → {action.name}"
        try:
            plan = self._scatter(root, number)
            futures = []
            for index in tasks:
                keys, values = self._needs(root, index, number)
                futures.append(
                    self._submit(
                        run_action,
                        stage,
                        plan,
                        index,
                        action.run_partition,
                        action.size,
                        keys,
                        *values,
                    )
                )
            results = self._gather(futures)
            value = action.finish([result[0] for result in results])
        except BaseException:
            for key in [k for k, kept in self._kept.items() if kept.job == number]:
                del self._kept[key]
            raise
        seconds = time.perf_counter() - started
        statistics = JobStatistics(
            number, action.name, "dask", (result_stage(stage, results, seconds),), seconds
        )
        self._jobs.append(statistics)
        return JobResult(value, statistics)

    # ------------------------------------------------------------ planning

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        from distributed import Future

        shipped = [arg if isinstance(arg, Future) else ByValue(arg) for arg in args]
        return self._client.submit(call, fn, *shipped, pure=False, retries=self._retries)

    def _gather(self, futures: list[Any]) -> list[Any]:
        try:
            return self._client.gather(futures)  # type: ignore[no-any-return]
        except Exception as exc:
            raise_failure(exc, self._attempts)
            raise

    def _scatter(self, node: Node, job: int) -> Any:
        """Return a future of the physical plan of a stage computing ``node``."""
        plan = self._physical(node, {}, job)
        try:
            return self._client.scatter(ByValue(plan), hash=False)
        except Exception:
            problem = unshippable_record(node)
            if problem is not None:
                raise problem from None
            raise

    def _physical(self, node: Node, memo: dict[int, Node], job: int) -> Node:
        if id(node) in memo:
            return memo[id(node)]
        result: Node
        if isinstance(node, Shuffle | Cache):
            result = Slot(id(node), node.partitions, node.label)
        elif isinstance(node, BroadcastJoin):
            result = Probe(self._physical(node.parent, memo, job), id(node), node.how)
        elif isinstance(node, Narrow):
            result = replace(node, parent=self._physical(node.parent, memo, job))
        elif isinstance(node, Union):
            result = Union(tuple(self._physical(p, memo, job) for p in node.inputs))
        else:
            result = node
        memo[id(node)] = result
        return result

    def _needs(
        self, node: Node, index: int, job: int
    ) -> tuple[tuple[tuple[int, int], ...], list[Any]]:
        """Return the inputs partition ``index`` of ``node``'s stage reads, and their futures."""
        keys: list[tuple[int, int]] = []
        values: list[Any] = []
        while True:
            if isinstance(node, Shuffle):
                keys.append((id(node), index))
                values.append(self._shuffle(node, job)[index])
                break
            if isinstance(node, Cache):
                keys.append((id(node), index))
                values.append(self._cache(node, job)[index])
                break
            if isinstance(node, BroadcastJoin):
                keys.append((id(node), 0))
                values.append(self._table(node, job))
                node = node.parent
            elif isinstance(node, Narrow):
                node = node.parent
            elif isinstance(node, Union):
                node, index = node.locate(index)
            else:
                assert isinstance(node, Source)
                break
        return tuple(keys), values

    def _keep(self, node: Node, futures: list[Any], job: int) -> list[Any]:
        self._kept[id(node)] = _Kept(futures, job)
        self._finalizers.append(weakref.finalize(node, _forget, self._kept, id(node)))
        return futures

    def _stage_tasks(
        self, node: Node, job: int, task: Callable[..., Any], stage: str, *head: Any
    ) -> list[Any]:
        """Submit ``task(stage, *head, plan, i, keys, *inputs)`` for every partition of ``node``."""
        plan = self._scatter(node, job)
        futures = []
        for index in range(node.partitions):
            keys, values = self._needs(node, index, job)
            futures.append(self._submit(task, stage, *head, plan, index, keys, *values))
        return futures

    def _shuffle(self, node: Shuffle, job: int) -> list[Any]:
        kept = self._kept.get(id(node))
        if kept is not None:
            return kept.futures
        spec = shuffle_spec(node)
        sides: list[list[Any]] = []
        for parent in node.parents:
            stage = f"{describe_stage(parent)} → {node.label}"
            if isinstance(node, SortBy):
                runs = self._stage_tasks(parent, job, sort_task, stage, spec)
                samples = self._gather([self._submit(samples_of, run) for run in runs])
                bounds = range_bounds([s for part in samples for s in part], node.count)
                maps = [
                    self._submit(cut_task, stage, spec, bounds, i, run)
                    for i, run in enumerate(runs)
                ]
            else:
                maps = self._stage_tasks(parent, job, map_task, stage, spec)
            sides.append(maps)
        stage = node.label
        left = len(sides[0])
        futures = []
        for r in range(node.count):
            pieces = [self._submit(operator.getitem, piece, r) for maps in sides for piece in maps]
            futures.append(self._submit(reduce_task, stage, spec, r, left, *pieces))
        return self._keep(node, futures, job)

    def _cache(self, node: Cache, job: int) -> list[Any]:
        kept = self._kept.get(id(node))
        if kept is not None:
            return kept.futures
        stage = f"{describe_stage(node.parent)} → cache"
        futures = self._stage_tasks(node.parent, job, partition_task, stage)
        self._caches.add(id(node))
        return self._keep(node, futures, job)

    def _table(self, node: BroadcastJoin, job: int) -> Any:
        kept = self._kept.get(id(node))
        if kept is not None:
            return kept.futures[0]
        stage = f"{describe_stage(node.right)} → {node.label}"
        parts = self._stage_tasks(node.right, job, partition_task, stage)
        table = self._submit(table_task, stage, *parts)
        return self._keep(node, [table], job)[0]
