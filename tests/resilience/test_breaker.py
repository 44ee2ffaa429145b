"""CircuitBreaker: the state machine on a ManualClock, its API forms, and bad input."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest

from distsys.errors import ArgumentTypeError, BreakerOpenError, InvalidArgumentError
from distsys.resilience import (
    Breaker,
    BreakerState,
    CircuitBreaker,
    CountWindow,
    Permit,
    StateChange,
    TimeWindow,
)
from distsys.testing import ManualClock
from tests.resilience.breaker_helpers import Boom, Ignored, Stop, arun, run

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
FORCED_OPEN, DISABLED = BreakerState.FORCED_OPEN, BreakerState.DISABLED


def make(clock: ManualClock, **changes: Any) -> CircuitBreaker:
    """The breaker of the tables: small numbers, every feature on."""
    settings: dict[str, Any] = {
        "window": TimeWindow(10.0, 10),
        "minimum_calls": 4,
        "failure_rate_threshold": 0.5,
        "slow_call_duration": 1.0,
        "slow_call_rate_threshold": 0.5,
        "wait_duration": 5.0,
        "half_open_max_calls": 2,
        "half_open_successes": 2,
        "ignore_exceptions": Ignored,
        "record_exceptions": Boom,
        "clock": clock,
    }
    settings.update(changes)
    return CircuitBreaker("dep", **settings)


# Each row: a script (see breaker_helpers), then the state and counters it must leave:
# (state, calls, failures, slow calls, rejected, opened).
TIME_WINDOW_ROWS = [
    ("", (CLOSED, 0, 0, 0, 0, 0)),
    ("ok*3", (CLOSED, 3, 0, 0, 0, 0)),
    ("fail*3", (CLOSED, 3, 3, 0, 0, 0)),  # below the minimum: not judged
    ("fail*4", (OPEN, 4, 4, 0, 0, 1)),
    ("ok*2 fail*2", (OPEN, 4, 2, 0, 0, 1)),  # 50% >= 50%
    ("ok*3 fail", (CLOSED, 4, 1, 0, 0, 0)),
    ("fail*3 ok", (OPEN, 4, 3, 0, 0, 1)),  # a success brings it to the minimum: 75%
    ("fail ok*3 fail ok", (CLOSED, 6, 2, 0, 0, 0)),
    ("ign*10 fail*3", (CLOSED, 3, 3, 0, 0, 0)),  # ignored: neither success nor failure
    ("stop*10 fail*3", (CLOSED, 3, 3, 0, 0, 0)),  # BaseException: not counted
    ("other*3 fail", (CLOSED, 4, 1, 0, 0, 0)),  # not recorded: a success
    ("fail*4 rej*3", (OPEN, 4, 4, 0, 3, 1)),
    ("fail*4 +4.9 rej", (OPEN, 4, 4, 0, 1, 1)),
    ("fail*4 +5 ok", (HALF_OPEN, 4, 4, 0, 0, 1)),  # one trial of two
    ("fail*4 +5 ok ok", (CLOSED, 0, 0, 0, 0, 1)),  # closes with an empty window
    ("fail*4 +5 ok ok fail*3", (CLOSED, 3, 3, 0, 0, 1)),
    ("fail*4 +5 fail", (OPEN, 4, 4, 0, 0, 2)),
    ("fail*4 +5 fail rej", (OPEN, 4, 4, 0, 1, 2)),
    ("fail*4 +5 ign ok ok", (CLOSED, 0, 0, 0, 0, 1)),  # an ignored trial frees its slot
    ("fail*4 +5 stop ok ok", (CLOSED, 0, 0, 0, 0, 1)),
    ("fail*4 +5 other ok", (CLOSED, 0, 0, 0, 0, 1)),  # not recorded: a successful trial
    ("fail*4 +5 slow slow", (OPEN, 4, 4, 0, 0, 2)),  # slow trials: 100% >= 50%
    ("fail*4 +5 ok slow", (OPEN, 4, 4, 0, 0, 2)),  # 50% >= 50%
    ("slow ok*3", (CLOSED, 4, 0, 1, 0, 0)),
    ("slow*2 ok*2", (OPEN, 4, 0, 2, 0, 1)),
    ("slowf*4", (OPEN, 4, 4, 4, 0, 1)),
    ("fail*3 +9 ok", (OPEN, 4, 3, 0, 0, 1)),  # at t=9 bucket 0 is still in the window
    ("fail*3 +10 ok", (CLOSED, 1, 0, 0, 0, 0)),  # at t=10 it has left
    ("fail*2 +5 fail*2", (OPEN, 4, 4, 0, 0, 1)),
    ("ok*20 +9.5 fail*4", (CLOSED, 24, 4, 0, 0, 0)),
    ("ok*20 +9.5 fail*4 +0.5", (CLOSED, 4, 4, 0, 0, 0)),  # a look never trips it...
    ("ok*20 +9.5 fail*4 +0.5 ok", (OPEN, 5, 4, 0, 0, 1)),  # ...the next call decides
    ("ok*20 +30 fail*3", (CLOSED, 3, 3, 0, 0, 0)),  # a long gap empties the window
]


@pytest.mark.parametrize(
    ("script", "expected"), TIME_WINDOW_ROWS, ids=[r[0] for r in TIME_WINDOW_ROWS]
)
def test_time_window_state_machine(script: str, expected: tuple[Any, ...]) -> None:
    clock = ManualClock()
    breaker = make(clock)
    run(breaker, clock, script)
    s = breaker.statistics()
    assert (s.state, s.calls, s.failures, s.slow_calls, s.rejected, s.opened) == expected


UNTIMED_ROWS = [row for row in TIME_WINDOW_ROWS if "slow" not in row[0]]


@pytest.mark.parametrize(("script", "expected"), UNTIMED_ROWS, ids=[r[0] for r in UNTIMED_ROWS])
def test_time_window_state_machine_without_timing(script: str, expected: tuple[Any, ...]) -> None:
    clock = ManualClock()
    breaker = make(clock, slow_call_duration=None)  # the hot path's untimed branch
    run(breaker, clock, script)
    s = breaker.statistics()
    assert (s.state, s.calls, s.failures, s.slow_calls, s.rejected, s.opened) == expected


ASYNC_ROWS = [(*row, True) for row in TIME_WINDOW_ROWS] + [(*row, False) for row in UNTIMED_ROWS]


@pytest.mark.parametrize(
    ("script", "expected", "timed"),
    ASYNC_ROWS,
    ids=[f"{r[0]}-{'timed' if r[2] else 'untimed'}" for r in ASYNC_ROWS],
)
async def test_time_window_state_machine_with_acall(
    script: str, expected: tuple[Any, ...], timed: bool
) -> None:
    clock = ManualClock()
    breaker = make(clock, slow_call_duration=1.0 if timed else None)
    await arun(breaker, clock, script)
    s = breaker.statistics()
    assert (s.state, s.calls, s.failures, s.slow_calls, s.rejected, s.opened) == expected


COUNT_WINDOW_ROWS = [
    ("fail ok*4", (CLOSED, 5, 1, 0, 0, 0)),
    ("fail*2 ok*2", (OPEN, 4, 2, 0, 0, 1)),
    ("ok*5 fail*2", (CLOSED, 5, 2, 0, 0, 0)),  # the last 5: ok ok ok fail fail
    ("ok*3 fail*3", (OPEN, 5, 3, 0, 0, 1)),  # the last 5: ok ok fail fail fail
    ("fail*2 +100 fail*2", (OPEN, 4, 4, 0, 0, 1)),  # a count window never forgets by time
    ("fail*4 +5 ok ok ok", (CLOSED, 1, 0, 0, 0, 1)),
    ("slow*2 ok*2", (OPEN, 4, 0, 2, 0, 1)),
    ("ign*3 stop*3 fail*3", (CLOSED, 3, 3, 0, 0, 0)),
]


@pytest.mark.parametrize(
    ("script", "expected"), COUNT_WINDOW_ROWS, ids=[r[0] for r in COUNT_WINDOW_ROWS]
)
def test_count_window_state_machine(script: str, expected: tuple[Any, ...]) -> None:
    clock = ManualClock()
    breaker = make(clock, window=CountWindow(5))
    run(breaker, clock, script)
    s = breaker.statistics()
    assert (s.state, s.calls, s.failures, s.slow_calls, s.rejected, s.opened) == expected


def test_minimum_calls_is_capped_at_a_count_window() -> None:
    clock = ManualClock()
    breaker = make(clock, window=CountWindow(3), minimum_calls=100)
    assert breaker.statistics().minimum_calls == 3
    run(breaker, clock, "fail*3")
    assert breaker.state is OPEN


# Growing waits: (script, state, retry_after, wait_duration) with x2 growth capped at 20 s.
WAIT_ROWS = [
    ("fail*4", OPEN, 5.0, 5.0),
    ("fail*4 +5 fail", OPEN, 10.0, 10.0),
    ("fail*4 +5 fail +9.9", OPEN, pytest.approx(0.1), 10.0),
    ("fail*4 +5 fail +10 fail", OPEN, 20.0, 20.0),
    ("fail*4 +5 fail +10 fail +20 fail", OPEN, 20.0, 20.0),  # capped
    ("fail*4 +5 fail +10 fail +20 ok ok", CLOSED, None, 5.0),  # a close starts over
    ("fail*4 +5 fail +10 fail +20 ok ok fail*4", OPEN, 5.0, 5.0),
    ("fail*4 +5 fail +10 ok", HALF_OPEN, None, 20.0),  # the next open would wait 20 s
]


@pytest.mark.parametrize(("script", "state", "retry_after", "wait"), WAIT_ROWS)
def test_wait_grows_on_repeated_opens_and_starts_over_after_a_close(
    script: str, state: BreakerState, retry_after: float | None, wait: float
) -> None:
    clock = ManualClock()
    breaker = make(clock, wait_multiplier=2.0, max_wait_duration=20.0)
    run(breaker, clock, script)
    s = breaker.statistics()
    assert (s.state, s.retry_after, s.wait_duration) == (state, retry_after, wait)


def test_rejection_carries_the_seconds_left_until_half_open() -> None:
    clock = ManualClock()
    breaker = make(clock)
    run(breaker, clock, "fail*4 +1.5")
    with pytest.raises(BreakerOpenError) as caught:
        breaker.call(lambda: None)
    assert caught.value.name == "dep"
    assert caught.value.retry_after == pytest.approx(3.5)
    assert "retry after 3.500s" in str(caught.value)


def test_half_open_with_every_trial_slot_taken_rejects_without_retry_after() -> None:
    clock = ManualClock()
    breaker = make(clock)
    run(breaker, clock, "fail*4 +5")
    first, second = breaker.allow(), breaker.allow()
    assert breaker.statistics().half_open_in_flight == 2
    with pytest.raises(BreakerOpenError) as caught:
        breaker.allow()
    assert caught.value.retry_after is None
    first.success()
    third = breaker.allow()  # a slot came back
    assert breaker.state is HALF_OPEN  # two trials must succeed
    second.success()
    assert breaker.state is CLOSED
    third.failure(Boom())  # from the half-open period that ended: not counted
    s = breaker.statistics()
    assert (s.state, s.calls) == (CLOSED, 0)


def test_a_trial_failure_reopens_while_other_trials_are_out() -> None:
    clock = ManualClock()
    breaker = make(clock)
    run(breaker, clock, "fail*4 +5")
    first, second = breaker.allow(), breaker.allow()
    first.failure(Boom())
    assert breaker.state is OPEN
    second.success()  # from the half-open period that ended: not counted
    s = breaker.statistics()
    assert (s.state, s.opened, s.half_open_successes) == (OPEN, 2, 0)


def test_outcomes_of_calls_admitted_before_a_transition_are_not_counted() -> None:
    clock = ManualClock()
    breaker = make(clock)
    early = breaker.allow()
    run(breaker, clock, "fail*4 +5 ok ok")  # opened and closed again meanwhile
    assert early.failure(Boom()) is True
    s = breaker.statistics()
    assert (s.state, s.calls, s.failures) == (CLOSED, 0, 0)


# ---------------------------------------------------------------------- permits


def test_permit_is_idempotent_the_first_outcome_counts() -> None:
    clock = ManualClock()
    breaker = make(clock)
    permit = breaker.allow()
    assert isinstance(permit, Permit)
    assert permit.done is False
    assert permit.failure(Boom()) is True
    assert permit.success() is False
    assert permit.failure() is False
    assert permit.ignore() is False
    assert permit.done is True
    s = breaker.statistics()
    assert (s.calls, s.failures) == (1, 1)


def test_permit_records_its_start_and_the_duration_decides_slow() -> None:
    clock = ManualClock(100.0)
    breaker = make(clock)
    permit = breaker.allow()
    assert permit.started == 100.0
    clock.advance(1.5)
    permit.success()
    assert breaker.statistics().slow_calls == 1


def test_permit_as_context_manager_finishes_itself() -> None:
    clock = ManualClock()
    breaker = make(clock)
    with breaker.allow():
        pass
    with pytest.raises(Boom), breaker.allow():
        raise Boom
    with pytest.raises(Ignored), breaker.allow():
        raise Ignored
    with pytest.raises(Stop), breaker.allow():
        raise Stop
    with breaker.allow() as permit:
        permit.failure()  # an explicit outcome wins over the clean exit
    s = breaker.statistics()
    assert (s.calls, s.failures) == (3, 2)


def test_failure_without_an_exception_is_a_failure_and_with_one_is_filtered() -> None:
    clock = ManualClock()
    breaker = make(clock)
    breaker.allow().failure()
    breaker.allow().failure(Ignored())
    breaker.allow().failure(LookupError())  # not a Boom: the dependency answered
    breaker.allow().failure(Stop())
    s = breaker.statistics()
    assert (s.calls, s.failures) == (2, 1)


def test_an_abandoned_trial_permit_gives_its_slot_back() -> None:
    clock = ManualClock()
    breaker = make(clock, half_open_max_calls=1, half_open_successes=1)
    run(breaker, clock, "fail*4 +5")
    permit = breaker.allow()
    with pytest.raises(BreakerOpenError):
        breaker.allow()
    del permit
    gc.collect()
    breaker.allow().success()
    s = breaker.statistics()
    assert (s.state, s.abandoned) == (CLOSED, 1)


def test_an_abandoned_closed_permit_is_only_counted() -> None:
    clock = ManualClock()
    breaker = make(clock)
    breaker.allow()  # dropped at once
    gc.collect()
    s = breaker.statistics()
    assert (s.calls, s.abandoned) == (0, 1)


# ---------------------------------------------------------------------- API forms


def test_call_passes_arguments_and_returns_the_result() -> None:
    breaker = make(ManualClock())

    def add(a: int, b: int, *, c: int = 0) -> int:
        return a + b + c

    assert breaker.call(add, 1, 2, c=3) == 6
    assert breaker.statistics().calls == 1


async def test_acall_passes_arguments_and_returns_the_result() -> None:
    breaker = make(ManualClock())

    async def add(a: int, b: int, *, c: int = 0) -> int:
        await asyncio.sleep(0)
        return a + b + c

    assert await breaker.acall(add, 1, 2, c=3) == 6
    with pytest.raises(Boom):
        await breaker.acall(_araise, Boom())
    s = breaker.statistics()
    assert (s.calls, s.failures) == (2, 1)


async def _araise(exc: BaseException) -> None:
    await asyncio.sleep(0)
    raise exc


async def test_acall_rejects_without_calling_the_function() -> None:
    clock = ManualClock()
    breaker = make(clock)
    run(breaker, clock, "fail*4")
    called = []

    async def dependency() -> None:
        called.append(1)

    with pytest.raises(BreakerOpenError):
        await breaker.acall(dependency)
    assert called == []


async def test_acall_times_slow_calls_on_the_clock() -> None:
    clock = ManualClock()
    breaker = make(clock)

    async def slow() -> None:
        clock.advance(1.5)

    for _ in range(4):
        await breaker.acall(slow)
    s = breaker.statistics()
    assert (s.state, s.slow_calls) == (OPEN, 4)


async def test_cancellation_is_not_a_failure() -> None:
    clock = ManualClock()
    breaker = make(clock, minimum_calls=1)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(breaker.acall(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    s = breaker.statistics()
    assert (s.state, s.calls, s.failures) == (CLOSED, 0, 0)


async def test_a_cancelled_trial_call_gives_its_slot_back() -> None:
    clock = ManualClock()
    breaker = make(clock, half_open_max_calls=1, half_open_successes=1)
    run(breaker, clock, "fail*4 +5")
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(breaker.acall(hang))
    await started.wait()
    assert breaker.statistics().half_open_in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.statistics().half_open_in_flight == 0
    await breaker.acall(asyncio.sleep, 0)
    assert breaker.state is CLOSED


def test_keyboard_interrupt_is_not_a_failure() -> None:
    breaker = make(ManualClock(), minimum_calls=1)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        breaker.call(interrupted)
    assert breaker.statistics().calls == 0


def test_decorator_on_a_sync_function() -> None:
    clock = ManualClock()
    breaker = make(clock, record_exceptions=Exception)

    @breaker
    def divide(a: int, b: int) -> float:
        """Divide."""
        return a / b

    assert divide.__name__ == "divide"
    assert divide.__doc__ == "Divide."
    assert divide(6, 3) == 2.0
    for _ in range(3):
        with pytest.raises(ZeroDivisionError):
            divide(1, 0)
    with pytest.raises(BreakerOpenError):
        divide(6, 3)


async def test_decorator_on_an_async_function() -> None:
    clock = ManualClock()
    breaker = make(clock)

    @breaker
    async def fetch(key: str) -> str:
        await asyncio.sleep(0)
        if key == "bad":
            raise Boom
        return key.upper()

    assert asyncio.iscoroutinefunction(fetch)
    assert await fetch("a") == "A"
    for _ in range(3):
        with pytest.raises(Boom):
            await fetch("bad")
    with pytest.raises(BreakerOpenError):
        await fetch("a")


def test_with_block_records_the_outcome() -> None:
    clock = ManualClock()
    breaker = make(clock)
    with breaker as permit:
        assert isinstance(permit, Permit)
    for _ in range(3):
        with pytest.raises(Boom), breaker:
            raise Boom
    with pytest.raises(BreakerOpenError), breaker:
        raise AssertionError("not reached")
    assert breaker.statistics().failures == 3


def test_nested_with_blocks_of_two_breakers_and_of_one() -> None:
    clock = ManualClock()
    outer, inner = make(clock), make(clock)
    with outer, inner, pytest.raises(Boom), inner:
        raise Boom
    assert (outer.statistics().calls, inner.statistics().calls) == (1, 2)
    assert inner.statistics().failures == 1


def test_leaving_a_with_block_never_entered_is_an_error() -> None:
    breaker = make(ManualClock())
    with pytest.raises(RuntimeError, match="never entered"):
        breaker.__exit__(None, None, None)


async def test_async_with_blocks_in_concurrent_tasks_keep_their_own_permits() -> None:
    clock = ManualClock()
    breaker = make(clock, failure_rate_threshold=1.0)
    gate = asyncio.Event()

    async def guarded(fail: bool) -> None:
        async with breaker:
            await gate.wait()
            if fail:
                raise Boom

    tasks = [asyncio.create_task(guarded(i % 2 == 0)) for i in range(6)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(r, Boom) for r in results) == 3
    s = breaker.statistics()
    assert (s.calls, s.failures) == (6, 3)


def test_satisfies_the_breaker_protocol() -> None:
    assert isinstance(make(ManualClock()), Breaker)


# ---------------------------------------------------------------------- manual control


def test_force_open_rejects_until_reset() -> None:
    clock = ManualClock()
    breaker = make(clock)
    breaker.force_open()
    clock.advance(1000)
    with pytest.raises(BreakerOpenError) as caught:
        breaker.call(lambda: None)
    assert caught.value.retry_after is None
    s = breaker.statistics()
    assert (s.state, s.rejected, s.opened, s.retry_after) == (FORCED_OPEN, 1, 0, None)
    breaker.reset()
    assert breaker.call(lambda: 7) == 7
    assert breaker.state is CLOSED


def test_disable_admits_everything_and_judges_nothing() -> None:
    clock = ManualClock()
    breaker = make(clock)
    breaker.disable()
    run(breaker, clock, "fail*50 ok")
    with breaker.allow() as permit:
        permit.failure()
    s = breaker.statistics()
    assert (s.state, s.calls, s.failures, s.rejected) == (DISABLED, 0, 0, 0)
    breaker.reset()
    run(breaker, clock, "fail*4")
    assert breaker.state is OPEN


def test_reset_closes_with_an_empty_window_and_the_first_wait() -> None:
    clock = ManualClock()
    breaker = make(clock, wait_multiplier=3.0)
    run(breaker, clock, "fail*4 +5 fail")
    assert breaker.statistics().wait_duration == 15.0
    breaker.reset()
    s = breaker.statistics()
    assert (s.state, s.calls, s.wait_duration) == (CLOSED, 0, 5.0)
    run(breaker, clock, "ok*2")
    breaker.reset()  # already closed: empties the window quietly
    assert breaker.statistics().calls == 0


def test_state_read_turns_an_open_breaker_half_open_once_the_wait_is_over() -> None:
    clock = ManualClock()
    changes: list[StateChange] = []
    breaker = make(clock, listeners=[changes.append])
    run(breaker, clock, "fail*4")
    clock.advance(5)
    assert breaker.state is HALF_OPEN
    assert [c.new for c in changes] == [OPEN, HALF_OPEN]
    assert changes[-1].reason == "waited 5 s"


def test_automatic_half_open_turns_on_the_clock_and_cancels_on_reset() -> None:
    clock = ManualClock()
    changes: list[StateChange] = []
    breaker = make(clock, automatic_half_open=True, listeners=[changes.append])
    run(breaker, clock, "fail*4")
    assert clock.pending() == 1
    clock.advance(5)
    assert [c.new for c in changes] == [OPEN, HALF_OPEN]
    assert changes[-1].at == 5.0
    run(breaker, clock, "fail")
    assert clock.pending() == 1
    breaker.reset()
    assert clock.pending() == 0
    clock.advance(100)
    assert breaker.state is CLOSED


# ---------------------------------------------------------------------- listeners


def test_listeners_hear_every_transition_once_in_order_with_a_reason() -> None:
    clock = ManualClock()
    changes: list[StateChange] = []
    breaker = make(clock, listeners=[changes.append])
    run(breaker, clock, "ok*2 fail*2 +5 fail +5 ok ok")
    breaker.force_open()
    breaker.disable()
    breaker.reset()
    assert [(c.old, c.new) for c in changes] == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
        (CLOSED, FORCED_OPEN),
        (FORCED_OPEN, DISABLED),
        (DISABLED, CLOSED),
    ]
    assert [c.reason for c in changes] == [
        "failure rate 50.0% >= 50.0% over 4 calls",
        "waited 5 s",
        "a trial call failed",
        "waited 5 s",
        "2 trial calls succeeded",
        "force_open()",
        "disable()",
        "reset()",
    ]
    assert {c.name for c in changes} == {"dep"}
    assert [c.at for c in changes][:5] == [0.0, 5.0, 5.0, 10.0, 10.0]


def test_a_failing_listener_is_logged_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    heard: list[BreakerState] = []

    def broken(change: StateChange) -> None:
        raise RuntimeError("listener bug")

    breaker = make(clock, listeners=[broken, lambda c: heard.append(c.new)])
    with caplog.at_level(logging.ERROR, logger="distsys.resilience"):
        run(breaker, clock, "fail*4")
    assert heard == [OPEN]
    assert "listener" in caplog.text
    assert "listener bug" in caplog.text


def test_a_listener_may_call_back_into_the_breaker() -> None:
    clock = ManualClock()
    seen: list[tuple[BreakerState, BreakerState]] = []
    breaker = make(clock)

    def listener(change: StateChange) -> None:
        seen.append((change.new, breaker.statistics().state))
        if change.new is OPEN:
            breaker.reset()  # a transition from inside a listener: delivered after this one

    breaker.add_listener(listener)
    run(breaker, clock, "fail*4")
    assert seen == [(OPEN, OPEN), (CLOSED, CLOSED)]


def test_add_and_remove_listeners() -> None:
    clock = ManualClock()
    heard: list[StateChange] = []
    breaker = make(clock)
    breaker.add_listener(heard.append)
    breaker.force_open()
    breaker.remove_listener(heard.append)
    breaker.remove_listener(heard.append)  # not there: a no-op
    breaker.reset()
    assert len(heard) == 1


# ---------------------------------------------------------------------- statistics


def test_statistics_show_the_rates_and_the_window_that_tripped() -> None:
    clock = ManualClock()
    breaker = make(clock)
    run(breaker, clock, "ok slow fail ok")
    s = breaker.statistics()
    assert (s.calls, s.failures, s.slow_calls) == (4, 1, 1)
    assert (s.failure_rate, s.slow_call_rate) == (0.25, 0.25)
    assert (s.minimum_calls, s.half_open_in_flight, s.half_open_successes) == (4, 0, 0)
    run(breaker, clock, "fail*2")
    s = breaker.statistics()
    assert (s.state, s.calls, s.failures, s.failure_rate) == (OPEN, 6, 3, 0.5)


def test_defaults() -> None:
    breaker = CircuitBreaker("svc")
    s = breaker.statistics()
    assert (s.state, s.minimum_calls, s.wait_duration) == (CLOSED, 20, 5.0)
    assert repr(breaker) == "CircuitBreaker('svc', state=closed)"
    assert breaker.name == "svc"


def test_string_window_shorthands() -> None:
    clock = ManualClock()
    counted = CircuitBreaker("c", window="count", minimum_calls=1, clock=clock)
    with pytest.raises(Boom):
        counted.call(_raise, Boom())
    assert counted.state is OPEN
    assert str(TimeWindow()) == "last 10 s in 10 buckets"
    assert str(CountWindow()) == "last 100 calls"


def _raise(exc: BaseException) -> None:
    raise exc


# ---------------------------------------------------------------------- bad input

BAD = [
    ({"failure_rate_threshold": 0}, "failure_rate_threshold", InvalidArgumentError),
    ({"failure_rate_threshold": 1.5}, "failure_rate_threshold", InvalidArgumentError),
    ({"failure_rate_threshold": -0.1}, "failure_rate_threshold", InvalidArgumentError),
    ({"failure_rate_threshold": float("nan")}, "failure_rate_threshold", InvalidArgumentError),
    ({"failure_rate_threshold": "half"}, "failure_rate_threshold", ArgumentTypeError),
    ({"slow_call_rate_threshold": 0.0}, "slow_call_rate_threshold", InvalidArgumentError),
    ({"slow_call_rate_threshold": 2}, "slow_call_rate_threshold", InvalidArgumentError),
    ({"slow_call_duration": 0}, "slow_call_duration", InvalidArgumentError),
    ({"slow_call_duration": -1}, "slow_call_duration", InvalidArgumentError),
    ({"minimum_calls": 0}, "minimum_calls", InvalidArgumentError),
    ({"minimum_calls": 2.5}, "minimum_calls", ArgumentTypeError),
    ({"minimum_calls": True}, "minimum_calls", ArgumentTypeError),
    ({"wait_duration": -1}, "wait_duration", InvalidArgumentError),
    ({"wait_duration": float("inf")}, "wait_duration", InvalidArgumentError),
    ({"wait_multiplier": 0.5}, "wait_multiplier", InvalidArgumentError),
    ({"max_wait_duration": 1.0}, "max_wait_duration", InvalidArgumentError),
    ({"half_open_max_calls": 0}, "half_open_max_calls", InvalidArgumentError),
    ({"half_open_successes": 0}, "half_open_successes", InvalidArgumentError),
    ({"window": "sliding"}, "window", InvalidArgumentError),
    ({"window": 10}, "window", ArgumentTypeError),
    ({"record_exceptions": "ValueError"}, "record_exceptions", ArgumentTypeError),
    ({"record_exceptions": (ValueError, int)}, "record_exceptions", ArgumentTypeError),
    ({"ignore_exceptions": BaseException}, "ignore_exceptions", ArgumentTypeError),
    ({"listeners": [print, 3]}, "listeners", ArgumentTypeError),
    ({"listeners": print}, "listeners", ArgumentTypeError),
    ({"clock": "now"}, "clock", ArgumentTypeError),
]


@pytest.mark.parametrize(("changes", "field", "error"), BAD, ids=[b[1] for b in BAD])
def test_bad_settings_fail_at_construction_naming_the_field(
    changes: dict[str, Any], field: str, error: type[InvalidArgumentError]
) -> None:
    with pytest.raises(error) as caught:
        CircuitBreaker("dep", **changes)
    assert caught.value.field == field
    assert field in str(caught.value)
    assert caught.value.accepted in str(caught.value)


@pytest.mark.parametrize(
    ("make_window", "field"),
    [
        (lambda: TimeWindow(0), "seconds"),
        (lambda: TimeWindow(-5.0), "seconds"),
        (lambda: TimeWindow(10, 0), "buckets"),
        (lambda: TimeWindow(10, 2.5), "buckets"),
        (lambda: CountWindow(0), "calls"),
        (lambda: CountWindow("10"), "calls"),
    ],
)
def test_bad_windows_fail_naming_the_field(make_window: Any, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        make_window()
    assert caught.value.field == field


@pytest.mark.parametrize("name", ["", None, 3])
def test_a_breaker_needs_a_name(name: Any) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        CircuitBreaker(name)
    assert caught.value.field == "name"


def test_a_predicate_may_choose_the_failures() -> None:
    clock = ManualClock()
    breaker = make(
        clock,
        record_exceptions=lambda exc: getattr(exc, "status", 0) >= 500,
        ignore_exceptions=(),
    )

    class HTTPError(Exception):
        def __init__(self, status: int) -> None:
            self.status = status

    for status in (404, 404, 404, 503, 502):
        with pytest.raises(HTTPError):
            breaker.call(_raise, HTTPError(status))
    assert breaker.state is CLOSED  # 2 of 5
    with pytest.raises(HTTPError):
        breaker.call(_raise, HTTPError(500))
    s = breaker.statistics()
    assert (s.state, s.calls, s.failures) == (OPEN, 6, 3)
