"""The Spark executor: plans run as PySpark RDDs.

Features: every plan node; a ``local[*]`` SparkContext started for the session, or any
``master=`` URL (``"spark://host:7077"``, ``"local[4]"``, ``"yarn"``); an already running
SparkContext (a notebook's SparkSession) is used as it is and left running on close.

How a plan becomes RDDs (PySpark pipelines consecutive ``mapPartitionsWithIndex`` calls
into one pass in one Python worker, so narrow chains are fused):

- a ``Source`` is ``sc.parallelize(range(n), n)`` whose partition ``i`` reads the
  source's split ``i`` in the worker; narrow nodes are ``mapPartitionsWithIndex``;
  ``union`` is ``sc.union``; ``cache()`` is ``persist(MEMORY_AND_DISK)``;
- a shuffle's map side cuts each partition into one piece per reduce partition
  (:mod:`distsys.dataflow._remote`: combined map-side, placed by our partitioner), keyed
  by the reduce partition; ``partitionBy`` moves piece ``r`` to partition ``r``; the reduce
  side merges the pieces in map-task order — so results match the other engines exactly;
- ``sort_by`` first runs a job that samples the keys (as Spark's ``sortBy`` does), then
  range partitions by the sampled bounds; a broadcast join collects the small side in
  the driver and sends it with ``sc.broadcast``;
- an action is ``sc.runJob`` over the partitions it needs.

Spark keeps shuffle files of RDDs still referenced, so later jobs of a dataset reuse
them (its "skipped stages"). Functions travel with cloudpickle (lambdas work); the local
master's Python workers run this interpreter with this process's ``sys.path``, so
modules importable here are importable there.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from distsys.dataflow._exchange import (
    build_table,
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
    check_shippable,
    describe_stage,
    raise_failure,
    result_stage,
    unshippable_record,
)
from distsys.dataflow._sizes import parse_size
from distsys.dataflow._spark_tasks import (
    COLLECT,
    PLACEHOLDER,
    MapSide,
    NarrowStep,
    ProbeTable,
    ReadSplit,
    ReduceSide,
    RunAction,
    SampleKeys,
    SortSide,
    own_partition,
    passed,
)
from distsys.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["SparkExecutor"]

T = TypeVar("T")
DEFAULT_BROADCAST_LIMIT = 10 << 20  # spark.sql.autoBroadcastJoinThreshold
_LOCAL = re.compile(r"local(?:\[(?P<threads>[^,\]]+)(?:,(?P<failures>\d+))?\])?$")

# Spark's own log lines at ERROR only; task failures are reported by the session (with
# the Python traceback), so the executor's and scheduler's copies of them are dropped.
# PySpark's driver is an "interpreter" to Spark, which sets the root level to its gateway
# logger's level, announcing it unless the two agree.
LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.executor.name = org.apache.spark.executor.Executor
logger.executor.level = off
logger.tasks.name = org.apache.spark.scheduler.TaskSetManager
logger.tasks.level = off
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = error
"""


# ---------------------------------------------------------------- the executor


def _forget(kept: dict[int, Any], key: int) -> None:
    kept.pop(key, None)


def _python_path() -> str:
    paths = [os.path.abspath(p or os.curdir) for p in sys.path]
    return os.pathsep.join(dict.fromkeys(p for p in paths if os.path.isdir(p)))


