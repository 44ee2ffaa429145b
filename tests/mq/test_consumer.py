"""Consumer: bounded concurrency, ack / nack with backoff, dead letters, graceful stop.

Time is a ManualClock shared by the broker and the consumer: backoff delays, ack
deadlines and the drain timeout pass when a test advances it, never by sleeping.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from distsys.context import background, with_cancel, with_timeout
from distsys.errors import (
    ArgumentTypeError,
    BackendUnavailableError,
    DistsysError,
    InvalidArgumentError,
)
from distsys.mq import (
    HEADER_ATTEMPTS,
    HEADER_DEAD_REASON,
    HEADER_ERROR,
    HEADER_GROUP,
    Consumer,
    ConsumerStatistics,
    Delivery,
    MemoryBroker,
    dead_letter_topic,
)
from distsys.resilience._retry_policy import Backoff
from distsys.testing import ManualClock
from tests.conftest import wait_until

ACK_WAIT = 30.0
STEADY = Backoff(1.0, 100.0, jitter=False)  # redeliveries after 1, 2, 4, 8... seconds


async def until(predicate: Callable[[], bool], spins: int = 10_000) -> None:
    """Let the loop run until ``predicate()`` holds (synchronisation, not a timeout)."""
    for _ in range(spins):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


class Gate:
    """Handlers that block until opened, counting how many run at once."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.running = 0
        self.peak = 0
        self.seen: list[bytes] = []

    async def __call__(self, delivery: Delivery) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.seen.append(delivery.payload)
        try:
            await self.opened.wait()
        finally:
            self.running -= 1


@asynccontextmanager
async def running(
    consumer: Consumer, **run: object
) -> AsyncIterator[asyncio.Task[ConsumerStatistics]]:
    task = asyncio.ensure_future(consumer.run(**run))  # type: ignore[arg-type]
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def broker(clock: ManualClock) -> AsyncIterator[MemoryBroker]:
    async with MemoryBroker(clock=clock) as broker:
        yield broker


def consumer(broker: MemoryBroker, handler: Callable[..., object], **options: object) -> Consumer:
    options.setdefault("ack_wait", ACK_WAIT)
    options.setdefault("backoff", STEADY)
    return Consumer(broker, "jobs", "workers", handler, **options)  # type: ignore[arg-type]


async def test_handles_and_acks_every_message(broker: MemoryBroker) -> None:
    seen: list[bytes] = []

    async def handle(delivery: Delivery) -> None:
        seen.append(delivery.payload)

    await broker.publish_batch("jobs", [f"m{i}".encode() for i in range(20)])
    worker = consumer(broker, handle, concurrency=4)
    async with running(worker):
        await until(lambda: worker.statistics().acked == 20)
        worker.stop()
    stats = worker.statistics()
    assert sorted(seen) == sorted(f"m{i}".encode() for i in range(20))
    assert (stats.received, stats.handled, stats.failed, stats.acked) == (20, 20, 0, 20)
    assert (stats.nacked, stats.stale_acks, stats.in_flight) == (0, 0, 0)
    depth = await broker.depth("jobs", "workers")
    assert depth.total == 0


async def test_never_runs_more_than_concurrency_handlers_at_once(broker: MemoryBroker) -> None:
    gate = Gate()
    await broker.publish_batch("jobs", [f"m{i}".encode() for i in range(30)])
    worker = consumer(broker, gate, concurrency=3)
    async with running(worker) as task:
        await until(lambda: gate.running == 3)
        for _ in range(100):
            await asyncio.sleep(0)  # room for a fourth, if the consumer were to start one
        assert gate.running == worker.statistics().in_flight == 3
        gate.opened.set()
        await until(lambda: worker.statistics().acked == 30)
        worker.stop()
        stats = await task
    assert gate.peak == stats.peak_in_flight == 3
    assert stats.handled == 30


