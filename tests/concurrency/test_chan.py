"""Go channel semantics of Chan: buffering, rendezvous, close, timeouts, threads."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest

from distsys.concurrency import Chan, ChanStatistics
from distsys.errors import (
    ArgumentTypeError,
    BlockingCallInLoopError,
    ChannelClosedError,
    DeadlineExceededError,
    InvalidArgumentError,
    WouldBlock,
)
from distsys.testing import ManualClock
from tests.conftest import wait_until


async def settle(rounds: int = 5) -> None:
    """Let every ready task run (a handful of loop iterations; not a timed wait)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


# ---------------------------------------------------------------- construction


@pytest.mark.parametrize("capacity", [-1, -100])
def test_negative_capacity_is_refused_naming_the_argument(capacity: int) -> None:
    with pytest.raises(InvalidArgumentError, match=r"capacity=-\d+ .*int >= 0") as info:
        Chan(capacity)
    assert info.value.field == "capacity"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("capacity", [1.5, "3", None, True])
def test_non_int_capacity_is_refused(capacity: object) -> None:
    with pytest.raises(ArgumentTypeError, match="capacity"):
        Chan(capacity)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [-1, -0.001, math.nan])
async def test_negative_timeout_is_refused(timeout: float) -> None:
    ch: Chan[int] = Chan(1)
    with pytest.raises(InvalidArgumentError, match="timeout"):
        await ch.recv(timeout=timeout)
    with pytest.raises(InvalidArgumentError, match="timeout"):
        await ch.send(1, timeout=timeout)
    with pytest.raises(InvalidArgumentError, match="timeout"):
        ch.recv_blocking(timeout=timeout)
    assert len(ch) == 0


# -------------------------------------------------------------------- buffered


async def test_buffered_channel_is_fifo_and_reports_its_size() -> None:
    ch: Chan[int] = Chan(3)
    for i in range(3):
        await ch.send(i)
    assert len(ch) == 3
    assert ch.capacity == 3
    assert [await ch.recv() for _ in range(3)] == [0, 1, 2]
    assert len(ch) == 0


async def test_send_on_a_full_buffer_waits_for_a_receiver() -> None:
    ch: Chan[int] = Chan(2)
    await ch.send(1)
    await ch.send(2)
    third = asyncio.create_task(ch.send(3))
    await settle()
    assert not third.done()
    assert ch.statistics().senders_waiting == 1
    assert await ch.recv() == 1
    await third
    assert [ch.recv_nowait(), ch.recv_nowait()] == [2, 3]


async def test_parked_senders_are_served_in_arrival_order() -> None:
    ch: Chan[int] = Chan(1)
    await ch.send(0)
    senders = []
    for i in range(1, 5):
        senders.append(asyncio.create_task(ch.send(i)))
        await settle()
    assert [await ch.recv() for _ in range(5)] == [0, 1, 2, 3, 4]
    await asyncio.gather(*senders)


async def test_parked_receivers_are_served_in_arrival_order() -> None:
    ch: Chan[str] = Chan(4)
    receivers = []
    for _ in range(3):
        receivers.append(asyncio.create_task(ch.recv()))
        await settle()
    for word in ("a", "b", "c"):
        await ch.send(word)
    assert await asyncio.gather(*receivers) == ["a", "b", "c"]


async def test_none_is_an_ordinary_value() -> None:
    ch: Chan[None] = Chan(1)
    await ch.send(None)
    assert await ch.recv() is None
    receiver = asyncio.create_task(ch.recv())
    await settle()
    ch.send_nowait(None)
    assert await receiver is None


# ------------------------------------------------------------------ unbuffered


async def test_unbuffered_send_completes_only_when_a_receiver_takes_the_value() -> None:
    ch: Chan[str] = Chan()
    sender = asyncio.create_task(ch.send("hello"))
    await settle()
    assert not sender.done()
    assert len(ch) == 0
    assert ch.statistics().senders_waiting == 1
    assert await ch.recv() == "hello"
    await settle()
    assert sender.done()
    assert sender.exception() is None


async def test_unbuffered_receiver_waits_for_a_sender() -> None:
    ch: Chan[int] = Chan()
    receiver = asyncio.create_task(ch.recv())
    await settle()
    assert not receiver.done()
    await ch.send(7)  # a receiver is waiting: the send completes at once
    assert await receiver == 7


async def test_unbuffered_nowait_succeeds_only_with_a_partner_waiting() -> None:
    ch: Chan[int] = Chan()
    with pytest.raises(WouldBlock):
        ch.send_nowait(1)
    with pytest.raises(WouldBlock):
        ch.recv_nowait()
    receiver = asyncio.create_task(ch.recv())
    await settle()
    ch.send_nowait(5)
    assert await receiver == 5
    sender = asyncio.create_task(ch.send(6))
    await settle()
    assert ch.recv_nowait() == 6
    await sender


