"""Producer: synchronous publishing through one background event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from distsys.errors import (
    ArgumentTypeError,
    BackendUnavailableError,
    BlockingCallInLoopError,
    DeadlineExceededError,
    InvalidArgumentError,
    UnknownSchemeError,
)
from distsys.mq import MemoryBroker, Outgoing, Producer
from distsys.testing import ManualClock
from tests.conftest import wait_until


@pytest.fixture
def producer() -> Iterator[Producer]:
    with Producer("memory://") as producer:
        yield producer


def drain(producer: Producer, topic: str, group: str, count: int) -> list[bytes]:
    """Receive ``count`` messages on the producer's loop (test-only access to its broker)."""

    async def receive() -> list[bytes]:
        got = []
        async with producer._broker.subscribe(topic, group, prefetch=50) as sub:
            for _ in range(count):
                delivery = await sub.receive(timeout=5)
                assert delivery is not None
                got.append(delivery.payload)
                await delivery.ack()
        return got

    return asyncio.run_coroutine_threadsafe(receive(), producer._loop).result(30)


def test_publish_returns_the_id_once_stored(producer: Producer) -> None:
    first = producer.publish("orders", b"a", headers={"trace": "t1"}, key="c7")
    second = producer.publish("orders", b"b")
    assert first != second
    assert producer.depth("orders", "billing").waiting == 2
    assert drain(producer, "orders", "billing", 2) == [b"a", b"b"]
    assert producer.statistics().published == 2


def test_publish_batch_returns_ids_in_order(producer: Producer) -> None:
    ids = producer.publish_batch("orders", [b"a", Outgoing(b"b", {"h": "1"}), b"c"])
    assert len(set(ids)) == 3
    assert drain(producer, "orders", "g", 3) == [b"a", b"b", b"c"]
    assert producer.statistics().published == 3


def test_many_threads_publish_through_one_producer(producer: Producer) -> None:
    def publish(thread: int) -> list[str]:
        return [producer.publish("load", f"{thread}-{n}".encode()) for n in range(50)]

    with ThreadPoolExecutor(8) as pool:
        ids = [i for batch in pool.map(publish, range(8)) for i in batch]
    assert len(set(ids)) == 400
    got = drain(producer, "load", "g", 400)
    assert sorted(got) == sorted(f"{t}-{n}".encode() for t in range(8) for n in range(50))
    stats = producer.statistics()
    assert (stats.published, stats.failed, stats.pending) == (400, 0, 0)


def test_the_brokers_errors_reach_the_caller(producer: Producer) -> None:
    with pytest.raises(InvalidArgumentError) as bad_topic:
        producer.publish("no spaces", b"x")
    assert bad_topic.value.field == "topic"
    with pytest.raises(ArgumentTypeError):
        producer.publish("t", "text")  # type: ignore[arg-type]
    assert producer.statistics().failed == 2


def test_a_dead_broker_raises_and_never_pretends_success(producer: Producer) -> None:
    async def kill() -> None:
        await producer._broker.aclose()  # as if the server went away

    asyncio.run_coroutine_threadsafe(kill(), producer._loop).result(5)
    with pytest.raises(BackendUnavailableError):
        producer.publish("orders", b"lost?")
    assert producer.statistics().published == 0


def test_a_broker_that_does_not_answer_times_out() -> None:
    clock = ManualClock()
    with Producer("memory://", timeout=5.0, clock=clock) as producer:

        async def hang(topic: str, messages: list[Outgoing]) -> list[str]:
            await asyncio.sleep(3600)
            return []

        producer._broker._publish = hang  # type: ignore[attr-defined]
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(producer.publish, "orders", b"x")
            wait_until(lambda: producer.statistics().pending == 1 and clock.pending() == 1)
            clock.advance(4.9)
            assert not call.done()
            clock.advance(0.1)
            with pytest.raises(DeadlineExceededError, match="may or may not have been stored"):
                call.result(10)
        assert producer.statistics().failed == 1


def test_a_closed_producer_refuses_work_and_close_is_idempotent() -> None:
    producer = Producer("memory://")
    producer.close()
    producer.close()
    with pytest.raises(BackendUnavailableError, match="closed"):
        producer.publish("orders", b"x")
    assert not producer._thread.is_alive()
    assert "closed" in repr(producer)


def test_close_lets_running_calls_finish() -> None:
    producer = Producer("memory://")
    started, release = threading.Event(), asyncio.Event()
    real = producer._broker._publish  # type: ignore[attr-defined]

    async def slow(topic: str, messages: list[Outgoing]) -> list[str]:
        producer._loop.call_soon_threadsafe(started.set)
        await release.wait()
        result: list[str] = await real(topic, messages)
        return result

    producer._broker._publish = slow  # type: ignore[attr-defined]
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(producer.publish, "orders", b"x")
        assert started.wait(10)
        closing = threading.Thread(target=producer.close)
        closing.start()
        producer._loop.call_soon_threadsafe(release.set)
        assert pending.result(10)  # the call running when close() began completed
        closing.join(10)
    assert not producer._thread.is_alive()


async def test_calling_from_a_coroutine_is_refused() -> None:
    producer = await asyncio.to_thread(Producer, "memory://")
    try:
        with pytest.raises(BlockingCallInLoopError, match=r"Producer\.publish"):
            producer.publish("orders", b"x")
    finally:
        await asyncio.to_thread(producer.close)


def test_options_reach_the_broker_and_bad_urls_fail_at_construction() -> None:
    clock = ManualClock()
    with Producer("memory://", clock=clock) as producer:
        assert isinstance(producer._broker, MemoryBroker)
        assert producer._broker.clock is clock
    with pytest.raises(UnknownSchemeError):
        Producer("kafka://localhost")
    with pytest.raises(InvalidArgumentError) as bad:
        Producer("memory://", timeout=0)
    assert bad.value.field == "timeout"
    assert threading.active_count() < 50  # failed constructions left no loop thread behind
