"""select: exactly one case, fair choice, default, timeout, None cases, threads."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.concurrency import DEFAULT, Chan, select, select_blocking
from distsys.context import background, with_cancel, with_timeout
from distsys.errors import (
    ArgumentTypeError,
    ChannelClosedError,
    DeadlineExceededError,
    InvalidArgumentError,
    WouldBlock,
)
from distsys.testing import ManualClock
from tests.conftest import wait_until


async def settle(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def waiting(ch: Chan[object]) -> tuple[int, int]:
    stats = ch.statistics()
    return stats.senders_waiting, stats.receivers_waiting


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("case", [42, "ch", Chan, (print, 1), (1, 2, 3)])
async def test_a_case_that_is_not_a_channel_operation_is_refused(case: object) -> None:
    ch: Chan[int] = Chan(1)
    with pytest.raises(ArgumentTypeError, match=r"cases\[1\]") as info:
        await select(ch.recv, case)
    assert "ch.recv" in str(info.value)  # names the accepted forms


async def test_a_negative_timeout_is_refused() -> None:
    ch: Chan[int] = Chan(1)
    with pytest.raises(InvalidArgumentError, match="timeout"):
        await select(ch.recv, timeout=-1)
    with pytest.raises(InvalidArgumentError, match="timeout"):
        select_blocking(ch.recv, timeout=-0.5)


# ------------------------------------------------------------ ready cases


async def test_a_ready_receive_fires_with_its_value() -> None:
    a: Chan[str] = Chan(1)
    b: Chan[str] = Chan(1)
    await b.send("from b")
    assert await select(a.recv, b.recv) == (1, "from b")


async def test_a_ready_send_fires() -> None:
    full: Chan[int] = Chan(1)
    await full.send(0)
    room: Chan[int] = Chan(1)
    assert await select((full.send, 1), (room.send, 2)) == (1, None)
    assert room.recv_nowait() == 2
    assert full.recv_nowait() == 0
    with pytest.raises(WouldBlock):
        full.recv_nowait()


async def test_exactly_one_case_fires_when_several_are_ready() -> None:
    chans: list[Chan[int]] = [Chan(1) for _ in range(5)]
    for i, ch in enumerate(chans):
        await ch.send(i)
    index, value = await select(*(ch.recv for ch in chans))
    assert value == index
    assert sum(len(ch) for ch in chans) == 4
    assert len(chans[index]) == 0


async def test_ready_cases_are_chosen_uniformly() -> None:
    rng = random.Random(1234)
    counts: Counter[int] = Counter()
    a: Chan[int] = Chan(1)
    b: Chan[int] = Chan(1)
    c: Chan[int] = Chan(1)
    for _ in range(3000):
        for ch in (a, b, c):
            if len(ch) == 0:
                ch.send_nowait(0)
        index, _ = await select(a.recv, b.recv, c.recv, rng=rng)
        counts[index] += 1
    for index in range(3):
        assert 850 < counts[index] < 1150, counts  # 1000 expected, > 5 sigma margin


async def test_default_returns_at_once_when_nothing_is_ready() -> None:
    ch: Chan[int] = Chan()
    assert await select(ch.recv, (ch.send, 1), default=True) == (DEFAULT, None)
    assert select_blocking(ch.recv, default=True) == (DEFAULT, None)
    assert waiting(ch) == (0, 0)


async def test_none_cases_are_never_ready_and_keep_positions() -> None:
    ch: Chan[int] = Chan(1)
    await ch.send(5)
    assert await select(None, (None, 3), ch.recv) == (2, 5)
    assert await select(None, default=True) == (DEFAULT, None)


async def test_a_select_can_wait_on_no_case_until_its_timeout() -> None:
    clock = ManualClock()
    task = asyncio.create_task(select(None, timeout=1, clock=clock))
    await settle()
    clock.advance(1)
    with pytest.raises(DeadlineExceededError):
        await task


# ----------------------------------------------------------------- waiting


async def test_a_waiting_select_is_woken_by_a_sender_and_leaves_no_entries() -> None:
    a: Chan[int] = Chan()
    b: Chan[int] = Chan()
    task = asyncio.create_task(select(a.recv, b.recv))
    await settle()
    assert waiting(a) == (0, 1)
    assert waiting(b) == (0, 1)
    await b.send(8)
    assert await task == (1, 8)
    assert waiting(a) == (0, 0)
    assert waiting(b) == (0, 0)


async def test_a_waiting_send_case_is_taken_by_a_receiver() -> None:
    a: Chan[int] = Chan()
    b: Chan[int] = Chan()
    task = asyncio.create_task(select((a.send, 1), (b.send, 2)))
    await settle()
    assert await a.recv() == 1
    assert await task == (0, None)
    with pytest.raises(WouldBlock):
        b.recv_nowait()  # the other send did not happen
    assert waiting(b) == (0, 0)


async def test_select_timeout_on_a_manual_clock() -> None:
    clock = ManualClock()
    a: Chan[int] = Chan()
    task = asyncio.create_task(select(a.recv, timeout=2.0, clock=clock))
    await settle()
    clock.advance(1.9)
    await settle()
    assert not task.done()
    clock.advance(0.1)
    with pytest.raises(DeadlineExceededError):
        await task
    assert waiting(a) == (0, 0)


async def test_a_select_does_not_meet_itself() -> None:
    clock = ManualClock()
    ch: Chan[int] = Chan()
    task = asyncio.create_task(select(ch.recv, (ch.send, 1), timeout=1, clock=clock))
    await settle()
    assert not task.done()
    assert await ch.recv() == 1  # another party takes the send case
    assert await task == (1, None)


async def test_two_selects_meet_consistently() -> None:
    a: Chan[str] = Chan()
    b: Chan[str] = Chan()
    first = asyncio.create_task(select(a.recv, (b.send, "one")))
    await settle()
    second = asyncio.create_task(select(b.recv, (a.send, "two")))
    r1, r2 = await asyncio.gather(first, second)
    # Exactly one rendezvous happened: either on b (first sent, second received) or on a.
    assert (r1, r2) in [((1, None), (0, "one")), ((0, "two"), (1, None))]
    assert waiting(a) == waiting(b) == (0, 0)


async def test_closed_channels_in_select() -> None:
    a: Chan[int] = Chan(1)
    a.close()
    with pytest.raises(ChannelClosedError) as info:
        await select(None, a.recv)
    assert info.value.index == 1
    with pytest.raises(ChannelClosedError) as info:
        await select((a.send, 1))
    assert info.value.index == 0


async def test_close_wakes_a_waiting_select() -> None:
    a: Chan[int] = Chan()
    b: Chan[int] = Chan()
    task = asyncio.create_task(select(a.recv, b.recv))
    await settle()
    b.close()
    with pytest.raises(ChannelClosedError) as info:
        await task
    assert info.value.index == 1
    assert waiting(a) == (0, 0)


# ------------------------------------------------------------- cancellation


async def test_a_cancelled_select_takes_nothing_and_leaves_no_entries() -> None:
    a: Chan[int] = Chan()
    b: Chan[int] = Chan()
    task = asyncio.create_task(select(a.recv, (b.send, 3)))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert waiting(a) == waiting(b) == (0, 0)
    with pytest.raises(WouldBlock):
        b.recv_nowait()


async def test_a_select_cancelled_after_receiving_puts_the_value_back() -> None:
    a: Chan[int] = Chan()
    task = asyncio.create_task(select(a.recv))
    await settle()
    a.send_nowait(77)  # decides the select before it runs again
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert a.recv_nowait() == 77


async def test_a_select_cancelled_after_its_send_was_taken_reports_the_send() -> None:
    a: Chan[int] = Chan()
    log: list[tuple[int, object]] = []

    async def body() -> None:
        log.append(await select((a.send, 5)))
        await asyncio.sleep(0)

    task = asyncio.create_task(body())
    await settle()
    assert a.recv_nowait() == 5
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == [(0, None)]


# ------------------------------------------------------------------ contexts


async def test_select_on_a_context_done_fires_when_cancelled() -> None:
    ctx, cancel = with_cancel(background())
    jobs: Chan[int] = Chan()
    task = asyncio.create_task(select(jobs.recv, ctx.done))
    await settle()
    cancel()
    assert await task == (1, None)
    assert waiting(jobs) == (0, 0)


async def test_select_on_a_context_deadline_uses_the_context_clock() -> None:
    clock = ManualClock()
    ctx, _ = with_timeout(background(clock=clock), 5.0)
    jobs: Chan[int] = Chan()
    task = asyncio.create_task(select(jobs.recv, ctx.done))
    await settle()
    clock.advance(4.0)
    await settle()
    assert not task.done()
    clock.advance(1.0)
    assert await task == (1, None)
    assert ctx.err() is not None


async def test_an_ended_context_is_ready_at_once() -> None:
    ctx, cancel = with_cancel(background())
    cancel()
    assert await select(ctx.done, default=True) == (0, None)


# -------------------------------------------------------------------- threads


def test_select_blocking_between_threads() -> None:
    a: Chan[int] = Chan()
    b: Chan[int] = Chan()
    result: list[tuple[int, object]] = []
    thread = threading.Thread(target=lambda: result.append(select_blocking(a.recv, b.recv)))
    thread.start()
    wait_until(lambda: waiting(b) == (0, 1))
    b.send_blocking(4)
    thread.join(5)
    assert result == [(1, 4)]
    assert waiting(a) == (0, 0)


def test_select_blocking_timeout_on_a_manual_clock() -> None:
    clock = ManualClock()
    a: Chan[int] = Chan()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            select_blocking(a.recv, timeout=1.0, clock=clock)
        except DeadlineExceededError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_until(lambda: clock.pending() == 1)
    clock.advance(1.0)
    thread.join(5)
    assert len(errors) == 1
    assert waiting(a) == (0, 0)


def test_select_blocking_is_refused_on_a_loop_thread_when_it_would_wait() -> None:
    async def main() -> None:
        ch: Chan[int] = Chan()
        with pytest.raises(Exception, match="select_blocking"):
            select_blocking(ch.recv)
        assert select_blocking(ch.recv, default=True) == (DEFAULT, None)

    asyncio.run(main())


# --------------------------------------------------------------- stress / races


def test_selects_across_threads_and_tasks_deliver_every_value_once() -> None:
    """Producers send on two channels; consumers select over both and a quit channel."""
    a: Chan[int] = Chan(4)
    b: Chan[int] = Chan()
    n = 3000
    got: list[int] = []
    lock = threading.Lock()

    def producer(ch: Chan[int], start: int) -> None:
        for i in range(start, start + n):
            ch.send_blocking(i)

    def thread_consumer(quit_: Chan[None]) -> None:
        mine = []
        while True:
            index, value = select_blocking(a.recv, b.recv, quit_.recv)
            if index == 2:
                break
            mine.append(value)
        with lock:
            got.extend(mine)

    async def task_consumers(quit_: Chan[None]) -> None:
        async def one() -> list[int]:
            mine = []
            while True:
                index, value = await select(a.recv, b.recv, quit_.recv)
                if index == 2:
                    return mine
                mine.append(value)

        parts = await asyncio.gather(one(), one())
        with lock:
            for part in parts:
                got.extend(part)

    quit_: Chan[None] = Chan()
    consumers = [threading.Thread(target=thread_consumer, args=(quit_,)) for _ in range(2)]
    consumers.append(threading.Thread(target=asyncio.run, args=(task_consumers(quit_),)))
    producers = [
        threading.Thread(target=producer, args=(a, 0)),
        threading.Thread(target=producer, args=(b, n)),
        threading.Thread(target=producer, args=(a, 2 * n)),
    ]
    for t in consumers + producers:
        t.start()
    for t in producers:
        t.join(60)
        assert not t.is_alive()
    for _ in range(4):
        quit_.send_blocking(None)
    for t in consumers:
        t.join(60)
        assert not t.is_alive()
    assert sorted(got) == list(range(3 * n))


@settings(max_examples=200, deadline=None)
@given(
    capacities=st.lists(st.integers(0, 2), min_size=1, max_size=3),
    plan=st.lists(st.tuples(st.booleans(), st.integers(0, 2), st.integers(0, 6)), max_size=12),
    cancel_turns=st.lists(st.integers(0, 30), max_size=3),
)
def test_random_select_schedules_preserve_every_value(
    capacities: list[int], plan: list[tuple[bool, int, int]], cancel_turns: list[int]
) -> None:
    """Selects that send or receive on random channels, some cancelled mid-flight.

    Invariant: every value a send returned for is received exactly once (by a select, or
    left in a channel), and nothing else is.
    """

    async def scenario() -> None:
        chans: list[Chan[int]] = [Chan(c) for c in capacities]
        sent: list[int] = []
        received: list[int] = []

        async def sender(value: int, which: int) -> None:
            ch = chans[which % len(chans)]
            other = chans[(which + 1) % len(chans)]
            index, _ = await select((ch.send, value), (other.send, value + 1000))
            sent.append(value if index == 0 else value + 1000)

        async def receiver() -> None:
            _, value = await select(*(ch.recv for ch in chans))
            received.append(value)

        tasks = []
        for n, (is_send, which, _) in enumerate(plan):
            tasks.append(asyncio.create_task(sender(n, which) if is_send else receiver()))
        for turn in range(32):
            if turn in cancel_turns and tasks:
                tasks[turn % len(tasks)].cancel()
            await asyncio.sleep(0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        leftover = []
        for ch in chans:
            ch.close()
            leftover += [v async for v in ch]
            assert waiting(ch) == (0, 0)
        assert Counter(received + leftover) == Counter(sent)

    asyncio.run(scenario())