# ------------------------------------------------------------------------ close


async def test_close_drains_the_buffer_then_signals_closed() -> None:
    ch: Chan[int] = Chan(3)
    await ch.send(1)
    await ch.send(2)
    ch.close()
    assert ch.closed
    assert await ch.recv() == 1
    assert ch.recv_nowait() == 2
    with pytest.raises(ChannelClosedError):
        await ch.recv()
    with pytest.raises(ChannelClosedError):
        ch.recv_nowait()


async def test_async_for_ends_at_close() -> None:
    ch: Chan[int] = Chan(10)
    for i in range(5):
        await ch.send(i)
    ch.close()
    assert [v async for v in ch] == [0, 1, 2, 3, 4]


def test_thread_for_loop_ends_at_close() -> None:
    ch: Chan[int] = Chan()

    def produce() -> None:
        for i in range(100):
            ch.send_blocking(i)
        ch.close()

    thread = threading.Thread(target=produce)
    thread.start()
    assert list(ch) == list(range(100))
    thread.join(5)


async def test_send_on_or_close_of_a_closed_channel_raises() -> None:
    ch: Chan[int] = Chan(1)
    ch.close()
    with pytest.raises(ChannelClosedError, match="send on a closed channel"):
        await ch.send(1)
    with pytest.raises(ChannelClosedError):
        ch.send_nowait(1)
    with pytest.raises(ChannelClosedError):
        ch.send_blocking(1)
    with pytest.raises(ChannelClosedError, match="close of a closed channel"):
        ch.close()
    assert len(ch) == 0


async def test_close_wakes_every_waiting_receiver_and_sender() -> None:
    receivers_ch: Chan[int] = Chan()
    receivers = [asyncio.create_task(receivers_ch.recv()) for _ in range(4)]
    senders_ch: Chan[int] = Chan()
    senders = [asyncio.create_task(senders_ch.send(i)) for i in range(4)]
    await settle()
    receivers_ch.close()
    senders_ch.close()
    for outcome in await asyncio.gather(*receivers, *senders, return_exceptions=True):
        assert isinstance(outcome, ChannelClosedError)
    for ch in (receivers_ch, senders_ch):
        stats = ch.statistics()
        assert stats.senders_waiting == stats.receivers_waiting == 0


def test_close_wakes_blocked_threads() -> None:
    ch: Chan[int] = Chan()
    errors: list[BaseException] = []

    def receive() -> None:
        try:
            ch.recv_blocking()
        except ChannelClosedError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=receive) for _ in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: ch.statistics().receivers_waiting == 3)
    ch.close()
    for t in threads:
        t.join(5)
    assert len(errors) == 3


# ----------------------------------------------------------------- statistics


async def test_statistics_is_a_frozen_snapshot() -> None:
    ch: Chan[int] = Chan(2)
    await ch.send(1)
    stats = ch.statistics()
    assert stats == ChanStatistics(
        capacity=2, buffered=1, senders_waiting=0, receivers_waiting=0, closed=False
    )
    with pytest.raises(AttributeError):
        stats.buffered = 5  # type: ignore[misc]
    assert "capacity=2" in repr(ch)


# -------------------------------------------------------------------- timeouts


async def test_recv_timeout_on_a_manual_clock() -> None:
    clock = ManualClock()
    ch: Chan[int] = Chan(clock=clock)
    receiver = asyncio.create_task(ch.recv(timeout=1.0))
    await settle()
    clock.advance(0.5)
    await settle()
    assert not receiver.done()
    clock.advance(0.5)
    with pytest.raises(DeadlineExceededError):
        await receiver
    assert ch.statistics().receivers_waiting == 0


async def test_send_timeout_leaves_the_value_undelivered() -> None:
    clock = ManualClock()
    ch: Chan[int] = Chan(clock=clock)
    sender = asyncio.create_task(ch.send(1, timeout=2.0))
    await settle()
    clock.advance(2.0)
    with pytest.raises(DeadlineExceededError) as info:
        await sender
    assert isinstance(info.value, TimeoutError)
    with pytest.raises(WouldBlock):
        ch.recv_nowait()


async def test_a_value_arriving_before_the_timeout_wins() -> None:
    clock = ManualClock()
    ch: Chan[int] = Chan(clock=clock)
    receiver = asyncio.create_task(ch.recv(timeout=1.0))
    await settle()
    ch.send_nowait(3)
    clock.advance(5.0)  # the timer was cancelled; advancing changes nothing
    assert await receiver == 3
    assert clock.pending() == 0