class SparkExecutor:
    """Runs plans on Spark (PySpark RDDs).

    Use it through ``open_session("spark", ...)``. Used from one thread at a time.

    Args:
        master: the Spark master URL (default ``"local[*]"``: threads of a JVM on this
            machine, Python workers beside it). A SparkContext already running in this
            process is used instead, whatever its master, and left running on close.
        app_name: the application name Spark shows.
        workers: with no ``master``, run ``local[workers]`` (threads, each with a Python
            worker process).
        memory_limit: bytes (or a size such as ``"2GB"``) of JVM heap: the driver's for a
            local master, each executor's otherwise (Spark's ``spark.driver.memory`` /
            ``spark.executor.memory``).
        conf: more Spark configuration (``{"spark.executor.memory": "4g"}``); it wins
            over the defaults this executor sets (for local masters: no web UI, the
            driver on 127.0.0.1, Python workers running ``sys.executable``).
        broadcast_limit: input bytes (or a size) under which ``join`` broadcasts the
            other side (default 10 MiB; 0: never).
        parallelism: partitions of wide operations when not told (default: Spark's
            ``defaultParallelism``).
    """

    def __init__(
        self,
        *,
        master: str | None = None,
        app_name: str = "distsys",
        conf: Mapping[str, str] | None = None,
        workers: int | None = None,
        memory_limit: int | str | None = None,
        broadcast_limit: int | str | None = None,
        parallelism: int | None = None,
    ) -> None:
        from pyspark import SparkConf, SparkContext

        if master is not None and not isinstance(master, str):
            raise ArgumentTypeError("master", master, "a Spark master URL such as 'local[*]'")
        if not isinstance(app_name, str):
            raise ArgumentTypeError("app_name", app_name, "a str")
        if conf is not None and not isinstance(conf, Mapping):
            raise ArgumentTypeError("conf", conf, "a mapping of Spark settings to values")
        if parallelism is not None and (
            isinstance(parallelism, bool) or not isinstance(parallelism, int) or parallelism < 1
        ):
            raise InvalidArgumentError("parallelism", parallelism, "an int >= 1")
        self._broadcast_limit = (
            DEFAULT_BROADCAST_LIMIT
            if broadcast_limit is None
            else 0
            if broadcast_limit == 0
            else parse_size(broadcast_limit, "broadcast_limit")
        )
        if workers is not None:
            if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
                raise InvalidArgumentError("workers", workers, "an int >= 1")
            if master is not None:
                raise InvalidArgumentError(
                    "workers", workers, "no workers= with master= (the master decides)"
                )
        master = master or (f"local[{workers}]" if workers else "local[*]")
        local = _LOCAL.match(master)
        settings = dict(conf or {})
        if memory_limit is not None:
            memory = f"{parse_size(memory_limit, 'memory_limit') >> 20}m"
            settings.setdefault("spark.driver.memory" if local else "spark.executor.memory", memory)
        started = time.perf_counter()
        self._scratch = tempfile.mkdtemp(prefix="distsys-spark-")
        self._owned = SparkContext._active_spark_context is None
        try:
            if self._owned:
                spark_conf = SparkConf().setMaster(master).setAppName(app_name)
                for key, value in self._defaults(local is not None, settings).items():
                    spark_conf.set(key, str(value))
                self._sc: Any = self._start(SparkContext, spark_conf, local is not None)
            else:
                self._sc = SparkContext.getOrCreate()
        except BaseException:
            shutil.rmtree(self._scratch, ignore_errors=True)
            raise
        self._startup = time.perf_counter() - started
        failures = local.group("failures") if local else None
        self._attempts = (
            int(failures)
            if failures
            else 1
            if local
            else int(self._sc.getConf().get("spark.task.maxFailures", "4"))
        )
        self._parallelism = parallelism or max(1, int(self._sc.defaultParallelism))
        self._rdds: dict[int, Any] = {}
        self._caches: dict[int, Any] = {}
        self._broadcasts: list[Any] = []
        self._finalizers: list[weakref.finalize[Any, Any]] = []
        self._jobs: list[JobStatistics] = []
        self._closed = False

    def _defaults(self, local: bool, settings: dict[str, str]) -> dict[str, str]:
        log4j = os.path.join(self._scratch, "log4j2.properties")
        with open(log4j, "w", encoding="utf-8") as out:
            out.write(LOG4J2)
        java = settings.get("spark.driver.extraJavaOptions", "")
        defaults = {
            "spark.ui.showConsoleProgress": "false",
            "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{log4j} {java}",
            # pandas 3 makes PySpark's workers warn on import; nothing here uses pandas.
            "spark.executorEnv.PYTHONWARNINGS": "ignore:PySpark does not yet fully support",
        }
        if local:
            defaults |= {
                "spark.ui.enabled": "false",
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
                "spark.pyspark.python": sys.executable,
                "spark.pyspark.driver.python": sys.executable,
                "spark.executorEnv.PYTHONPATH": _python_path(),
            }
        return defaults | {
            k: v for k, v in settings.items() if k != "spark.driver.extraJavaOptions"
        }

    @staticmethod
    def _start(context: Any, conf: Any, local: bool) -> Any:
        saved = os.environ.get("SPARK_LOCAL_IP")
        if local and saved is None:
            os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"  # read by the JVM as it starts
        try:
            sc = context(conf=conf)
        finally:
            if local and saved is None:
                os.environ.pop("SPARK_LOCAL_IP", None)
        sc.setLogLevel("ERROR")
        return sc

    # ------------------------------------------------------------ protocol

    @property
    def name(self) -> str:
        return "spark"

    @property
    def parallelism(self) -> int:
        return self._parallelism

    @property
    def broadcast_limit(self) -> int:
        """Input bytes under which a join broadcasts its other side (0: never)."""
        return self._broadcast_limit

    @property
    def context(self) -> Any:
        """The ``pyspark.SparkContext`` jobs run on."""
        return self._sc

    def statistics(self) -> SessionStatistics:
        return SessionStatistics(
            engine="spark",
            workers=self._parallelism,
            jobs=tuple(self._jobs),
            startup_seconds=self._startup,
            worker_restarts=0,
            cached=len(self._caches),
        )

    def unpersist(self, node: Cache) -> None:
        rdd = self._caches.pop(id(node), None)
        if rdd is not None:
            rdd.unpersist()
            self._rdds.pop(id(node), None)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for finalizer in self._finalizers:
            finalizer.detach()
        self._finalizers.clear()
        try:
            if not self._owned:
                for rdd in self._caches.values():
                    rdd.unpersist()
                for table in self._broadcasts:
                    table.destroy()
        finally:
            self._rdds.clear()
            self._caches.clear()
            self._broadcasts.clear()
            try:
                if self._owned:
                    self._sc.stop()
            finally:
                shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> SparkExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, job: Job[T]) -> JobResult[T]:
        """Run ``job`` with Spark and return the action's value and statistics.

        Raises:
            NotPicklableError: a function cannot be sent to the workers (before any work).
            MalformedRecordError: a bad input record, with ``errors="fail"``.
            RecordTypeError: a record of the wrong shape reached an operation.
            TaskFailedError: a task failed on every attempt Spark gave it.
        """
        if self._closed:
            raise InvalidArgumentError(
                "session", "closed", "an open session", detail="it was closed"
            )
        check_shippable(job)
        number = len(self._jobs) + 1
        started = time.perf_counter()
        action = job.action
        stage = f"{describe_stage(job.root)} → {action.name}"
        tasks = (
            list(job.partitions) if job.partitions is not None else list(range(job.root.partitions))
        )
        results: list[Any] = []
        if tasks:
            results = self._converted(lambda: self._job(job, stage, tasks), job.root)
        value = action.finish([result[0] for result in results])
        seconds = time.perf_counter() - started
        statistics = JobStatistics(
            number, action.name, "spark", (result_stage(stage, results, seconds),), seconds
        )
        self._jobs.append(statistics)
        return JobResult(value, statistics)

    def _job(self, job: Job[Any], stage: str, tasks: list[int]) -> list[Any]:
        action = job.action
        rdd = self._rdd(job.root).mapPartitionsWithIndex(
            RunAction(stage, action.run_partition, action.size)
        )
        return list(self._sc.runJob(rdd, passed, tasks))

    def _converted(self, fn: Callable[[], Any], root: Node) -> Any:
        """Return ``fn()``, turning a failed Spark job into the error its task raised."""
        try:
            return fn()
        except Exception as exc:
            raise_failure(exc, self._attempts)
            if "pickl" in str(exc).lower():
                problem = unshippable_record(root)
                if problem is not None:
                    raise problem from None
            raise

    # ------------------------------------------------------------ translation

    def _rdd(self, node: Node) -> Any:
        """Return the RDD whose partition ``i`` is ``node``'s partition ``i``."""
        rdd = self._rdds.get(id(node))
        if rdd is not None:
            return rdd
        rdd = self._translate(node)
        self._rdds[id(node)] = rdd
        self._finalizers.append(weakref.finalize(node, _forget, self._rdds, id(node)))
        return rdd

    def _translate(self, node: Node) -> Any:
        sc = self._sc
        if isinstance(node, Source):
            count = node.partitions
            if count == 0:
                return sc.emptyRDD()
            seeds = sc.parallelize(range(count), count)
            return seeds.mapPartitionsWithIndex(ReadSplit(node, node.label))
        if isinstance(node, Narrow):
            stripped = replace(node, parent=PLACEHOLDER)
            return self._rdd(node.parent).mapPartitionsWithIndex(NarrowStep(stripped, node.label))
        if isinstance(node, Union):
            return sc.union([self._rdd(parent) for parent in node.inputs])
        if isinstance(node, Cache):
            from pyspark import StorageLevel

            rdd = self._rdd(node.parent).mapPartitions(passed, preservesPartitioning=True)
            rdd = rdd.persist(StorageLevel.MEMORY_AND_DISK)
            self._caches[id(node)] = rdd
            self._finalizers.append(weakref.finalize(node, _forget, self._caches, id(node)))
            return rdd
        if isinstance(node, BroadcastJoin):
            stage = f"{describe_stage(node.right)} → {node.label}"
            right = self._rdd(node.right).mapPartitionsWithIndex(NarrowStep(COLLECT, stage))
            table = sc.broadcast(build_table([right.collect()]))
            self._broadcasts.append(table)
            function = ProbeTable(table, node.how, node.label, node.label)
            return self._rdd(node.parent).mapPartitionsWithIndex(function)
        if isinstance(node, Shuffle):
            return self._shuffle(node)
        raise TypeError(f"the spark engine cannot run {node.label}")

    def _shuffle(self, node: Shuffle) -> Any:
        spec = shuffle_spec(node)
        sides = []
        for side, parent in enumerate(node.parents):
            stage = f"{describe_stage(parent)} → {node.label}"
            rdd = self._rdd(parent)
            if isinstance(node, SortBy):
                samples = rdd.mapPartitionsWithIndex(SampleKeys(spec, stage)).collect()
                bounds = tuple(range_bounds(samples, node.count))
                sides.append(rdd.mapPartitionsWithIndex(SortSide(spec, bounds, stage)))
            else:
                sides.append(rdd.mapPartitionsWithIndex(MapSide(spec, side, stage)))
        pieces = sides[0] if len(sides) == 1 else self._sc.union(sides)
        moved = pieces.partitionBy(node.count, own_partition)
        return moved.mapPartitionsWithIndex(ReduceSide(spec, node.label))
