"""Consumer: run a handler over a subscription, with bounded concurrency and graceful stop.

::

    receive ──▶ slot free? ──▶ handler(delivery) ──returns──▶ ack
       ▲          (at most                │
       │         concurrency)             └──raises──▶ nack(backoff delay, error=...)
       │                                                 (the last allowed delivery goes
    stop(), SIGTERM or ctx ends:                          to the dead-letter topic instead)
    stop receiving, let the handlers running finish (up to drain_timeout), exit

A message the consumer received but did not ack — because the process died, the run was
cancelled, or a handler outlived the drain timeout — is not lost: the broker delivers it
again once its ack deadline passes (at-least-once).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from distsys.clock import Clock, MonotonicClock, sleep
from distsys.concurrency._go import is_async_callable
from distsys.context import Context
from distsys.errors import ArgumentTypeError, DistsysError, InvalidArgumentError
from distsys.mq._broker import (
    DEFAULT_ACK_WAIT,
    DEFAULT_MAX_DELIVERIES,
    Broker,
    Delivery,
    Subscription,
)
from distsys.mq._message import check_name
from distsys.resilience import Backoff

__all__ = ["Consumer", "ConsumerStatistics", "RedeliveryBackoff"]

log = logging.getLogger("distsys.mq")

DEFAULT_CONCURRENCY: Final = 8
DEFAULT_DRAIN_TIMEOUT: Final = 30.0
RECEIVE_ERROR_PAUSE_CAP: Final = 10.0  # the longest pause after the broker failed a receive
_TRANSIENT: Final = (ConnectionError, TimeoutError, OSError)  # a receive worth trying again

T = TypeVar("T")
Handler = Callable[[Delivery], Awaitable[object] | object]


class RedeliveryBackoff(Protocol):
    """How long a failed message waits before it is delivered again.

    :class:`distsys.resilience.Backoff` is one: ``delay(n)`` for retry ``n``, 0 for the
    first retry (after the first failed delivery).
    """

    def delay(self, retry: int, /) -> float:
        """Return the seconds to wait before retry ``retry`` (0 for the first)."""
        ...


@dataclass(frozen=True, slots=True)
class ConsumerStatistics:
    """Counters of a :class:`Consumer`.

    Attributes:
        received: deliveries handed to the handler.
        handled: handler calls that returned normally.
        failed: handler calls that raised.
        acked: acks the broker confirmed.
        stale_acks: acks (or nacks) refused because the ack deadline had passed: the
            message had already been delivered again, so it may be handled twice.
        nacked: failed messages handed back for a later redelivery.
        dead_lettered: messages moved to the dead-letter topic (failed on their last
            allowed delivery, delivered too often, or past their deadline).
        expired: of those, messages whose deadline had passed before they were handled.
        abandoned: handler calls cut short by a stop that outlived the drain timeout or
            by cancellation; their messages are redelivered after the ack deadline.
        broker_errors: receive, ack or nack calls the broker failed.
        in_flight: handler calls running now.
        peak_in_flight: the most handler calls that ran at once.
    """

    received: int
    handled: int
    failed: int
    acked: int
    stale_acks: int
    nacked: int
    dead_lettered: int
    expired: int
    abandoned: int
    broker_errors: int
    in_flight: int
    peak_in_flight: int


_COUNTERS: Final = tuple(
    name for name in ConsumerStatistics.__slots__ if name not in ("dead_lettered", "expired")
)


class Consumer:
    """Run ``handler(delivery)`` for each message of ``topic`` in consumer ``group``.

    ::

        async def handle(delivery: Delivery) -> None:
            await charge(json.loads(delivery.payload))

        consumer = Consumer(broker, "orders", "billing", handle, concurrency=16)
        await consumer.run(install_signal_handlers=True)   # until SIGTERM / SIGINT

    At most ``concurrency`` handler calls run at once. A handler that returns normally
    gets its message acked; one that raises gets it nacked, to be delivered again after
    ``backoff.delay(attempt - 1)`` seconds (exponential with jitter by default), with the
    error recorded — on the last of ``max_deliveries`` deliveries the message goes to the
    dead-letter topic with that error instead. An error with a ``retry_after``
    attribute (:class:`~distsys.mq.DuplicateInProgressError`, a breaker's rejection)
    waits at least that long. A handler may settle the delivery itself (``await
    delivery.nack(delay=60)``); the consumer then leaves it alone.

    Async handlers run on the event loop; plain functions run in a pool of
    ``concurrency`` threads (they cannot be cancelled: a stop that outlives the drain
    timeout abandons them, unacked).

    **Stopping.** :meth:`stop`, the end of the ``ctx`` given to :meth:`run`, or (with
    ``install_signal_handlers=True``) SIGTERM or SIGINT stop the consumer gracefully: it
    receives nothing more, lets the running handlers finish and ack (for up to
    ``drain_timeout`` seconds; a second stop cuts the wait short), and returns.
    Messages it had fetched but not started are redelivered after ``ack_wait``.
    Cancelling the task that runs :meth:`run` stops it at once: running handlers are
    cancelled and their messages, unacked, are redelivered after ``ack_wait``.

    Safe within one event loop; :meth:`stop` may be called from any thread. A consumer
    runs once.

    Args:
        broker: the broker to consume from.
        topic: the topic.
        group: the consumer group; every consumer of a group shares its messages.
        handler: ``async def handler(delivery)`` (or a plain function, run in a thread).
        concurrency: the most handler calls at once (>= 1).
        prefetch: messages fetched from the broker at a time (default: ``concurrency``).
            Each fetched message's ack deadline runs from the fetch, so keep it small.
        ack_wait: seconds a message may stay unacked before the broker delivers it again.
        max_deliveries: deliveries after which a failing message is dead-lettered.
        backoff: the delay before a failed message is redelivered (default:
            ``Backoff(base=1.0, cap=60.0)``: ceilings of 1, 2, 4... seconds, full jitter).
        drain_timeout: seconds a graceful stop waits for running handlers.
        clock: time source for backoff pauses and the drain timeout (default: the
            broker's clock).

    Raises:
        InvalidArgumentError: a value is out of range (naming the field).
    """

    def __init__(
        self,
        broker: Broker,
        topic: str,
        group: str,
        handler: Handler,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        prefetch: int | None = None,
        ack_wait: float = DEFAULT_ACK_WAIT,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        backoff: RedeliveryBackoff | None = None,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        clock: Clock | None = None,
    ) -> None:
        self.broker = broker
        self.topic = check_name("topic", topic)
        self.group = check_name("group", group)
        if not callable(handler):
            raise ArgumentTypeError("handler", handler, "an async def function(delivery)")
        self.handler = handler
        self._is_async = is_async_callable(handler)
        self.concurrency = _check_count("concurrency", concurrency)
        self.prefetch = self.concurrency if prefetch is None else _check_count("prefetch", prefetch)
        self.ack_wait = ack_wait
        self.max_deliveries = max_deliveries
        if backoff is not None and not callable(getattr(backoff, "delay", None)):
            raise ArgumentTypeError("backoff", backoff, "None or an object with delay(retry)")
        self.backoff: RedeliveryBackoff = (
            backoff if backoff is not None else Backoff(base=1.0, cap=60.0)
        )
        if isinstance(drain_timeout, bool) or not isinstance(drain_timeout, int | float):
            raise ArgumentTypeError("drain_timeout", drain_timeout, "a number of seconds >= 0")
        if not 0 <= drain_timeout < float("inf"):
            raise InvalidArgumentError(
                "drain_timeout", drain_timeout, "a finite number of seconds >= 0"
            )
        self.drain_timeout = float(drain_timeout)
        self.clock: Clock = (
            clock if clock is not None else getattr(broker, "clock", None) or MonotonicClock()
        )
        # Made (and validated) now, so bad options fail here rather than in run().
        self._subscription: Subscription = broker.subscribe(
            self.topic,
            self.group,
            ack_wait=ack_wait,
            max_deliveries=max_deliveries,
            prefetch=self.prefetch,
        )
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._handlers: set[asyncio.Task[None]] = set()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._stop: asyncio.Event | None = None
        self._stops_requested = 0
        self._started = False

    # ------------------------------------------------------------------ running

    async def run(
        self, ctx: Context | None = None, *, install_signal_handlers: bool = False
    ) -> ConsumerStatistics:
        """Consume until stopped; return the final statistics.

        Args:
            ctx: stop gracefully when this context ends (cancelled, or its deadline).
            install_signal_handlers: stop gracefully on SIGTERM and SIGINT (a second
                signal cuts the drain short). Needs the main thread.

        Raises:
            BackendUnavailableError: the broker was closed under the consumer.
            DistsysError: the consumer has already run.
        """
        if self._started:
            raise DistsysError("a Consumer runs once; create a new one")
        if ctx is not None and not isinstance(ctx, Context):
            raise ArgumentTypeError("ctx", ctx, "None or a distsys Context")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._stop = asyncio.Event()
        if self._stops_requested:
            self._stop.set()  # stop() came before run()
        watchers: list[asyncio.Task[Any]] = []
        if ctx is not None:
            watchers.append(asyncio.ensure_future(self._stop_when_done(ctx)))
        signals = self._install_signal_handlers() if install_signal_handlers else []
        try:
            await self._receive_loop()
            await self._drain()
        except BaseException:
            await self._abandon()
            raise
        finally:
            for signum in signals:
                self._loop.remove_signal_handler(signum)
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            await self._subscription.aclose()
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
        return self.statistics()

    def stop(self) -> None:
        """Stop gracefully (see the class docs); a second call cuts the drain short.

        Thread-safe, and idempotent beyond the second call.
        """
        loop = self._loop
        if loop is not None and threading.get_ident() != self._thread:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to stop
                loop.call_soon_threadsafe(self._request_stop)
            return
        self._request_stop()

    def _request_stop(self) -> None:
        self._stops_requested += 1
        if self._stop is not None:
            self._stop.set()
            if self._stops_requested > 1:
                for task in list(self._handlers):
                    task.cancel()

    async def _stop_when_done(self, ctx: Context) -> None:
        await ctx.done
        self._request_stop()

    def _install_signal_handlers(self) -> list[int]:
        assert self._loop is not None
        if threading.current_thread() is not threading.main_thread():
            raise DistsysError("install_signal_handlers=True needs the main thread")
        installed: list[int] = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, self._request_stop)
            installed.append(signum)
        return installed

    async def _receive_loop(self) -> None:
        assert self._stop is not None
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            failures = 0
            while not self._stop.is_set():
                if len(self._handlers) >= self.concurrency:
                    await asyncio.wait({*self._handlers, stopped}, return_when="FIRST_COMPLETED")
                    continue
                received = await _race(self._subscription.receive(), stopped)
                if received is None:
                    continue  # stopped while waiting for a message
                error = received.exception()
                if error is None:
                    failures = 0
                    self._start(received.result())  # a fetched message is handled, even now
                    continue
                if self._subscription._closed or not isinstance(error, _TRANSIENT):
                    raise error  # closed under us, or a bug: not something a pause cures
                failures += 1
                self._counts["broker_errors"] += 1
                pause = min(max(self.backoff.delay(failures - 1), 0.1), RECEIVE_ERROR_PAUSE_CAP)
                log.warning("receive from %s failed (%s); again in %.2fs", self.topic, error, pause)
                await _race(sleep(pause, self.clock), stopped)
        finally:
            stopped.cancel()
            await asyncio.gather(stopped, return_exceptions=True)

    def _start(self, delivery: Delivery | None) -> None:
        if delivery is None:
            return
        self._counts["received"] += 1
        task = asyncio.ensure_future(self._handle(delivery))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        in_flight = len(self._handlers)
        self._counts["peak_in_flight"] = max(self._counts["peak_in_flight"], in_flight)

    async def _handle(self, delivery: Delivery) -> None:
        try:
            await self._call(delivery)
        except asyncio.CancelledError:
            self._counts["abandoned"] += 1  # not acked: the broker delivers it again
            raise
        except Exception as exc:
            self._counts["failed"] += 1
            log.info("handler failed on %r: %r", delivery, exc)
            if not delivery.settled:
                # On its last allowed delivery the nack dead-letters it (the subscription
                # counts that), with the error recorded for whoever reads the dead letters.
                last = delivery.attempt >= self._subscription.max_deliveries
                nack = delivery.nack(self._delay(delivery, exc), error=_describe(exc))
                await self._settle(nack, count="" if last else "nacked")
            return
        self._counts["handled"] += 1
        if not delivery.settled:
            await self._settle(delivery.ack(), count="acked")

    async def _call(self, delivery: Delivery) -> None:
        if self._is_async:
            result = self.handler(delivery)
        else:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self.concurrency, thread_name_prefix=f"consumer-{self.group}"
                )
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._pool, self.handler, delivery)
        if inspect.isawaitable(result):
            await result

    async def _settle(self, settling: Awaitable[bool], *, count: str = "") -> None:
        try:
            ok = await settling
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._counts["broker_errors"] += 1
            log.warning("could not settle a delivery of %s: %s", self.topic, exc)
            return
        if not ok:
            self._counts["stale_acks"] += 1
        elif count:
            self._counts[count] += 1

    def _delay(self, delivery: Delivery, exc: BaseException) -> float:
        delay = max(self.backoff.delay(delivery.attempt - 1), 0.0)
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float) and not isinstance(retry_after, bool):
            delay = max(delay, float(retry_after))
        return delay

    async def _drain(self) -> None:
        """Wait for the running handlers, up to the drain timeout; cancel the rest."""
        if not self._handlers:
            return
        timer = asyncio.ensure_future(sleep(self.drain_timeout, self.clock))
        try:
            while self._handlers and not timer.done():
                await asyncio.wait({*self._handlers, timer}, return_when="FIRST_COMPLETED")
        finally:
            timer.cancel()
            await asyncio.gather(timer, return_exceptions=True)
        if self._handlers:
            log.warning(
                "%d handler(s) of %s still running after the %gs drain timeout: abandoned",
                len(self._handlers),
                self.topic,
                self.drain_timeout,
            )
        await self._abandon()

    async def _abandon(self) -> None:
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    # --------------------------------------------------------------- observing

    def statistics(self) -> ConsumerStatistics:
        """Return the counters."""
        sub = self._subscription.statistics()
        return ConsumerStatistics(
            **{**self._counts, "in_flight": len(self._handlers)},
            dead_lettered=sub.dead_lettered,
            expired=sub.expired,
        )

    def __repr__(self) -> str:
        return (
            f"<Consumer {self.topic} group={self.group} concurrency={self.concurrency} "
            f"in_flight={len(self._handlers)}>"
        )


async def _race(work: Awaitable[T], stopped: asyncio.Future[Any]) -> asyncio.Future[T] | None:
    """Run ``work`` until it ends or ``stopped`` does; its future, or None if cut short.

    Whatever happens — even the cancellation of the caller — ``work`` is not left running.
    A message it had received by then is simply not acked: the broker delivers it again.
    """
    future = asyncio.ensure_future(work)
    try:
        await asyncio.wait({future, stopped}, return_when="FIRST_COMPLETED")
    finally:
        if not future.done():
            future.cancel()
            await asyncio.gather(future, return_exceptions=True)
    return None if future.cancelled() else future


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_count(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(field, value, "an int >= 1")
    if value < 1:
        raise InvalidArgumentError(field, value, "an int >= 1")
    return value
