"""``select``: wait on several channel operations and perform exactly one."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any, Final, Protocol

from distsys.clock import Clock, MonotonicClock, TimerHandle
from distsys.concurrency._chan import (
    EMPTY,
    Chan,
    check_timeout,
    defer_cancellation,
    reject_blocking_in_loop,
)
from distsys.concurrency._waiter import (
    ABANDONED,
    CLOSED,
    DONE,
    TIMEOUT,
    WAITING,
    AsyncWaiter,
    Entry,
    SelectWaiter,
    ThreadWaiter,
)
from distsys.errors import ArgumentTypeError, ChannelClosedError, DeadlineExceededError

__all__ = ["DEFAULT", "Signal", "select", "select_blocking"]

DEFAULT: Final = -1
"""The index ``select(..., default=True)`` returns when no case was ready."""

_NEVER, _RECV, _SEND, _SIGNAL = range(4)
_FIRED, _ENROLLED, _DECIDED = range(3)

_CASE_FORMS = (
    "ch.recv, (ch.send, value), a context's done (ctx.done), or None for a case that is never ready"
)


class Signal(Protocol):
    """Something ``select`` can wait on that fires once and stays fired (``ctx.done``)."""

    def _select_channel(self) -> Chan[Any]:
        """Return a channel that is closed when the signal fires."""
        ...

    def _select_arm(self) -> TimerHandle | None:
        """Start a timer that fires the signal when it falls due, if it has a deadline."""
        ...


_RECV_FUNCS = frozenset({Chan.recv, Chan.recv_blocking, Chan.recv_nowait})
_SEND_FUNCS = frozenset({Chan.send, Chan.send_blocking, Chan.send_nowait})

_Case = tuple[int, Any, Any]  # kind, channel or signal, value to send


def _parse(cases: tuple[Any, ...]) -> list[_Case]:
    parsed: list[_Case] = []
    for i, case in enumerate(cases):
        target = getattr(case, "__self__", None)
        if isinstance(target, Chan) and getattr(case, "__func__", None) in _RECV_FUNCS:
            parsed.append((_RECV, target, None))
        elif isinstance(case, tuple) and len(case) == 2:
            op, value = case
            target = getattr(op, "__self__", None)
            if isinstance(target, Chan) and getattr(op, "__func__", None) in _SEND_FUNCS:
                parsed.append((_SEND, target, value))
            elif op is None:
                parsed.append((_NEVER, None, None))
            else:
                raise ArgumentTypeError(f"cases[{i}]", case, _CASE_FORMS)
        elif case is None:
            parsed.append((_NEVER, None, None))
        elif hasattr(case, "_select_channel") and hasattr(case, "_select_arm"):
            parsed.append((_SIGNAL, case, None))
        else:
            raise ArgumentTypeError(f"cases[{i}]", case, _CASE_FORMS)
    return parsed


def _order(n: int, rng: random.Random | None) -> list[int]:
    order = list(range(n))
    if n > 1:
        (rng or random).shuffle(order)
    return order


def _poll(cases: list[_Case], order: list[int]) -> tuple[int, Any] | None:
    """Perform the first ready case (in ``order``) without waiting; None if none is."""
    for i in order:
        kind, ch, value = cases[i]
        if kind == _NEVER:
            continue
        if kind == _SIGNAL:
            if ch._select_channel().closed:
                return i, None
            continue
        with ch._lock:
            if kind == _RECV:
                got = ch._take_locked()
                if got is not EMPTY:
                    return i, got
                if ch._closed:
                    raise ChannelClosedError("receive from a closed channel", index=i)
            else:
                if ch._closed:
                    raise ChannelClosedError("send on a closed channel", index=i)
                if ch._give_locked(value):
                    return i, None
    return None


def _commit_both(sel: SelectWaiter, index: int, value: Any, peer: Entry, peer_value: Any) -> int:
    """Decide two selects at once (a select meeting another select on one channel).

    Both locks are taken in a fixed order (by id) so two selects meeting on two channels
    cannot deadlock. Returns _FIRED when both were decided, _DECIDED when ``sel`` was
    already decided elsewhere, _ENROLLED when only the peer was (it is stale).
    """
    other = peer.sel
    first, second = (sel, other) if id(sel) < id(other) else (other, sel)
    with first.lock, second.lock:
        if sel.state != WAITING:
            return _DECIDED
        if other.state != WAITING:
            return _ENROLLED
        sel.state, sel.index, sel.value = DONE, index, value
        other.state, other.index, other.value = DONE, peer.index, peer_value
    other.wake()
    return _FIRED


def _enroll_recv(sel: SelectWaiter, i: int, ch: Chan[Any], entries: list[Any]) -> int:
    """Under ``ch``'s lock: receive now if possible, else park an entry."""
    outcome = _recv_waiting_value(sel, i, ch)
    if outcome != _ENROLLED:
        return outcome
    sendq = ch._sendq
    for w in list(sendq):
        if w.sel is sel:
            continue  # a select never meets itself
        if w.sel is None:
            if not sel.commit(i, DONE, w.value):
                return _DECIDED
            sendq.remove(w)
            w.value = None
            w.state = DONE
            w.wake()
            return _FIRED
        outcome = _commit_both(sel, i, w.value, w, None)
        if outcome != _ENROLLED:
            if outcome == _FIRED:
                sendq.remove(w)
            return outcome
        sendq.remove(w)  # stale: its select was decided elsewhere
    if ch._closed:
        return _FIRED if sel.commit(i, CLOSED, None) else _DECIDED
    entry = Entry(sel, i, None)
    while True:
        ch._recvq.append(entry)
        if not (ch._buf or ch._front):
            entries.append((ch, ch._recvq, entry))
            return _ENROLLED
        ch._recvq.remove(entry)  # a lock-free sender buffered a value meanwhile
        outcome = _recv_waiting_value(sel, i, ch)
        if outcome != _ENROLLED:
            return outcome


