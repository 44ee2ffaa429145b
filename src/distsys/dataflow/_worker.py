"""The loop a worker process runs: receive stages and tasks, run them, answer.

Messages are pickled tuples sent over the worker's pipe. A worker first says
``("ready",)`` (or ``("broken", Failure)`` if it could not import what it was given).
From the driver:
``("stage", id, spec_bytes)`` (sent once per stage and worker, before its first task),
``("task", id, partition, attempt)``, ``("forget", id)`` and ``("stop",)``. To the driver:
``("done", id, partition, attempt, value, metrics, seconds)`` or
``("failed", id, partition, attempt, Failure, seconds)``.

A worker ignores SIGINT: Ctrl-C reaches the whole process group, and the driver decides
what to do (it stops the workers it no longer needs). A worker whose driver died (its
pid is gone) exits at once, even in the middle of a task.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import pickle
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from distsys.dataflow._errors import RecordTypeError
from distsys.dataflow._tasks import Failure, StageSpec, failure, result_not_picklable, run_task

__all__ = ["load_modules", "worker_main"]


def load_modules(modules: tuple[tuple[str, str], ...]) -> None:
    """Import each ``(name, path)`` script as module ``name`` (if not already imported)."""
    for name, path in modules:
        if name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path} as module {name}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


def _unpickle_failure(exc: BaseException) -> Failure:
    problem = failure(exc)
    hint = (
        "the worker could not load the stage's functions: every function must be "
        "importable in a fresh process (defined at module level in an importable module)"
    )
    return Failure(problem.error_type, f"{hint}: {problem.message}", problem.traceback, None, True)


def _exit_with_driver(driver: int, interval: float = 0.5) -> None:
    """Exit as soon as the driver process is gone: a killed driver leaves no busy workers.

    Watching the parent would not do: a fork server's children keep it alive.
    """

    def watch() -> None:
        while True:
            time.sleep(interval)
            try:
                os.kill(driver, 0)
            except ProcessLookupError:
                os._exit(1)
            except OSError:
                pass  # it exists (owned by someone else after pid reuse: keep going)

    threading.Thread(target=watch, name="driver-watch", daemon=True).start()


def worker_main(
    conn: Connection, modules: tuple[tuple[str, str], ...] = (), driver: int | None = None
) -> None:
    """Serve tasks on ``conn`` until told to stop or the driver (pid ``driver``) goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if driver is not None:
        _exit_with_driver(driver)
    try:
        load_modules(modules)
    except BaseException as exc:
        conn.send_bytes(pickle.dumps(("broken", failure(exc)), 5))
        return
    conn.send_bytes(pickle.dumps(("ready",), 5))
    specs: dict[int, StageSpec | bytes] = {}
    while True:
        try:
            message = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        kind = message[0]
        if kind == "stop":
            return
        if kind == "stage":
            specs[message[1]] = message[2]
        elif kind == "forget":
            specs.pop(message[1], None)
            gc.unfreeze()  # what a finished stage froze (a broadcast table) may go now
        elif kind == "task":
            _, stage, partition, attempt = message
            conn.send_bytes(_run(specs, stage, partition, attempt))


def _run(specs: dict[int, StageSpec | bytes], stage: int, partition: int, attempt: int) -> bytes:
    started = time.perf_counter()
    spec = specs[stage]
    if isinstance(spec, bytes):
        try:
            spec = specs[stage] = pickle.loads(spec)
        except Exception as exc:
            return _failed(stage, partition, attempt, _unpickle_failure(exc), started)
    assert isinstance(spec, StageSpec)
    try:
        value, metrics = run_task(spec, partition, worker=True)
    except BaseException as exc:  # every failure goes back to the driver
        return _failed(stage, partition, attempt, failure(exc), started)
    seconds = time.perf_counter() - started
    try:
        return pickle.dumps(("done", stage, partition, attempt, value, metrics, seconds), 5)
    except Exception as exc:
        error: BaseException = result_not_picklable("collect", value, exc)
        if not isinstance(error, RecordTypeError):  # pragma: no cover - defensive
            error = exc
        return _failed(stage, partition, attempt, failure(error), started)


def _failed(stage: int, partition: int, attempt: int, problem: Failure, started: float) -> bytes:
    seconds = time.perf_counter() - started
    return pickle.dumps(("failed", stage, partition, attempt, problem, seconds), 5)


def run_inline(spec: StageSpec, partition: int) -> tuple[str, Any, Any, float]:
    """Run a task in this process.

    Returns:
        ``("done", value, metrics, seconds)`` or ``("failed", Failure, None, seconds)``.
    """
    started = time.perf_counter()
    try:
        value, metrics = run_task(spec, partition)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return "failed", failure(exc), None, time.perf_counter() - started
    return "done", value, metrics, time.perf_counter() - started