async def test_zero_timeout_tries_once() -> None:
    ch: Chan[int] = Chan()
    with pytest.raises(DeadlineExceededError):
        await ch.recv(timeout=0)
    with pytest.raises(DeadlineExceededError):
        await ch.send(1, timeout=0)


def test_thread_recv_timeout_on_a_manual_clock() -> None:
    clock = ManualClock()
    ch: Chan[int] = Chan(clock=clock)
    outcome: list[BaseException] = []

    def receive() -> None:
        try:
            ch.recv_blocking(timeout=3.0)
        except DeadlineExceededError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=receive)
    thread.start()
    wait_until(lambda: clock.pending() == 1)
    clock.advance(2.9)
    assert thread.is_alive()
    clock.advance(0.1)
    thread.join(5)
    assert len(outcome) == 1


def test_thread_recv_real_clock_timeout_returns_a_value_that_arrives() -> None:
    ch: Chan[int] = Chan()
    got: list[int] = []
    thread = threading.Thread(target=lambda: got.append(ch.recv_blocking(timeout=30)))
    thread.start()
    wait_until(lambda: ch.statistics().receivers_waiting == 1)
    ch.send_blocking(11)
    thread.join(5)
    assert got == [11]


# ------------------------------------------------------------- mixing worlds


async def test_blocking_calls_that_would_wait_are_refused_on_the_loop_thread() -> None:
    ch: Chan[int] = Chan(1)
    with pytest.raises(BlockingCallInLoopError, match="recv_blocking"):
        ch.recv_blocking()
    ch.send_blocking(1)  # does not need to wait: allowed
    with pytest.raises(BlockingCallInLoopError, match="send_blocking"):
        ch.send_blocking(2)
    assert ch.recv_blocking() == 1  # does not need to wait either


async def test_thread_producer_feeds_an_asyncio_consumer() -> None:
    ch: Chan[int] = Chan(8)
    n = 20_000

    def produce() -> None:
        for i in range(n):
            ch.send_blocking(i)
        ch.close()

    thread = threading.Thread(target=produce)
    thread.start()
    got = [v async for v in ch]
    thread.join(5)
    assert got == list(range(n))


async def test_asyncio_producer_feeds_a_thread_consumer_unbuffered() -> None:
    ch: Chan[int] = Chan()
    n = 2_000
    got: list[int] = []
    thread = threading.Thread(target=lambda: got.extend(ch))
    thread.start()
    for i in range(n):
        await ch.send(i)
    ch.close()
    await asyncio.to_thread(thread.join, 10)
    assert got == list(range(n))


def _run_in_loop(coro_fn: object) -> threading.Thread:
    thread = threading.Thread(target=asyncio.run, args=(coro_fn,))
    thread.start()
    return thread


@pytest.mark.parametrize("capacity", [0, 1, 16])
def test_many_producers_and_consumers_across_threads_and_loops(capacity: int) -> None:
    """Every value is received exactly once, and each sender's values stay in order."""
    ch: Chan[tuple[int, int]] = Chan(capacity)
    per_producer = 1_500
    producers = 4
    received: list[list[tuple[int, int]]] = []
    lock = threading.Lock()

    def thread_producer(pid: int) -> None:
        for seq in range(per_producer):
            ch.send_blocking((pid, seq))

    async def task_producer(pid: int) -> None:
        for seq in range(per_producer):
            await ch.send((pid, seq))

    def thread_consumer() -> None:
        mine = list(ch)
        with lock:
            received.append(mine)

    async def task_consumers() -> None:
        async def one() -> list[tuple[int, int]]:
            return [v async for v in ch]

        results = await asyncio.gather(one(), one())
        with lock:
            received.extend(results)

    workers = [
        threading.Thread(target=thread_producer, args=(0,)),
        threading.Thread(target=thread_producer, args=(1,)),
        _run_in_loop(task_producer(2)),
        _run_in_loop(task_producer(3)),
        threading.Thread(target=thread_consumer),
        threading.Thread(target=thread_consumer),
    ]
    consumers_loop = _run_in_loop(task_consumers())
    for w in workers:
        if not w.is_alive() and w.ident is None:
            w.start()
    for w in workers[:4]:
        w.join(60)
        assert not w.is_alive()
    ch.close()
    for w in [*workers[4:], consumers_loop]:
        w.join(60)
        assert not w.is_alive()
    flat = [v for part in received for v in part]
    assert len(flat) == producers * per_producer
    assert set(flat) == {(p, s) for p in range(producers) for s in range(per_producer)}
    for part in received:
        for pid in range(producers):
            seqs = [s for p, s in part if p == pid]
            assert seqs == sorted(seqs)
