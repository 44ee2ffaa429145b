"""Context: the tree, cancellation, deadlines, values, done."""

from __future__ import annotations

import asyncio
import threading

import pytest

from distsys.context import (
    Context,
    background,
    with_cancel,
    with_deadline,
    with_timeout,
    with_value,
)
from distsys.errors import (
    ArgumentTypeError,
    CanceledError,
    DeadlineExceededError,
    InvalidArgumentError,
)
from distsys.testing import ManualClock
from tests.conftest import wait_until


def test_background_never_ends() -> None:
    ctx = background()
    assert ctx.err() is None
    assert ctx.deadline() is None
    assert ctx.remaining() is None
    assert not ctx.done.is_set()
    assert ctx.value("anything") is None


def test_cancel_ends_the_context_and_every_descendant() -> None:
    root, cancel_root = with_cancel(background())
    child, _ = with_cancel(root)
    grandchild = with_value(child, "k", 1)
    sibling, cancel_sibling = with_cancel(background())
    cancel_root()
    assert isinstance(root.err(), CanceledError)
    assert isinstance(child.err(), CanceledError)
    assert isinstance(grandchild.err(), CanceledError)
    assert grandchild.done.is_set()
    assert sibling.err() is None
    cancel_sibling()


def test_cancelling_a_child_leaves_the_parent_alone() -> None:
    parent, cancel_parent = with_cancel(background())
    child, cancel_child = with_cancel(parent)
    cancel_child()
    assert child.err() is not None
    assert parent.err() is None
    cancel_parent()


def test_cancel_is_idempotent_and_the_first_reason_stays() -> None:
    ctx, cancel = with_cancel(background())
    reason = RuntimeError("shutting down")
    cancel(reason)
    cancel(ValueError("later"))
    err = ctx.err()
    assert isinstance(err, CanceledError)
    assert err.cause is reason


def test_child_of_an_ended_parent_is_born_ended() -> None:
    parent, cancel = with_cancel(background())
    cancel()
    child, _ = with_cancel(parent)
    assert isinstance(child.err(), CanceledError)


def test_deadline_expires_on_the_injected_clock() -> None:
    clock = ManualClock(100.0)
    ctx, _ = with_timeout(background(clock=clock), 2.5)
    assert ctx.deadline() == 102.5
    assert ctx.remaining() == 2.5
    clock.advance(2.4)
    assert ctx.err() is None
    clock.advance(0.1)
    err = ctx.err()
    assert isinstance(err, DeadlineExceededError)
    assert isinstance(err, TimeoutError)
    assert ctx.done.is_set()


def test_a_child_deadline_is_never_later_than_its_parent() -> None:
    clock = ManualClock()
    parent, _ = with_timeout(background(clock=clock), 1.0)
    later, _ = with_timeout(parent, 10.0)
    earlier, _ = with_deadline(parent, 0.5)
    assert later.deadline() == 1.0
    assert earlier.deadline() == 0.5
    clock.advance(1.0)
    assert isinstance(later.err(), DeadlineExceededError)


def test_a_parent_deadline_ends_children_even_when_only_the_parent_is_asked() -> None:
    clock = ManualClock()
    parent, _ = with_timeout(background(clock=clock), 1.0)
    child, _ = with_cancel(parent)
    clock.advance(1.0)
    assert isinstance(parent.err(), DeadlineExceededError)
    assert isinstance(child.err(), DeadlineExceededError)


def test_values_are_found_up_the_tree_and_shadowed_below() -> None:
    class Key:
        pass

    key = Key()
    root = with_value(background(), key, "outer")
    middle, cancel = with_cancel(root)
    inner = with_value(middle, key, "inner")
    other = with_value(inner, "user", "ada")
    assert root.value(key) == "outer"
    assert middle.value(key) == "outer"
    assert other.value(key) == "inner"
    assert other.value("user") == "ada"
    assert other.value("missing", "fallback") == "fallback"
    cancel()
    assert isinstance(other.err(), CanceledError)


def test_value_contexts_share_the_parent_cancellation() -> None:
    parent, cancel = with_cancel(background())
    child = with_value(parent, "a", 1)
    cancel()
    assert child.done.is_set()


@pytest.mark.parametrize("timeout", [-1, -0.1, float("nan")])
def test_negative_timeout_is_refused(timeout: float) -> None:
    with pytest.raises(InvalidArgumentError, match="timeout"):
        with_timeout(background(), timeout)


def test_wrong_parent_is_refused() -> None:
    with pytest.raises(ArgumentTypeError, match="parent"):
        with_cancel(None)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="deadline"):
        with_deadline(background(), "soon")  # type: ignore[arg-type]


def test_zero_timeout_is_already_expired() -> None:
    ctx, _ = with_timeout(background(clock=ManualClock()), 0)
    assert isinstance(ctx.err(), DeadlineExceededError)


def test_repr_shows_state() -> None:
    ctx, cancel = with_timeout(background(clock=ManualClock()), 3)
    assert "live" in repr(ctx)
    cancel()
    assert "CanceledError" in repr(ctx)
    assert isinstance(ctx, Context)


# ----------------------------------------------------------------------- done


async def test_done_can_be_awaited_until_cancel() -> None:
    ctx, cancel = with_cancel(background())
    waiter = asyncio.create_task(ctx.done.wait())
    awaited = asyncio.create_task(_await_done(ctx))
    for _ in range(3):
        await asyncio.sleep(0)
    assert not waiter.done()
    cancel()
    await asyncio.gather(waiter, awaited)


async def _await_done(ctx: Context) -> None:
    await ctx.done


async def test_done_wakes_at_the_deadline_of_a_manual_clock() -> None:
    clock = ManualClock()
    ctx, _ = with_timeout(background(clock=clock), 3.0)
    waiter = asyncio.create_task(ctx.done.wait())
    for _ in range(3):
        await asyncio.sleep(0)
    clock.advance(3.0)
    await waiter
    assert isinstance(ctx.err(), DeadlineExceededError)


def test_done_can_be_waited_on_from_a_thread() -> None:
    ctx, cancel = with_cancel(background())
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(ctx.done.wait_blocking()))
    thread.start()
    wait_until(lambda: ctx._node._chan is not None)
    cancel()
    thread.join(5)
    assert results == [True]


def test_thread_wait_on_done_honours_the_deadline() -> None:
    clock = ManualClock()
    ctx, _ = with_timeout(background(clock=clock), 2.0)
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(ctx.done.wait_blocking()))
    thread.start()
    wait_until(lambda: clock.pending() >= 1)
    clock.advance(2.0)
    thread.join(5)
    assert results == [True]


def test_thread_wait_on_done_can_give_up() -> None:
    clock = ManualClock()
    ctx, cancel = with_cancel(background(clock=clock))
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(ctx.done.wait_blocking(1.0)))
    thread.start()
    wait_until(lambda: clock.pending() >= 1)
    clock.advance(1.0)
    thread.join(5)
    assert results == [False]
    cancel()
    assert ctx.done.wait_blocking(0)


def test_cancel_from_another_thread_wakes_an_async_waiter() -> None:
    ctx, cancel = with_cancel(background())

    async def main() -> None:
        waiter = asyncio.create_task(ctx.done.wait())
        await asyncio.sleep(0)
        threading.Thread(target=cancel).start()
        await asyncio.wait_for(waiter, 10)

    asyncio.run(main())