async def test_failures_are_nacked_with_growing_delays_then_dead_lettered(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    attempts: list[tuple[int, float]] = []

    async def handle(delivery: Delivery) -> None:
        attempts.append((delivery.attempt, clock.now()))
        raise ValueError(f"bad record (try {delivery.attempt})")

    await broker.publish("jobs", b"poison")
    worker = consumer(broker, handle, max_deliveries=4)
    async with running(worker):
        await until(lambda: len(attempts) == 1)
        for delay in (1.0, 2.0, 4.0):
            clock.advance(delay - 0.5)
            for _ in range(50):
                await asyncio.sleep(0)
            assert attempts[-1][1] < clock.now()  # not yet: still the previous attempt
            clock.advance(0.5)
            before = len(attempts)
            await until(lambda n=before: len(attempts) == n + 1)  # type: ignore[misc]
        await until(lambda: worker.statistics().dead_lettered == 1)
        worker.stop()
    assert attempts == [(1, 0.0), (2, 1.0), (3, 3.0), (4, 7.0)]  # waits of 1, 2, 4 s
    stats = worker.statistics()
    assert (stats.failed, stats.nacked, stats.dead_lettered, stats.acked) == (4, 3, 1, 0)
    async with broker.subscribe(dead_letter_topic("jobs"), "ops") as dead:
        letter = await dead.receive(timeout=0)
        assert letter is not None
        assert letter.payload == b"poison"
        assert letter.headers[HEADER_DEAD_REASON] == "max deliveries"
        assert letter.headers[HEADER_ATTEMPTS] == "4"
        assert letter.headers[HEADER_ERROR] == "ValueError: bad record (try 4)"
        assert letter.headers[HEADER_GROUP] == "workers"
        await letter.ack()


def test_the_default_backoff_is_exponential_with_full_jitter(broker: MemoryBroker) -> None:
    async def handle(delivery: Delivery) -> None: ...

    worker = Consumer(broker, "jobs", "g", handle)
    backoff = worker.backoff
    assert isinstance(backoff, Backoff)
    assert (backoff.base, backoff.cap, backoff.jitter) == (1.0, 60.0, True)
    seeded = Backoff(1.0, 8.0, rng=random.Random(5))
    for retry, ceiling in enumerate([1.0, 2.0, 4.0, 8.0, 8.0]):
        assert 0 <= seeded.delay(retry) < ceiling


async def test_an_error_with_retry_after_waits_at_least_that_long(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    class Busy(Exception):
        retry_after = 50.0

    attempts: list[float] = []

    async def handle(delivery: Delivery) -> None:
        attempts.append(clock.now())
        if delivery.attempt == 1:
            raise Busy("someone else is on it")

    await broker.publish("jobs", b"x")
    worker = consumer(broker, handle)
    async with running(worker):
        await until(lambda: len(attempts) == 1)
        clock.advance(49.0)  # the backoff alone would have redelivered after 1 s
        for _ in range(50):
            await asyncio.sleep(0)
        assert len(attempts) == 1
        clock.advance(1.0)
        await until(lambda: worker.statistics().acked == 1)
        worker.stop()
    assert attempts == [0.0, 50.0]


async def test_graceful_stop_lets_running_handlers_finish_and_ack(broker: MemoryBroker) -> None:
    gate = Gate()
    await broker.publish_batch("jobs", [f"m{i}".encode() for i in range(5)])
    worker = consumer(broker, gate, concurrency=2)
    async with running(worker) as task:
        await until(lambda: gate.running == 2)
        worker.stop()
        for _ in range(50):
            await asyncio.sleep(0)
        assert not task.done()  # waiting for the two running handlers
        gate.opened.set()
        stats = await task
    assert (stats.received, stats.handled, stats.acked, stats.abandoned) == (2, 2, 2, 0)
    depth = await broker.depth("jobs", "workers")
    assert (depth.waiting, depth.in_flight) == (3, 0)  # the rest was never fetched


async def test_a_stop_that_outlives_the_drain_timeout_abandons_work_for_redelivery(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    stuck = Gate()
    await broker.publish("jobs", b"slow")
    worker = consumer(broker, stuck, drain_timeout=5.0)
    async with running(worker) as task:
        await until(lambda: stuck.running == 1)
        worker.stop()
        for _ in range(50):
            await asyncio.sleep(0)
        clock.advance(4.9)
        for _ in range(50):
            await asyncio.sleep(0)
        assert not task.done()
        clock.advance(0.1)
        stats = await task
    assert (stats.abandoned, stats.acked, stats.in_flight) == (1, 0, 0)
    # At-least-once: after the ack deadline another consumer gets the message.
    clock.advance(ACK_WAIT)
    redelivered: list[int] = []

    async def handle(delivery: Delivery) -> None:
        redelivered.append(delivery.attempt)

    survivor = consumer(broker, handle)
    async with running(survivor):
        await until(lambda: survivor.statistics().acked == 1)
        survivor.stop()
    assert redelivered == [2]


async def test_a_second_stop_cuts_the_drain_short(broker: MemoryBroker) -> None:
    stuck = Gate()
    await broker.publish("jobs", b"slow")
    worker = consumer(broker, stuck, drain_timeout=3600.0)
    async with running(worker) as task:
        await until(lambda: stuck.running == 1)
        worker.stop()
        worker.stop()
        stats = await task
    assert stats.abandoned == 1


async def test_stop_from_another_thread(broker: MemoryBroker) -> None:
    async def handle(delivery: Delivery) -> None: ...

    worker = consumer(broker, handle)
    async with running(worker) as task:
        await until(lambda: worker._stop is not None)  # running
        thread = threading.Thread(target=worker.stop)
        thread.start()
        stats = await task  # woken by the other thread, with nothing to drain
        thread.join()
    assert stats.received == 0


async def test_the_end_of_the_context_stops_the_consumer(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    async def handle(delivery: Delivery) -> None: ...

    ctx, cancel = with_cancel(background(clock=clock))
    worker = consumer(broker, handle)
    async with running(worker, ctx=ctx) as task:
        await broker.publish("jobs", b"x")
        await until(lambda: worker.statistics().acked == 1)
        cancel()
        stats = await task
    assert stats.acked == 1

    timed, release = with_timeout(background(clock=clock), 10.0)
    other = consumer(broker, handle)
    async with running(other, ctx=timed) as task:
        for _ in range(50):
            await asyncio.sleep(0)
        assert not task.done()
        clock.advance(10.0)
        await task
    release()


async def test_cancelling_the_run_loses_no_message_and_leaks_no_task(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    gate = Gate()
    await broker.publish_batch("jobs", [f"m{i}".encode() for i in range(6)])
    before = asyncio.all_tasks()
    worker = consumer(broker, gate, concurrency=3)
    task = asyncio.ensure_future(worker.run())
    await until(lambda: gate.running == 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.all_tasks() == before  # handlers, the receive, the stop watcher: all gone
    assert worker.statistics().abandoned == 3
    assert not broker._subscriptions  # the subscription was closed
    # Nothing was acked: everything comes back after the ack deadline, nothing lost.
    clock.advance(ACK_WAIT)
    seen: list[bytes] = []

    async def handle(delivery: Delivery) -> None:
        seen.append(delivery.payload)

    survivor = consumer(broker, handle, concurrency=3)
    async with running(survivor):
        await until(lambda: survivor.statistics().acked == 6)
        survivor.stop()
    assert sorted(seen) == sorted(f"m{i}".encode() for i in range(6))


async def test_cancelling_an_idle_consumer_leaves_nothing_running(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    async def handle(delivery: Delivery) -> None: ...

    before = asyncio.all_tasks()
    ctx, cancel = with_cancel(background(clock=clock))
    task = asyncio.ensure_future(consumer(broker, handle).run(ctx))
    for _ in range(20):
        await asyncio.sleep(0)  # now waiting for a message
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.all_tasks() == before
    cancel()


async def test_an_ack_after_the_deadline_is_counted_stale(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    async def slow(delivery: Delivery) -> None:
        if delivery.attempt == 1:
            clock.advance(ACK_WAIT + 1)  # the handler outlives its ack deadline

    await broker.publish("jobs", b"x")
    worker = consumer(broker, slow, concurrency=1)
    async with running(worker):
        await until(lambda: worker.statistics().acked == 1)
        worker.stop()
    stats = worker.statistics()
    assert (stats.handled, stats.stale_acks, stats.acked) == (2, 1, 1)


async def test_plain_functions_run_in_threads(broker: MemoryBroker) -> None:
    threads: set[int] = set()
    lock = threading.Lock()
    running_now = [0, 0]  # now, peak
    release = threading.Event()

    def handle(delivery: Delivery) -> None:
        with lock:
            running_now[0] += 1
            running_now[1] = max(running_now[1], running_now[0])
            threads.add(threading.get_ident())
        release.wait(10)
        with lock:
            running_now[0] -= 1

    await broker.publish_batch("jobs", [b"a", b"b", b"c", b"d"])
    worker = consumer(broker, handle, concurrency=2)
    async with running(worker):
        await asyncio.to_thread(wait_until, lambda: running_now[0] == 2)
        release.set()
        await asyncio.to_thread(wait_until, lambda: worker.statistics().acked == 4)
        worker.stop()
    assert running_now[1] == 2
    assert threading.get_ident() not in threads


async def test_a_handler_may_settle_its_delivery_itself(broker: MemoryBroker) -> None:
    async def handle(delivery: Delivery) -> None:
        await delivery.nack(delay=60)

    await broker.publish("jobs", b"later")
    worker = consumer(broker, handle)
    async with running(worker):
        await until(lambda: worker.statistics().handled == 1)
        worker.stop()
    stats = worker.statistics()
    assert (stats.handled, stats.acked, stats.nacked) == (1, 0, 0)
    assert (await broker.depth("jobs", "workers")).delayed == 1


async def test_work_past_its_deadline_is_dead_lettered_not_handled(
    broker: MemoryBroker,
) -> None:
    handled: list[bytes] = []

    async def handle(delivery: Delivery) -> None:
        handled.append(delivery.payload)

    expired, _ = with_timeout(background(), 0)
    await broker.publish("jobs", b"too late", ctx=expired)
    await broker.publish("jobs", b"fine")
    worker = consumer(broker, handle)
    async with running(worker):
        await until(lambda: worker.statistics().acked == 1)
        worker.stop()
    stats = worker.statistics()
    assert handled == [b"fine"]
    assert (stats.expired, stats.dead_lettered) == (1, 1)


async def test_a_failed_receive_is_retried_after_a_pause(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    async def handle(delivery: Delivery) -> None: ...

    worker = consumer(broker, handle)
    real = worker._subscription.receive
    failures = [BackendUnavailableError("memory://", "blip")]

    async def flaky(timeout: float | None = None) -> Delivery | None:
        if failures:
            raise failures.pop()
        return await real(timeout)

    worker._subscription.receive = flaky  # type: ignore[method-assign]
    await broker.publish("jobs", b"x")
    async with running(worker):
        await until(lambda: worker.statistics().broker_errors == 1)
        for _ in range(20):
            await asyncio.sleep(0)
        assert worker.statistics().received == 0  # pausing for 1 s
        clock.advance(1.0)
        await until(lambda: worker.statistics().acked == 1)
        worker.stop()


async def test_a_broker_closed_under_the_consumer_ends_the_run(broker: MemoryBroker) -> None:
    async def handle(delivery: Delivery) -> None: ...

    worker = consumer(broker, handle)
    async with running(worker) as task:
        for _ in range(20):
            await asyncio.sleep(0)
        await broker.aclose()
        with pytest.raises(BackendUnavailableError):
            await task


async def test_sigterm_stops_gracefully(broker: MemoryBroker) -> None:
    gate = Gate()
    await broker.publish("jobs", b"x")
    worker = consumer(broker, gate)
    previous = signal.getsignal(signal.SIGTERM)
    async with running(worker, install_signal_handlers=True) as task:
        await until(lambda: gate.running == 1)
        os.kill(os.getpid(), signal.SIGTERM)
        await until(lambda: worker._stop is not None and worker._stop.is_set(), spins=100_000)
        gate.opened.set()
        stats = await task
    assert stats.acked == 1
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler was removed


async def test_a_consumer_runs_once(broker: MemoryBroker) -> None:
    async def handle(delivery: Delivery) -> None: ...

    worker = consumer(broker, handle)
    worker.stop()
    await worker.run()
    with pytest.raises(DistsysError, match="runs once"):
        await worker.run()


@pytest.mark.parametrize(
    ("options", "field", "error"),
    [
        ({"concurrency": 0}, "concurrency", InvalidArgumentError),
        ({"concurrency": 1.5}, "concurrency", ArgumentTypeError),
        ({"prefetch": 0}, "prefetch", InvalidArgumentError),
        ({"ack_wait": 0}, "ack_wait", InvalidArgumentError),
        ({"max_deliveries": 0}, "max_deliveries", InvalidArgumentError),
        ({"drain_timeout": -1}, "drain_timeout", InvalidArgumentError),
        ({"backoff": 3}, "backoff", ArgumentTypeError),
    ],
)
def test_bad_options_are_refused_naming_them(
    broker: MemoryBroker, options: dict[str, object], field: str, error: type[Exception]
) -> None:
    async def handle(delivery: Delivery) -> None: ...

    with pytest.raises(error) as raised:
        Consumer(broker, "jobs", "g", handle, **options)  # type: ignore[arg-type]
    assert getattr(raised.value, "field", None) == field


def test_a_handler_must_be_callable(broker: MemoryBroker) -> None:
    with pytest.raises(ArgumentTypeError, match="handler"):
        Consumer(broker, "jobs", "g", "not a function")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="group"):
        Consumer(broker, "jobs", "no spaces", print)
