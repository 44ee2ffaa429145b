"""The lifecycle state machine: allowed moves, refused moves, listeners, waits."""

from __future__ import annotations

import asyncio

import pytest

from distsys.errors import DistsysError
from distsys.service import Lifecycle, LifecycleError, State, Transition

TRANSITIONS = Lifecycle.TRANSITIONS

S = State


def test_a_new_lifecycle_is_new_and_not_failed() -> None:
    lifecycle = Lifecycle("orders")
    assert lifecycle.state is S.NEW
    assert lifecycle.failure is None
    assert not S.NEW.final
    assert S.TERMINATED.final
    assert S.FAILED.final


@pytest.mark.parametrize(
    "path",
    [
        [S.STARTING, S.RUNNING, S.STOPPING, S.TERMINATED],
        [S.TERMINATED],  # stopped before it was started
        [S.STARTING, S.STOPPING, S.TERMINATED],  # stopped while starting
    ],
)
def test_the_happy_paths_are_allowed(path: list[State]) -> None:
    lifecycle = Lifecycle()
    for state in path:
        lifecycle.transition(state)
    assert lifecycle.state is path[-1]


@pytest.mark.parametrize(
    "before", [[S.STARTING], [S.STARTING, S.RUNNING], [S.STARTING, S.RUNNING, S.STOPPING]]
)
def test_failing_is_allowed_from_starting_running_and_stopping(before: list[State]) -> None:
    lifecycle = Lifecycle()
    for state in before:
        lifecycle.transition(state)
    boom = RuntimeError("boom")
    lifecycle.transition(S.FAILED, boom)
    assert lifecycle.state is S.FAILED
    assert lifecycle.failure is boom


def test_every_move_outside_the_table_is_refused_naming_both_states() -> None:
    for old in State:
        for new in State:
            if new in TRANSITIONS[old]:
                continue
            lifecycle = Lifecycle("orders")
            lifecycle._state = old  # put it there directly: the table is what is tested
            with pytest.raises(LifecycleError) as caught:
                lifecycle.transition(new, RuntimeError() if new is S.FAILED else None)
            assert f"from {old.name} to {new.name}" in str(caught.value)
            assert caught.value.state is old
            assert lifecycle.state is old


def test_the_final_states_allow_nothing() -> None:
    assert TRANSITIONS[S.TERMINATED] == frozenset()
    assert TRANSITIONS[S.FAILED] == frozenset()
    lifecycle = Lifecycle()
    lifecycle.transition(S.TERMINATED)
    with pytest.raises(LifecycleError, match="it is final"):
        lifecycle.transition(S.STARTING)


def test_a_lifecycle_error_is_a_distsys_runtime_error() -> None:
    assert issubclass(LifecycleError, DistsysError)
    assert issubclass(LifecycleError, RuntimeError)


def test_failed_needs_a_cause_and_only_failed_takes_one() -> None:
    lifecycle = Lifecycle()
    lifecycle.transition(S.STARTING)
    with pytest.raises(TypeError, match="failure"):
        lifecycle.transition(S.FAILED)
    with pytest.raises(TypeError, match="failure"):
        lifecycle.transition(S.RUNNING, RuntimeError())
    assert lifecycle.state is S.STARTING


def test_listeners_hear_each_later_transition_in_order() -> None:
    lifecycle = Lifecycle()
    heard: list[Transition] = []
    lifecycle.transition(S.STARTING)  # before the listener: not replayed
    remove = lifecycle.add_listener(heard.append)
    lifecycle.transition(S.RUNNING)
    lifecycle.transition(S.STOPPING)
    remove()
    lifecycle.transition(S.TERMINATED)
    assert heard == [Transition(S.STARTING, S.RUNNING), Transition(S.RUNNING, S.STOPPING)]


def test_a_failing_listener_does_not_stop_the_transition_or_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lifecycle = Lifecycle("orders")
    heard: list[State] = []

    def broken(change: Transition) -> None:
        raise ValueError("listener bug")

    lifecycle.add_listener(broken)
    lifecycle.add_listener(lambda change: heard.append(change.new))
    lifecycle.transition(S.STARTING)
    assert lifecycle.state is S.STARTING
    assert heard == [S.STARTING]
    assert "listener" in caplog.text


def test_a_failure_reaches_listeners() -> None:
    lifecycle = Lifecycle()
    heard: list[Transition] = []
    lifecycle.add_listener(heard.append)
    lifecycle.transition(S.STARTING)
    boom = OSError("address in use")
    lifecycle.transition(S.FAILED, boom)
    assert heard[-1] == Transition(S.STARTING, S.FAILED, boom)


async def test_wait_for_returns_when_the_state_is_reached() -> None:
    lifecycle = Lifecycle()
    waiter = asyncio.create_task(lifecycle.wait_for(S.RUNNING))
    await asyncio.sleep(0)
    assert not waiter.done()
    lifecycle.transition(S.STARTING)
    await asyncio.sleep(0)
    assert not waiter.done()
    lifecycle.transition(S.RUNNING)
    assert await asyncio.wait_for(waiter, 5) is S.RUNNING
    assert await lifecycle.wait_for(S.RUNNING) is S.RUNNING  # already there


async def test_wait_for_any_of_several_states() -> None:
    lifecycle = Lifecycle()
    waiter = asyncio.create_task(lifecycle.wait_for(S.TERMINATED, S.FAILED))
    await asyncio.sleep(0)
    lifecycle.transition(S.STARTING)
    lifecycle.transition(S.FAILED, RuntimeError("boom"))
    assert await asyncio.wait_for(waiter, 5) is S.FAILED


async def test_waiting_for_a_state_that_can_no_longer_be_reached_raises() -> None:
    lifecycle = Lifecycle("orders")
    waiter = asyncio.create_task(lifecycle.wait_for(S.RUNNING))
    await asyncio.sleep(0)
    lifecycle.transition(S.STARTING)
    boom = RuntimeError("boom")
    lifecycle.transition(S.FAILED, boom)
    with pytest.raises(LifecycleError, match="can no longer reach RUNNING") as caught:
        await asyncio.wait_for(waiter, 5)
    assert caught.value.failure is boom
    with pytest.raises(LifecycleError):
        await lifecycle.wait_for(S.STOPPING)  # refused at once too


async def test_a_cancelled_wait_leaves_no_waiter_behind() -> None:
    lifecycle = Lifecycle()
    waiter = asyncio.create_task(lifecycle.wait_for(S.RUNNING))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert lifecycle._waiters == []


def test_bad_arguments_are_refused() -> None:
    lifecycle = Lifecycle()
    with pytest.raises(TypeError, match="new"):
        lifecycle.transition("running")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="listener"):
        lifecycle.add_listener(42)  # type: ignore[arg-type]
