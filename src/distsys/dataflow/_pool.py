"""Where tasks run: a pool of worker processes, or the driver's own thread.

Worker processes start with the ``forkserver`` method where the platform has it, else
``spawn``. Not ``fork``: the driver may have threads (a progress display, the user's
own), and forking a threaded process can deadlock the child on a lock held at fork
time; a forked worker would also inherit the driver's whole heap (collected results,
cached data). ``forkserver`` forks each worker from a small single-threaded server
process started once, so a worker — including the replacement for one that died
mid-job — starts in milliseconds instead of the ~100 ms a ``spawn`` interpreter takes.
Both methods ship functions by pickle, by reference: they must be importable by module
and name in the worker (no lambdas); the executor checks this before a job starts.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from distsys.dataflow._tasks import Failure, StageSpec
from distsys.dataflow._worker import run_inline, worker_main
from distsys.errors import DistsysError

__all__ = [
    "Event",
    "InlineRunner",
    "ProcessRunner",
    "Runner",
    "WorkerStartError",
    "default_start_method",
]


WORKER_MODULE = "distsys.dataflow._worker"


def default_start_method() -> str:
    """Return ``"forkserver"`` where available, else ``"spawn"``."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _preload_worker(context: Any) -> None:
    """Have the fork server import the worker code once, so forked workers start ready.

    The fork server is one per process (multiprocessing's), so the worker module is added
    to its preload list, keeping what is there; it only matters until the server starts.
    """
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    current = list(getattr(server, "_preload_modules", None) or ["__main__"])
    if WORKER_MODULE not in current:
        context.set_forkserver_preload([*current, WORKER_MODULE])


@dataclass(frozen=True, slots=True)
class Event:
    """A task that ended: ``value`` and ``metrics`` if it succeeded, ``failure`` if not."""

    stage: int
    partition: int
    attempt: int
    seconds: float
    value: Any = None
    metrics: Any = None
    failure: Failure | None = None


class WorkerStartError(DistsysError, RuntimeError):
    """A worker process could not start (its interpreter or a preloaded script failed)."""


class Runner:
    """Runs tasks of stages (abstract)."""

    def idle(self) -> int:
        """Return how many more tasks can start now."""
        raise NotImplementedError

    def add_stage(self, stage: int, spec: StageSpec, blob: bytes | None) -> None:
        """Make a stage's spec available to the workers."""
        raise NotImplementedError

    def start(self, stage: int, partition: int, attempt: int) -> None:
        """Start a task (only while ``idle()`` is positive)."""
        raise NotImplementedError

    def wait(self) -> list[Event]:
        """Block until at least one running task ends; return the ended ones."""
        raise NotImplementedError

    def forget(self, stage: int) -> None:
        """Drop a finished stage's spec."""
        raise NotImplementedError

    def abort(self) -> None:
        """Stop every running task (the job failed)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop the workers; idempotent."""
        raise NotImplementedError


class InlineRunner(Runner):
    """Runs each task in the calling thread, one at a time (``processes=False``)."""

    def __init__(self) -> None:
        self._specs: dict[int, StageSpec] = {}
        self._queued: list[tuple[int, int, int]] = []

    def idle(self) -> int:
        return 0 if self._queued else 1

    def add_stage(self, stage: int, spec: StageSpec, blob: bytes | None) -> None:
        self._specs[stage] = spec

    def start(self, stage: int, partition: int, attempt: int) -> None:
        self._queued.append((stage, partition, attempt))

    def wait(self) -> list[Event]:
        stage, partition, attempt = self._queued.pop()
        outcome, value, metrics, seconds = run_inline(self._specs[stage], partition)
        if outcome == "done":
            return [Event(stage, partition, attempt, seconds, value, metrics)]
        return [Event(stage, partition, attempt, seconds, failure=value)]

    def forget(self, stage: int) -> None:
        self._specs.pop(stage, None)

    def abort(self) -> None:
        self._queued.clear()

    def close(self) -> None:
        self._specs.clear()


@dataclass(eq=False)
class _Worker:
    process: Any  # multiprocessing.process.BaseProcess
    conn: Connection
    stages: set[int] = field(default_factory=set)
    task: tuple[int, int, int] | None = None


