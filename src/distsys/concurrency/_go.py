"""``go``: start a function concurrently, as a task or as a thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, overload

from distsys.errors import ArgumentTypeError, DistsysError

__all__ = ["go"]

R = TypeVar("R")


def is_async_callable(fn: object) -> bool:
    """True for a coroutine function, a partial of one, or an object with ``async __call__``."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )


@overload
def go(
    fn: Callable[..., Coroutine[Any, Any, R]],
    *args: Any,
    on_exit: Callable[[], object] | None = ...,
) -> asyncio.Task[R]: ...


@overload
def go(
    fn: Callable[..., R], *args: Any, on_exit: Callable[[], object] | None = ...
) -> concurrent.futures.Future[R]: ...


def go(fn: Callable[..., Any], *args: Any, on_exit: Callable[[], object] | None = None) -> Any:
    """Run ``fn(*args)`` concurrently, like Go's ``go`` statement.

    A coroutine function becomes a task on the running event loop; a plain function runs
    in a new daemon thread (like a goroutine, it does not keep the process alive).
    Keep the returned handle, or use a :class:`WaitGroup` / :class:`ErrGroup`: asyncio
    holds only weak references to tasks.

    Args:
        fn: the function to run.
        *args: its positional arguments.
        on_exit: called once ``fn`` has finished, however it finished.

    Returns:
        An ``asyncio.Task`` for a coroutine function; a ``concurrent.futures.Future``
        holding the result or exception for a plain function.

    Raises:
        ArgumentTypeError: ``fn`` is not callable.
        DistsysError: ``fn`` is a coroutine function and no event loop is running here.
    """
    if not callable(fn):
        raise ArgumentTypeError("fn", fn, "a function or coroutine function")
    if is_async_callable(fn):
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise DistsysError(
                f"go({getattr(fn, '__qualname__', fn)!s}) needs a running event loop to start "
                "a coroutine function; call it from async code"
            ) from None
        return loop.create_task(_run_async(fn, args, on_exit))
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    name = f"go-{getattr(fn, '__qualname__', type(fn).__name__)}"
    thread = threading.Thread(target=_run_thread, args=(fn, args, future, on_exit), name=name)
    thread.daemon = True
    thread.start()
    return future


async def _run_async(
    fn: Callable[..., Any], args: tuple[Any, ...], on_exit: Callable[[], object] | None
) -> Any:
    try:
        return await fn(*args)
    finally:
        if on_exit is not None:
            on_exit()


def _run_thread(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    future: concurrent.futures.Future[Any],
    on_exit: Callable[[], object] | None,
) -> None:
    try:
        if future.set_running_or_notify_cancel():
            try:
                result = fn(*args)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
    finally:
        if on_exit is not None:
            on_exit()
