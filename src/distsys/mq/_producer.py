"""A synchronous producer: publish from code that is not async (scripts, WSGI apps, threads).

The producer runs one event loop in a background thread and hands each call to it, so
one broker connection serves every thread of the program. A call returns once the broker
has stored the message, or raises what the broker raised: a producer never reports a
publish that did not happen.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import threading
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

from distsys.backends import BackendURL
from distsys.clock import Clock, MonotonicClock, sleep
from distsys.context import Context
from distsys.errors import (
    ArgumentTypeError,
    BackendUnavailableError,
    BlockingCallInLoopError,
    DeadlineExceededError,
    InvalidArgumentError,
)
from distsys.mq._broker import Broker
from distsys.mq._message import Depth, Outgoing

__all__ = ["Producer", "ProducerStatistics"]

T = TypeVar("T")

DEFAULT_URL = "sqlite:///.distsys/mq.db"


@dataclass(frozen=True, slots=True)
class ProducerStatistics:
    """Counters of a :class:`Producer`.

    Attributes:
        published: messages the broker confirmed stored.
        failed: calls that raised (nothing, or for a timeout perhaps something, stored).
        pending: calls waiting for the broker right now.
    """

    published: int
    failed: int
    pending: int


class Producer:
    """Publish messages from synchronous code; see :meth:`publish`.

    ::

        with Producer("sqlite:///.distsys/mq.db") as producer:
            producer.publish("orders", b'{"id": 7}', headers={"event-id": "7"})

    The producer opens the broker at ``url`` on its own event loop, in a background
    thread (one loop per producer), and each call waits for that loop to finish the
    operation. Close it (``with``, or :meth:`close`) to release the connection; calls
    still running then are given ``timeout`` seconds to finish.

    Thread-safe: any number of threads may publish through one producer at once. Do
    not call it from a coroutine: it blocks (``BlockingCallInLoopError``); use the
    broker's async API there.

    Args:
        url: the broker (default ``sqlite:///.distsys/mq.db``); see
            :func:`~distsys.mq.open_broker`.
        timeout: seconds a call may wait for the broker before raising
            :class:`~distsys.errors.DeadlineExceededError` (None: wait as long as it takes).
        clock: the time source of ``timeout``, also given to the broker (default: the
            monotonic clock).
        **options: passed to the broker (for example ``clock=``).

    Raises:
        UnknownSchemeError, MissingDependencyError, InvalidArgumentError: as
            :func:`~distsys.mq.open_broker`.
    """

    def __init__(
        self,
        url: str | BackendURL = DEFAULT_URL,
        *,
        timeout: float | None = 30.0,
        clock: Clock | None = None,
        **options: Any,
    ) -> None:
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout < float("inf")
        ):
            raise InvalidArgumentError("timeout", timeout, "None or a finite number of seconds > 0")
        self.timeout = None if timeout is None else float(timeout)
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        if clock is not None:
            options["clock"] = clock
        self._lock = threading.Lock()
        self._closed = False
        self._counts = {"published": 0, "failed": 0, "pending": 0}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="distsys-producer", daemon=True
        )
        self._thread.start()
        try:
            self._broker: Broker = self._call(_open(url, options), count=False)
        except BaseException:
            self._stop_loop()
            raise
        self.url = self._broker.url

    # ------------------------------------------------------------------ calls

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        delay: float | None = None,
        ctx: Context | None = None,
    ) -> str:
        """Store one message and return its id; see :meth:`Broker.publish`.

        Raises:
            BackendUnavailableError: the broker cannot be reached, or the producer is
                closed (nothing was stored).
            DeadlineExceededError: the broker did not answer within ``timeout``: the
                message may or may not have been stored.
            InvalidArgumentError / ArgumentTypeError: a bad topic, payload or option.
        """
        coro = self._broker.publish(topic, payload, headers=headers, key=key, delay=delay, ctx=ctx)
        return self._call(coro)

    def publish_batch(
        self,
        topic: str,
        messages: Sequence[bytes | Outgoing],
        *,
        ctx: Context | None = None,
    ) -> builtins.list[str]:
        """Store several messages in one round trip; return their ids in order.

        Raises:
            As :meth:`publish`.
        """
        return self._call(self._broker.publish_batch(topic, messages, ctx=ctx))

    def depth(self, topic: str, group: str) -> Depth:
        """Return how much work waits in ``topic`` for ``group``; see :meth:`Broker.depth`."""
        return self._call(self._broker.depth(topic, group), count=False)

    def _call(self, coro: Coroutine[Any, Any, T], *, count: bool = True) -> T:
        if asyncio._get_running_loop() is not None:
            name = getattr(coro, "__name__", "call")
            coro.close()
            raise BlockingCallInLoopError(f"Producer.{name}")
        with self._lock:
            if self._closed:
                coro.close()
                raise BackendUnavailableError(str(self.url), "this producer has been closed")
            future = asyncio.run_coroutine_threadsafe(self._bounded(coro), self._loop)
            self._counts["pending"] += 1
        ok = False
        try:
            result = future.result()
            ok = True
        except concurrent.futures.CancelledError:
            raise BackendUnavailableError(
                str(getattr(self, "url", "")), "the producer was closed during the call"
            ) from None
        except BaseException:
            future.cancel()  # the caller gave up (KeyboardInterrupt, say): so does the loop
            raise
        finally:
            with self._lock:
                self._counts["pending"] -= 1
                if count:
                    if ok:
                        self._counts["published"] += len(result) if isinstance(result, list) else 1
                    else:
                        self._counts["failed"] += 1
        return result

    async def _bounded(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop, giving up after ``timeout`` seconds on the clock."""
        operation = asyncio.ensure_future(coro)
        if self.timeout is None:
            return await operation
        timer = asyncio.ensure_future(sleep(self.timeout, self.clock))
        try:
            await asyncio.wait({operation, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            finished = operation.done()
            if not finished:
                operation.cancel()
        if not finished:
            raise DeadlineExceededError(
                f"the broker did not answer within {self.timeout:g}s; "
                "the message may or may not have been stored"
            )
        return operation.result()

    def statistics(self) -> ProducerStatistics:
        """Return the counters."""
        with self._lock:
            return ProducerStatistics(**self._counts)

    # ---------------------------------------------------------------- closing

    def close(self) -> None:
        """Let running calls finish (up to ``timeout``), close the broker, stop the loop.

        Idempotent; later calls raise :class:`BackendUnavailableError`.
        """
        if asyncio._get_running_loop() is self._loop:
            raise BlockingCallInLoopError("Producer.close")
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            future.result()
        finally:
            self._stop_loop()

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        running = [task for task in asyncio.all_tasks() if task is not current]
        if running:
            await asyncio.wait(running, timeout=self.timeout)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        await self._broker.aclose()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Producer {self.url} {state}>"


async def _open(url: str | BackendURL, options: dict[str, Any]) -> Broker:
    if not isinstance(url, str | BackendURL):
        raise ArgumentTypeError("url", url, "a broker URL such as sqlite:///.distsys/mq.db")
    from distsys.mq import open_broker  # the package imports this module

    return open_broker(url, **options)