def _recv_waiting_value(sel: SelectWaiter, i: int, ch: Chan[Any]) -> int:
    """Under ``ch``'s lock: take a buffered value for ``sel`` if there is one."""
    value = ch._pop_value_locked()
    if value is EMPTY:
        return _ENROLLED
    if sel.commit(i, DONE, value):
        return _FIRED
    ch._front.appendleft(value)  # decided elsewhere meanwhile: the value stays first
    return _DECIDED


def _send_to_free_slot(sel: SelectWaiter, i: int, ch: Chan[Any], value: Any) -> int:
    """Under ``ch``'s lock: buffer ``value`` for ``sel`` if a slot is free."""
    free = ch._free
    if not free:
        return _ENROLLED
    try:
        free.pop()
    except IndexError:
        return _ENROLLED
    if not sel.commit(i, DONE, None):
        free.append(None)
        return _DECIDED
    ch._buf.append(value)
    return _FIRED


def _enroll_send(sel: SelectWaiter, i: int, ch: Chan[Any], value: Any, entries: list[Any]) -> int:
    """Under ``ch``'s lock: send now if possible, else park an entry."""
    if ch._closed:
        return _FIRED if sel.commit(i, CLOSED, None) else _DECIDED
    recvq = ch._recvq
    for w in list(recvq):
        if w.sel is sel:
            continue
        if w.sel is None:
            if not sel.commit(i, DONE, None):
                return _DECIDED
            recvq.remove(w)
            w.value = value
            w.state = DONE
            w.wake()
            return _FIRED
        outcome = _commit_both(sel, i, None, w, value)
        if outcome != _ENROLLED:
            if outcome == _FIRED:
                recvq.remove(w)
            return outcome
        recvq.remove(w)
    outcome = _send_to_free_slot(sel, i, ch, value)
    if outcome != _ENROLLED:
        return outcome
    entry = Entry(sel, i, value)
    while True:
        ch._sendq.append(entry)
        if not ch._free:
            entries.append((ch, ch._sendq, entry))
            return _ENROLLED
        ch._sendq.remove(entry)  # a lock-free receiver freed a slot meanwhile
        outcome = _send_to_free_slot(sel, i, ch, value)
        if outcome != _ENROLLED:
            return outcome


def _enroll(
    cases: list[_Case], order: list[int], sel: SelectWaiter
) -> tuple[list[Any], list[TimerHandle]]:
    """Park ``sel`` on every case, unless one is ready by now (then it is decided)."""
    entries: list[Any] = []
    timers: list[TimerHandle] = []
    for i in order:
        kind, ch, value = cases[i]
        if kind == _NEVER:
            continue
        if kind == _SIGNAL:
            timer = ch._select_arm()
            if timer is not None:
                timers.append(timer)
            ch = ch._select_channel()
        with ch._lock:
            if kind == _SEND:
                outcome = _enroll_send(sel, i, ch, value, entries)
            else:
                outcome = _enroll_recv(sel, i, ch, entries)
        if outcome != _ENROLLED:
            break
    return entries, timers


def _leave(entries: list[Any], timers: list[TimerHandle]) -> None:
    for timer in timers:
        timer.cancel()
    for ch, queue, entry in entries:
        # An entry is gone already if the party that decided the select took it off.
        with ch._lock, contextlib.suppress(ValueError):
            queue.remove(entry)


def _outcome(cases: list[_Case], sel: SelectWaiter) -> tuple[int, Any]:
    state, i = sel.state, sel.index
    if state == TIMEOUT:
        raise DeadlineExceededError("select timed out")
    kind = cases[i][0]
    if kind == _SIGNAL:
        return i, None
    if state == CLOSED:
        action = "send on" if kind == _SEND else "receive from"
        raise ChannelClosedError(f"{action} a closed channel", index=i)
    return i, sel.value if kind == _RECV else None


