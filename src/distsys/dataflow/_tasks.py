"""Running one task: compute a partition through a stage's fused plan, write its output.

A stage's plan reaches the worker with its shuffle and cache nodes already replaced by
readers (:mod:`distsys.dataflow._shuffle_read`), so computing partition ``i`` is a walk
down narrow nodes that builds one lazy iterator pipeline — ``map``, ``filter`` and
``chain.from_iterable`` from the standard library, all in C — then one consumer drains
it: a shuffle writer, a cache file, or the action's per-partition function. No record
is materialized between two narrow operations.
"""

from __future__ import annotations

import os
import pickle
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any

from distsys.dataflow._errors import RecordTypeError
from distsys.dataflow._frames import write_frame
from distsys.dataflow._metrics import TaskMetrics
from distsys.dataflow._plan import Filter, FlatMap, Map, MapPartitions, Node, Source, Union
from distsys.dataflow._shuffle_read import BroadcastProbe, Physical, TaskEnv
from distsys.dataflow._shuffle_write import (
    MapOutput,
    Writer,
    chunks,
    commit_directory,
    map_directory,
    temporary_directory,
)
from distsys.dataflow._spill import SpillArea
from distsys.errors import DistsysError, InvalidArgumentError

__all__ = [
    "CacheOutput",
    "Failure",
    "ResultOutput",
    "ShuffleOutput",
    "StageSpec",
    "compute",
    "failure",
    "run_task",
]

DETERMINISTIC = (InvalidArgumentError,)  # bad input or a bad function: retrying cannot help


@dataclass(frozen=True, slots=True)
class ShuffleOutput:
    """The stage writes map outputs of a shuffle: input ``side`` of it, with ``writer``."""

    directory: str
    side: int
    writer: Writer


@dataclass(frozen=True, slots=True)
class CacheOutput:
    """The stage keeps each partition in the file ``directory/part-<i>``."""

    directory: str


@dataclass(frozen=True, slots=True)
class ResultOutput:
    """The stage runs the action's function on each partition and returns the value."""

    run_partition: Callable[[int, Iterator[Any]], Any]
    size: Callable[[Any], int] | None = None


@dataclass(frozen=True, slots=True)
class StageSpec:
    """Everything a worker needs to run any task of one stage.

    Attributes:
        stage: the stage's id in its executor.
        root: the stage's physical plan (narrow nodes over sources and readers).
        output: what the tasks produce.
        workdir: the session's scratch directory (spill files go under it).
        budget: bytes each memory consumer of a task may hold.
    """

    stage: int
    root: Node
    output: ShuffleOutput | CacheOutput | ResultOutput
    workdir: str
    budget: int


def compute(node: Node, index: int, env: TaskEnv) -> Iterator[Any]:
    """Return the lazy iterator of partition ``index`` of ``node``."""
    if isinstance(node, Physical):
        return node.read_in(index, env)
    if isinstance(node, Source):
        return node.read(index, env.metrics)
    if isinstance(node, Map):
        return map(node.fn, compute(node.parent, index, env))
    if isinstance(node, Filter):
        return filter(node.fn, compute(node.parent, index, env))
    if isinstance(node, FlatMap):
        return chain.from_iterable(map(node.fn, compute(node.parent, index, env)))
    if isinstance(node, MapPartitions):
        return iter(node.fn(compute(node.parent, index, env)))
    if isinstance(node, Union):
        parent, local = node.locate(index)
        return compute(parent, local, env)
    if isinstance(node, BroadcastProbe):
        return node.probe(compute(node.parent, index, env), env)
    raise TypeError(f"{node.label} cannot run inside a stage: the executor must plan it")


def _peak_memory() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def run_task(spec: StageSpec, partition: int, *, worker: bool = False) -> tuple[Any, TaskMetrics]:
    """Run partition ``partition`` of a stage; return its result and counters.

    ``worker`` says the task runs in a worker process, which may then tune the process
    (freeze long-lived tables out of the garbage collector's sight).
    """
    metrics = TaskMetrics()
    cpu = time.process_time()
    spill = SpillArea(os.path.join(spec.workdir, "spill"), metrics)
    env = TaskEnv(metrics, spec.budget, spill, worker)
    try:
        records = compute(spec.root, partition, env)
        output = spec.output
        result: Any
        if isinstance(output, ShuffleOutput):
            final = map_directory(output.directory, output.side, partition)
            temporary = temporary_directory(final)
            try:
                result = output.writer.write(records, temporary, spec.budget, metrics, partition)
            except BaseException:
                _remove_tree(temporary)
                raise
            commit_directory(temporary, final)
        elif isinstance(output, CacheOutput):
            result = _write_cache(records, output.directory, partition, metrics)
        else:
            result = output.run_partition(partition, records)
            if output.size is not None:
                metrics.records_out += output.size(result)
    finally:
        spill.close()
    metrics.peak_memory = _peak_memory()
    metrics.cpu_seconds = time.process_time() - cpu
    return result, metrics


def _write_cache(
    records: Iterator[Any], directory: str, partition: int, metrics: TaskMetrics
) -> MapOutput:
    final = os.path.join(directory, f"part-{partition:05d}")
    temporary = f"{final}.{os.getpid()}.tmp"
    count = written = 0
    try:
        with open(temporary, "wb") as out:
            for chunk in chunks(records):
                written += write_frame(out, chunk)
                count += len(chunk)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    os.replace(temporary, final)
    metrics.records_out += count
    return MapOutput((written,), count)


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class Failure:
    """A task's exception, in a form that crosses processes.

    Attributes:
        error_type: the exception type's qualified name.
        message: ``str(exc)``.
        traceback: the traceback formatted where the task ran.
        error: the pickled exception, or None if it does not pickle.
        deterministic: retrying cannot help (malformed input, a record of the wrong shape).
    """

    error_type: str
    message: str
    traceback: str
    error: bytes | None
    deterministic: bool

    def exception(self) -> BaseException | None:
        """Return the original exception, unpickled, or None."""
        if self.error is None:
            return None
        try:
            exc = pickle.loads(self.error)
        except Exception:
            return None
        return exc if isinstance(exc, BaseException) else None


def failure(exc: BaseException) -> Failure:
    """Describe ``exc`` (being handled) for the driver."""
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    blob: bytes | None
    try:
        blob = pickle.dumps(exc, protocol=5)
        pickle.loads(blob)
    except Exception:
        blob = None
    text = "".join(traceback.format_exception(exc))
    return Failure(name, str(exc), text, blob, isinstance(exc, DETERMINISTIC))


def result_not_picklable(action: str, value: Any, exc: BaseException) -> RecordTypeError:
    """Return the error for a task result that cannot be sent back to the driver."""
    return RecordTypeError(
        action,
        value,
        "records that pickle, to send them back from the worker processes",
        detail=f"{type(exc).__name__}: {exc}",
    )


def is_distsys(exc: BaseException) -> bool:
    """True for errors distsys raised on purpose."""
    return isinstance(exc, DistsysError)
