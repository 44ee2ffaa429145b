"""Cancellation safety: no value lost, none delivered by a send that raised, no waiter leaked."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distsys.concurrency import Chan
from distsys.errors import ChannelClosedError, WouldBlock


async def settle(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def assert_no_waiters(ch: Chan[object]) -> None:
    stats = ch.statistics()
    assert stats.senders_waiting == 0
    assert stats.receivers_waiting == 0


@pytest.mark.parametrize("capacity", [0, 2])
async def test_cancelled_waiting_receiver_takes_nothing(capacity: int) -> None:
    ch: Chan[int] = Chan(capacity)
    receiver = asyncio.create_task(ch.recv())
    await settle()
    receiver.cancel()
    with pytest.raises(asyncio.CancelledError):
        await receiver
    assert_no_waiters(ch)
    if capacity:
        await ch.send(1)
        assert ch.recv_nowait() == 1
    else:
        with pytest.raises(WouldBlock):  # nobody is waiting any more
            ch.send_nowait(1)


@pytest.mark.parametrize("capacity", [0, 2])
async def test_receiver_cancelled_after_being_handed_a_value_puts_it_back(capacity: int) -> None:
    ch: Chan[str] = Chan(capacity)
    receiver = asyncio.create_task(ch.recv())
    await settle()
    ch.send_nowait("precious")  # handed to the parked receiver, which has not run yet
    receiver.cancel()
    with pytest.raises(asyncio.CancelledError):
        await receiver
    assert ch.recv_nowait() == "precious"
    assert_no_waiters(ch)


async def test_put_back_value_goes_to_the_next_waiting_receiver_first() -> None:
    ch: Chan[str] = Chan()
    first = asyncio.create_task(ch.recv())
    await settle()
    second = asyncio.create_task(ch.recv())
    await settle()
    ch.send_nowait("x")  # goes to `first`
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == "x"


async def test_put_back_value_stays_ahead_of_buffered_ones() -> None:
    ch: Chan[int] = Chan(2)
    receiver = asyncio.create_task(ch.recv())
    await settle()
    ch.send_nowait(1)  # handed to the receiver
    receiver.cancel()
    ch.send_nowait(2)
    ch.send_nowait(3)
    with pytest.raises(asyncio.CancelledError):
        await receiver
    assert [ch.recv_nowait() for _ in range(3)] == [1, 2, 3]


async def test_cancelled_waiting_sender_delivers_nothing() -> None:
    ch: Chan[int] = Chan()
    sender = asyncio.create_task(ch.send(42))
    await settle()
    sender.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sender
    with pytest.raises(WouldBlock):
        ch.recv_nowait()
    assert_no_waiters(ch)


async def test_cancelled_sender_on_a_full_buffer_delivers_nothing() -> None:
    ch: Chan[int] = Chan(1)
    await ch.send(1)
    sender = asyncio.create_task(ch.send(2))
    await settle()
    sender.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sender
    assert ch.recv_nowait() == 1
    with pytest.raises(WouldBlock):
        ch.recv_nowait()


@pytest.mark.parametrize("capacity", [0, 1])
async def test_sender_whose_value_was_taken_completes_and_is_cancelled_afterwards(
    capacity: int,
) -> None:
    ch: Chan[int] = Chan(capacity)
    if capacity:
        await ch.send(0)
    log: list[str] = []

    async def sender() -> None:
        await ch.send(1)
        log.append("sent")  # the send returned: its value was delivered
        await asyncio.sleep(0)  # the deferred cancellation lands here
        log.append("not reached")

    task = asyncio.create_task(sender())
    await settle()
    taken = [ch.recv_nowait()]  # takes (or frees the slot for) the parked sender's value
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    if capacity:
        taken.append(ch.recv_nowait())
    assert log == ["sent"]
    assert taken[-1] == 1


async def test_timeout_scope_around_a_completed_send_does_not_lose_the_value() -> None:
    ch: Chan[int] = Chan()
    results: list[str] = []

    async def sender() -> None:
        try:
            async with asyncio.timeout(3600):
                await ch.send(9)
                results.append("sent")
        except TimeoutError:
            results.append("timeout")

    task = asyncio.create_task(sender())
    await settle()
    assert ch.recv_nowait() == 9
    await task
    assert results == ["sent"]


# ----------------------------------------------------- Hypothesis schedules


@dataclass(frozen=True)
class Schedule:
    capacity: int
    counts: list[int]  # values each producer sends
    consumers: int
    cancels: list[tuple[int, int]]  # (after how many loop turns, which task) to cancel
    nowait_every: int  # consumers use recv_nowait every n-th turn (0: never)


schedules = st.builds(
    Schedule,
    capacity=st.integers(0, 3),
    counts=st.lists(st.integers(0, 8), min_size=1, max_size=3),
    consumers=st.integers(1, 3),
    cancels=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 5)), max_size=4),
    nowait_every=st.integers(0, 4),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules)
def test_random_schedules_with_cancellation_lose_and_duplicate_nothing(
    schedule: Schedule,
) -> None:
    """Cancel producers and consumers at arbitrary await points.

    Invariant: the values received (by consumers, plus what is left in the channel)
    are exactly the values whose send returned normally, each once.
    """
    capacity, counts, consumers = schedule.capacity, schedule.counts, schedule.consumers
    cancels, nowait_every = schedule.cancels, schedule.nowait_every

    async def scenario() -> None:
        ch: Chan[tuple[int, int]] = Chan(capacity)
        sent: list[tuple[int, int]] = []
        received: list[tuple[int, int]] = []

        async def produce(pid: int, count: int) -> None:
            for seq in range(count):
                await ch.send((pid, seq))
                sent.append((pid, seq))

        async def consume(cid: int) -> None:
            turn = 0
            while True:
                turn += 1
                if nowait_every and turn % nowait_every == 0:
                    try:
                        received.append(ch.recv_nowait())
                    except WouldBlock:
                        await asyncio.sleep(0)
                    continue
                received.append(await ch.recv())

        tasks = [asyncio.create_task(produce(p, n)) for p, n in enumerate(counts)]
        tasks += [asyncio.create_task(consume(c)) for c in range(consumers)]
        by_turn: dict[int, list[int]] = {}
        for turn, index in cancels:
            by_turn.setdefault(turn, []).append(index % len(tasks))
        for turn in range(45):
            for index in by_turn.get(turn, []):
                tasks[index].cancel()
            await asyncio.sleep(0)
        tasks.append(asyncio.create_task(consume(-1)))  # drains for producers still sending
        producers_done = asyncio.gather(*tasks[: len(counts)], return_exceptions=True)
        await asyncio.wait_for(producers_done, 10)
        for task in tasks[len(counts) :]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        ch.close()
        leftover = [v async for v in ch]
        assert Counter(received + leftover) == Counter(sent)
        assert len(set(sent)) == len(sent)
        assert_no_waiters(ch)

    asyncio.run(scenario())


@settings(max_examples=150, deadline=None)
@given(
    capacity=st.integers(0, 2),
    cancel_at=st.integers(0, 12),
    values=st.integers(1, 6),
)
def test_cancelling_a_closer_race_keeps_close_semantics(
    capacity: int, cancel_at: int, values: int
) -> None:
    """Receivers cancelled around a close() still see every buffered value exactly once."""

    async def scenario() -> None:
        ch: Chan[int] = Chan(capacity)
        got: list[int] = []

        async def consume() -> None:
            try:
                async for v in ch:
                    got.append(v)
            except asyncio.CancelledError:
                raise

        async def produce() -> None:
            for v in range(values):
                await ch.send(v)
            ch.close()

        consumer = asyncio.create_task(consume())
        producer = asyncio.create_task(produce())
        for _ in range(cancel_at):
            await asyncio.sleep(0)
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        rest_consumer = asyncio.create_task(consume())
        await asyncio.wait_for(producer, 10)
        await asyncio.wait_for(rest_consumer, 10)
        assert got == list(range(values))
        with pytest.raises(ChannelClosedError):
            ch.recv_nowait()

    asyncio.run(scenario())