def _undo_recv(cases: list[_Case], sel: SelectWaiter) -> None:
    """The select was cancelled after receiving: put the value back."""
    if sel.state == DONE and cases[sel.index][0] == _RECV:
        cases[sel.index][1]._rehome(sel.value)


def _timeout_commit(sel: SelectWaiter) -> None:
    if sel.commit(DEFAULT, TIMEOUT, None):
        sel.wake()


async def select(
    *cases: Any,
    default: bool = False,
    timeout: float | None = None,
    clock: Clock | None = None,
    rng: random.Random | None = None,
) -> tuple[int, Any]:
    """Wait until one of several channel operations can proceed, and perform only it.

    Each case is ``ch.recv`` (receive from ``ch``), ``(ch.send, value)`` (send ``value``
    on ``ch``), a context's ``done`` (fires when the context ends), or ``None`` (never
    ready, like Go's nil channel; keeps the positions of the other cases). When several
    cases are ready, one is chosen uniformly at random. Exactly one case happens: no
    other case takes or delivers a value.

    Example::

        index, value = await select(jobs.recv, (results.send, r), ctx.done, timeout=1.0)

    Args:
        *cases: the operations to wait on.
        default: if True, do not wait: return ``(DEFAULT, None)`` when no case is ready.
        timeout: seconds to wait at most (>= 0), or None to wait without limit.
        clock: time source for ``timeout`` (default: the monotonic clock).
        rng: random source for choosing among ready cases (default: :mod:`random`).

    Returns:
        ``(index, value)``: the position of the case that happened, and the value received
        (None for a send or a done signal).

    Raises:
        ChannelClosedError: the chosen case is a send on a closed channel or a receive from
            a closed, drained one; ``.index`` says which.
        DeadlineExceededError: ``timeout`` seconds passed and no case happened.
        ArgumentTypeError: a case is not one of the forms above.
        InvalidArgumentError: ``timeout`` is negative.
    """
    parsed, order = _prepare(cases, timeout, rng)
    ready = _poll(parsed, order)
    if ready is not None:
        return ready
    if default:
        return DEFAULT, None
    if timeout == 0:
        raise DeadlineExceededError("select timed out")
    sel = SelectWaiter(AsyncWaiter())
    entries, timers = _enroll(parsed, order, sel)
    if timeout is not None and sel.state == WAITING:
        timers.append((clock or MonotonicClock()).call_later(timeout, _timeout_callback(sel)))
    fut = sel.waker.fut  # type: ignore[union-attr]
    try:
        if sel.state == WAITING:
            await fut
    except asyncio.CancelledError as exc:
        _leave(entries, timers)
        if sel.commit(DEFAULT, ABANDONED, None):
            raise
        if sel.state == DONE and parsed[sel.index][0] == _SEND:
            defer_cancellation(exc)  # the value was delivered: the select completed
            return sel.index, None
        _undo_recv(parsed, sel)
        raise
    _leave(entries, timers)
    return _outcome(parsed, sel)


def select_blocking(
    *cases: Any,
    default: bool = False,
    timeout: float | None = None,
    clock: Clock | None = None,
    rng: random.Random | None = None,
) -> tuple[int, Any]:
    """Blocking form of :func:`select` for threads; same cases, arguments and results.

    Raises:
        BlockingCallInLoopError: called on a thread that runs an event loop and it would
            have to wait.
    """
    parsed, order = _prepare(cases, timeout, rng)
    ready = _poll(parsed, order)
    if ready is not None:
        return ready
    if default:
        return DEFAULT, None
    if timeout == 0:
        raise DeadlineExceededError("select timed out")
    reject_blocking_in_loop("select_blocking")
    waker = ThreadWaiter()
    sel = SelectWaiter(waker)
    entries, timers = _enroll(parsed, order, sel)
    clock = clock or MonotonicClock()
    try:
        if sel.state == WAITING:
            if timeout is None:
                waker.lock.acquire()
            elif type(clock) is MonotonicClock:
                if not waker.lock.acquire(timeout=timeout):
                    sel.commit(DEFAULT, TIMEOUT, None)
            else:
                timers.append(clock.call_later(timeout, _timeout_callback(sel)))
                waker.lock.acquire()
    except BaseException:
        _leave(entries, timers)
        if not sel.commit(DEFAULT, ABANDONED, None):
            _undo_recv(parsed, sel)
        raise
    _leave(entries, timers)
    return _outcome(parsed, sel)


def _prepare(
    cases: tuple[Any, ...], timeout: float | None, rng: random.Random | None
) -> tuple[list[_Case], list[int]]:
    check_timeout(timeout)
    parsed = _parse(cases)
    return parsed, _order(len(parsed), rng)


def _timeout_callback(sel: SelectWaiter) -> Callable[[], None]:
    return lambda: _timeout_commit(sel)