class ProcessRunner(Runner):
    """A pool of worker processes, each serving one task at a time over a pipe.

    A worker that dies (``os._exit``, a signal, the OOM killer) fails the task it was
    running and is replaced at once. Used from one thread.

    Args:
        workers: how many processes.
        method: the multiprocessing start method.
        modules: ``(name, path)`` scripts each worker imports before serving (the
            script given to ``distsys dataflow run``).
    """

    def __init__(self, workers: int, method: str, modules: Sequence[tuple[str, str]] = ()) -> None:
        self._context: Any = multiprocessing.get_context(method)
        if method == "forkserver":
            _preload_worker(self._context)
        self._modules = tuple(modules)
        self._blobs: dict[int, bytes] = {}
        self._closed = False
        self.restarts = 0
        self._workers = [self._spawn() for _ in range(workers)]
        try:
            for worker in self._workers:
                self._await_ready(worker)
        except BaseException:
            self.close()
            raise

    def _await_ready(self, worker: _Worker) -> None:
        try:
            message = pickle.loads(worker.conn.recv_bytes())
        except (EOFError, OSError):
            worker.process.join(timeout=5)
            raise WorkerStartError(
                f"a worker process exited at start (exit code {worker.process.exitcode})"
            ) from None
        if message[0] == "broken":
            problem: Failure = message[1]
            raise WorkerStartError(
                f"a worker process could not start: {problem.error_type}: "
                f"{problem.message}\n{problem.traceback}"
            )

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=worker_main,
            args=(child, self._modules, os.getpid()),
            name="distsys-dataflow-worker",
            daemon=True,
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids."""
        return [w.process.pid for w in self._workers]

    def idle(self) -> int:
        return sum(1 for w in self._workers if w.task is None)

    def add_stage(self, stage: int, spec: StageSpec, blob: bytes | None) -> None:
        assert blob is not None
        self._blobs[stage] = blob

    def start(self, stage: int, partition: int, attempt: int) -> None:
        worker = next(w for w in self._workers if w.task is None)
        try:
            if stage not in worker.stages:
                worker.conn.send_bytes(pickle.dumps(("stage", stage, self._blobs[stage]), 5))
                worker.stages.add(stage)
            worker.conn.send_bytes(pickle.dumps(("task", stage, partition, attempt), 5))
        except OSError:
            pass  # it died; wait() notices through its sentinel and fails the task
        worker.task = (stage, partition, attempt)

    def wait(self) -> list[Event]:
        sentinels = {w.process.sentinel: w for w in self._workers}
        conns = {w.conn: w for w in self._workers if w.task is not None}
        ready = wait([*conns, *sentinels])
        events: list[Event] = []
        for item in ready:
            if item in conns:
                worker = conns[item]
                try:
                    message = pickle.loads(worker.conn.recv_bytes())
                except (EOFError, OSError):
                    continue  # it died; its sentinel is (or will be) ready
                if message[0] in ("ready", "broken"):
                    continue  # a replacement worker announcing itself; broken ones exit
                worker.task = None
                events.append(_event(message))
        for item in ready:
            if item in sentinels:
                worker = sentinels[item]
                while worker.task is not None and worker.conn.poll():
                    try:
                        message = pickle.loads(worker.conn.recv_bytes())
                    except (EOFError, OSError):
                        break
                    if message[0] in ("done", "failed"):
                        events.append(_event(message))
                        worker.task = None
                events += self._replace(worker)
        return events

    def _replace(self, worker: _Worker) -> list[Event]:
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        lost = worker.task
        worker.conn.close()
        index = self._workers.index(worker)
        self._workers[index] = self._spawn()
        self.restarts += 1
        if lost is None:
            return []
        stage, partition, attempt = lost
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        problem = Failure(
            "WorkerDied",
            f"the worker process (pid {worker.process.pid}) died ({how}) while running the task",
            f"WorkerDied: the worker process exited ({how}); no Python traceback\n",
            None,
            False,
        )
        return [Event(stage, partition, attempt, 0.0, failure=problem)]

    def forget(self, stage: int) -> None:
        self._blobs.pop(stage, None)
        for worker in self._workers:
            if stage in worker.stages and worker.task is None:
                try:
                    worker.conn.send_bytes(pickle.dumps(("forget", stage), 5))
                except OSError:
                    continue
                worker.stages.discard(stage)

    def abort(self) -> None:
        for index, worker in enumerate(self._workers):
            if worker.task is not None:
                worker.process.kill()
                worker.process.join(timeout=5)
                worker.conn.close()
                self._workers[index] = self._spawn()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.send_bytes(pickle.dumps(("stop",), 5))
        deadline = time.monotonic() + 5
        for worker in self._workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
            worker.conn.close()


def _event(message: tuple[Any, ...]) -> Event:
    if message[0] == "done":
        _, stage, partition, attempt, value, metrics, seconds = message
        return Event(stage, partition, attempt, seconds, value, metrics)
    _, stage, partition, attempt, problem, seconds = message
    return Event(stage, partition, attempt, seconds, failure=problem)
