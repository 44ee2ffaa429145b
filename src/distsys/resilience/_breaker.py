"""CircuitBreaker: fail fast while a dependency is failing, probe it, recover.

The decisions live in :class:`~distsys.resilience._breaker_machine.BreakerMachine`; this
module is the driver: the lock, the clock, permits, listeners, and the hot path.

The hot path. While the breaker is closed over a time window, a call that succeeds,
is not slow and ends in the current bucket — nearly every call of a healthy service —
takes no lock: it reads the state token, reads the clock once (twice with a
``slow_call_duration``, to time the call), and bumps an ``itertools.count``: ``next()``
on it is one C call, so it is atomic under the GIL and no increment is ever lost.
Everything else — failures, slow calls, the first call of a new bucket, every call in
any other state, every call over a count window — takes the lock and goes through the
machine. Why that is safe:

* A plain success can never trip the breaker, except by bringing the window up to
  ``minimum_calls`` while it holds failures; the machine works out the count at which
  that happens (``check_at``) and the hot path compares ``next()``'s result with it.
* The window's plain successes are the counter's value minus the mark its oldest bucket
  took when it became current (see ``_breaker_window.py``); the lock holder reads the
  counter with ``next()`` too and subtracts its own reads (``_phantom``).
* The fast path is enabled by one attribute, the token of the current closed state
  (None in every other state). A call that read it just before the breaker opened and
  then succeeds bumps the counter of a window nobody judges while the breaker is open;
  the next close starts a new window from the counter's value then. So a success that
  raced a transition is, at worst, not counted, or counted in the next closed window;
  failures and slow calls carry the token and are dropped if the state has changed.

Without a GIL (free-threaded builds), every call takes the lock.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any, ParamSpec, TypeVar

from distsys.clock import Clock, MonotonicClock, TimerHandle
from distsys.errors import BreakerOpenError
from distsys.resilience._breaker_base import BreakerBase
from distsys.resilience._breaker_checks import (
    IGNORED,
    SUCCESS,
    Classifier,
    ExceptionFilter,
    check_clock,
    check_name,
)
from distsys.resilience._breaker_listeners import Listener, Listeners
from distsys.resilience._breaker_machine import (
    CLOSED_CALL,
    FREE_CALL,
    REJECTED,
    BreakerMachine,
)
from distsys.resilience._breaker_permit import CircuitPermit
from distsys.resilience._breaker_settings import make_settings
from distsys.resilience._breaker_state import BreakerState, BreakerStatistics
from distsys.resilience._breaker_window import CountWindow, TimeWindow, make_counts

__all__ = ["CircuitBreaker"]

P = ParamSpec("P")
R = TypeVar("R")
_GIL = getattr(sys, "_is_gil_enabled", lambda: True)()


class CircuitBreaker(BreakerBase):
    """Stop calling a dependency that keeps failing; let a few trial calls find it healed.

    Closed, the breaker judges the calls in its rolling window — the last ``seconds`` of a
    :class:`TimeWindow` or the last ``calls`` of a :class:`CountWindow` — and opens when,
    with at least ``minimum_calls`` in the window, the share of failures reaches
    ``failure_rate_threshold`` or the share of slow calls (longer than
    ``slow_call_duration``) reaches ``slow_call_rate_threshold``. Open, it rejects every
    call with :class:`~distsys.errors.BreakerOpenError` (``retry_after`` = the seconds
    left) for ``wait_duration``, which grows by ``wait_multiplier`` on each open in a row,
    up to ``max_wait_duration``, and starts over after a successful close. Then it is
    half-open: it admits at most ``half_open_max_calls`` trial calls at once; a failed
    trial reopens it; once ``half_open_successes`` trials succeed it closes with an empty
    window (or reopens, if the slow ones among them reach the slow-call threshold).
    ``force_open()``, ``disable()`` and ``reset()`` override it by hand. The window is
    judged after every recorded call — a success too, since it can bring the window to
    the minimum — and never on a mere look (``state``, ``statistics()``).

    What counts: an exception matching ``ignore_exceptions`` is no outcome at all; one
    matching ``record_exceptions`` (default: every ``Exception``) is a failure; any other
    is a success. A ``BaseException`` that is not an ``Exception`` — cancellation,
    ``KeyboardInterrupt`` — is never a failure: the call is simply not counted.

    Use: ``breaker.call(fn, ...)``, ``await breaker.acall(fn, ...)``, ``@breaker``,
    ``with breaker:`` / ``async with breaker:``, or ``permit = breaker.allow()`` then
    ``permit.success()`` / ``permit.failure(exc)``. A permit dropped unfinished gives its
    trial slot back when it is garbage-collected (and counts in ``abandoned``), but
    finish it: ``with breaker.allow() as permit:`` does that for you.

    The wait ends lazily — at the next call, ``state`` read or ``statistics()`` — unless
    ``automatic_half_open=True``, which schedules the transition on the clock.
    Listeners get a :class:`StateChange` per transition, in order, outside the lock, on
    whichever thread delivers it; one that raises is logged and skipped.

    Thread-safe: threads and tasks may share one breaker. Transitions and every
    recorded outcome but a plain success run under one lock; a plain success while
    closed over a time window takes no lock (atomic under the GIL, see the module
    docstring). Nothing here blocks or awaits, so the lock is fine in coroutines.

    Args:
        name: the breaker's name, in errors, statistics and listeners.
        window: ``TimeWindow(seconds=10, buckets=10)`` (the default, also ``"time"``) or
            ``CountWindow(calls=100)`` (also ``"count"``).
        failure_rate_threshold: the failure share that opens it, in (0, 1].
        slow_call_rate_threshold: the slow-call share that opens it, in (0, 1].
        slow_call_duration: seconds after which a call is slow (> 0), or None (the
            default) for never: calls are then not timed, which saves a clock read.
        minimum_calls: calls the window needs before it is judged (>= 1; capped at a
            count window's size).
        wait_duration: seconds to stay open (>= 0).
        wait_multiplier: growth of the wait on each open in a row (>= 1; 1 = fixed).
        max_wait_duration: cap of the growing wait (>= ``wait_duration``; default 60 s
            or ``wait_duration`` if longer).
        half_open_max_calls: trial calls admitted at once while half-open (>= 1).
        half_open_successes: trial successes that close it (>= 1; default
            ``half_open_max_calls``).
        record_exceptions: what is a failure (Exception class, tuple, or predicate).
        ignore_exceptions: what is not counted at all (same kinds).
        listeners: callables that receive each :class:`StateChange`.
        automatic_half_open: turn half-open when the wait ends, on a clock timer.
        clock: the time source (default :class:`~distsys.clock.MonotonicClock`).

    Raises:
        InvalidArgumentError: a setting is out of range (the error names it).
        ArgumentTypeError: a setting is of the wrong kind.
    """

    __slots__ = (
        "__weakref__",
        "_abandoned",
        "_check_at",
        "_classify",
        "_clock",
        "_dropped",
        "_fast",
        "_listeners",
        "_lock",
        "_machine",
        "_name",
        "_next_roll",
        "_now",
        "_phantom",
        "_slow_after",
        "_ticks",
        "_timed",
        "_timer",
    )

    def __init__(
        self,
        name: str,
        *,
        window: TimeWindow | CountWindow | str = "time",
        failure_rate_threshold: float = 0.5,
        slow_call_rate_threshold: float = 1.0,
        slow_call_duration: float | None = None,
        minimum_calls: int = 20,
        wait_duration: float = 5.0,
        wait_multiplier: float = 1.0,
        max_wait_duration: float | None = None,
        half_open_max_calls: int = 5,
        half_open_successes: int | None = None,
        record_exceptions: ExceptionFilter = Exception,
        ignore_exceptions: ExceptionFilter = (),
        listeners: Iterable[Listener] = (),
        automatic_half_open: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self._name = check_name(name)
        settings = make_settings(
            window=window,
            failure_rate_threshold=failure_rate_threshold,
            slow_call_rate_threshold=slow_call_rate_threshold,
            slow_call_duration=slow_call_duration,
            minimum_calls=minimum_calls,
            wait_duration=wait_duration,
            wait_multiplier=wait_multiplier,
            max_wait_duration=max_wait_duration,
            half_open_max_calls=half_open_max_calls,
            half_open_successes=half_open_successes,
            automatic_half_open=automatic_half_open,
        )
        self._classify = Classifier(record_exceptions, ignore_exceptions)
        self._listeners = Listeners(listeners)
        self._clock = check_clock(clock)
        # Bound once; the real clock's method is skipped for the C function it calls.
        self._now: Callable[[], float] = (
            time.monotonic if type(self._clock) is MonotonicClock else self._clock.now
        )
        self._slow_after = settings.slow_call_duration
        self._timed = slow_call_duration is not None  # else the hot path skips a clock read
        self._lock = threading.Lock()
        self._abandoned: deque[object] = deque()  # epochs of trial permits dropped unfinished
        self._dropped = itertools.count()  # other permits dropped unfinished
        self._timer: TimerHandle | None = None
        self._ticks = itertools.count()  # one tick per plain success (and per locked read)
        self._phantom = 0  # ticks taken by locked reads, not by successes
        self._machine = BreakerMachine(
            self._name,
            settings,
            make_counts(settings.window, self._clock),
            fast=_GIL and isinstance(settings.window, TimeWindow),
            now=self._now(),
            ok=self._read_ok(),
        )
        self._settle()

    # -- the hot path -----------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Return ``fn(*args, **kwargs)`` if the breaker admits the call.

        Raises:
            BreakerOpenError: the breaker rejected the call (``fn`` did not run).
            BaseException: whatever ``fn`` raised, after it was recorded.
        """
        epoch = self._fast
        if epoch is None:
            return self._call_locked(fn, args, kwargs)
        now = self._now
        if self._timed:  # the same as below, timing the call (kept inline: the hot path)
            start = now()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._record_error(epoch, start, exc)
                raise
            end = now()
            if end - start > self._slow_after or end >= self._next_roll:
                self._finish(CLOSED_CALL, epoch, start, SUCCESS, end)
            elif next(self._ticks) >= self._check_at:
                self._judge()
            return result
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._record_error(epoch, 0.0, exc)
            raise
        end = now()
        if end >= self._next_roll:
            self._finish(CLOSED_CALL, epoch, 0.0, SUCCESS, end)
        elif next(self._ticks) >= self._check_at:
            self._judge()
        return result

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Return ``await fn(*args, **kwargs)`` if the breaker admits the call.

        Cancelling the caller cancels ``fn``'s await and is not recorded as a failure.

        Raises:
            BreakerOpenError: the breaker rejected the call (``fn`` was not called).
            BaseException: whatever ``fn`` raised, after it was recorded.
        """
        epoch = self._fast
        if epoch is None:
            return await self._acall_locked(fn, args, kwargs)
        now = self._now
        if self._timed:
            start = now()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                self._record_error(epoch, start, exc)
                raise
            end = now()
            if end - start > self._slow_after or end >= self._next_roll:
                self._finish(CLOSED_CALL, epoch, start, SUCCESS, end)
            elif next(self._ticks) >= self._check_at:
                self._judge()
            return result
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._record_error(epoch, 0.0, exc)
            raise
        end = now()
        if end >= self._next_roll:
            self._finish(CLOSED_CALL, epoch, 0.0, SUCCESS, end)
        elif next(self._ticks) >= self._check_at:
            self._judge()
        return result

    # -- the locked paths -------------------------------------------------------------

    def _call_locked(self, fn: Callable[..., R], args: Any, kwargs: Any) -> R:
        kind, epoch, start = self._admit()
        if kind == FREE_CALL:
            return fn(*args, **kwargs)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._finish(kind, epoch, start, self._classify(exc))
            raise
        self._finish(kind, epoch, start, SUCCESS)
        return result

    async def _acall_locked(self, fn: Callable[..., Awaitable[R]], args: Any, kwargs: Any) -> R:
        kind, epoch, start = self._admit()
        if kind == FREE_CALL:
            return await fn(*args, **kwargs)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._finish(kind, epoch, start, self._classify(exc))
            raise
        self._finish(kind, epoch, start, SUCCESS)
        return result

    def _read_ok(self) -> int:
        """Return the plain successes so far (lock held): a tick that is not one."""
        ok = next(self._ticks) - self._phantom
        self._phantom += 1
        return ok

    def _settle(self) -> None:
        """Publish the machine's hot-path fields, events and timer (lock held)."""
        machine = self._machine
        self._next_roll = machine.next_roll
        self._check_at = machine.check_at + self._phantom
        self._fast = machine.fast_epoch
        if machine.events:
            self._listeners.queue(machine.events)
            machine.events.clear()
            if self._timer is not None:  # every transition ends the open state it served
                self._timer.cancel()
                self._timer = None
            if machine.timer is not None:
                epoch, delay = machine.timer
                machine.timer = None
                self._timer = self._clock.call_later(
                    delay, partial(_wait_elapsed, weakref.ref(self), epoch)
                )

    def _admit(self) -> tuple[int, object, float]:
        now = self._now()
        epoch = self._fast
        if epoch is not None and now < self._next_roll:  # closed: nothing to decide
            return CLOSED_CALL, epoch, now
        with self._lock:
            self._drain_abandoned()
            kind, epoch, retry_after = self._machine.admit(now, self._read_ok())
            self._settle()
        if self._listeners:
            self._listeners.deliver(self._name)
        if kind == REJECTED:
            raise BreakerOpenError(self._name, retry_after)
        return kind, epoch, now

    def _finish(
        self, kind: int, epoch: object, start: float, outcome: int, end: float | None = None
    ) -> None:
        if kind == FREE_CALL or (outcome == IGNORED and kind == CLOSED_CALL):
            return
        now = self._now() if end is None else end
        slow = now - start > self._slow_after
        if outcome == SUCCESS and not slow and epoch is self._fast and now < self._next_roll:
            if next(self._ticks) >= self._check_at:  # a plain success: as in call()
                self._judge()
            return
        with self._lock:
            self._machine.finish(kind, epoch, now, self._read_ok(), outcome, slow)
            self._settle()
        if self._listeners:
            self._listeners.deliver(self._name)

    def _record_error(self, epoch: object, start: float, exc: BaseException) -> None:
        outcome = self._classify(exc)
        if outcome != IGNORED:
            self._finish(CLOSED_CALL, epoch, start, outcome)

    def _judge(self) -> None:
        now = self._now()
        with self._lock:
            self._machine.judge(now, self._read_ok())
            self._settle()
        if self._listeners:
            self._listeners.deliver(self._name)

    def _drain_abandoned(self) -> None:
        abandoned = self._abandoned
        while abandoned:
            self._machine.abandon(abandoned.popleft())

    def _apply(self, change: Callable[[BreakerMachine, float, int], None]) -> None:
        now = self._now()
        with self._lock:
            self._drain_abandoned()
            change(self._machine, now, self._read_ok())
            self._settle()
        if self._listeners:
            self._listeners.deliver(self._name)

    # -- the public API ---------------------------------------------------------------

    @property
    def name(self) -> str:
        """The breaker's name."""
        return self._name

    @property
    def state(self) -> BreakerState:
        """The state now (an open breaker whose wait is over turns half-open here)."""
        now = self._now()
        with self._lock:
            self._machine.refresh(now, self._read_ok())
            state = self._machine.state
            self._settle()
        if self._listeners:
            self._listeners.deliver(self._name)
        return state

    def allow(self) -> CircuitPermit:
        """Return a permit for one call; finish it with its outcome.

        Prefer ``with breaker.allow() as permit:``; a bare permit must be finished with
        ``success()``, ``failure(exc)`` or ``ignore()``, or a half-open trial slot stays
        taken until it is garbage-collected.

        Raises:
            BreakerOpenError: the breaker is open, forced open, or half-open with every
                trial slot taken (``retry_after`` is None in the last two cases).
        """
        kind, epoch, start = self._admit()
        return CircuitPermit(self, kind, epoch, start)

    def statistics(self) -> BreakerStatistics:
        """Return the state, the window's counts and rates, and the lifetime counts."""
        now = self._now()
        with self._lock:
            self._drain_abandoned()
            ok = self._read_ok()
            self._machine.refresh(now, ok)
            stats = self._machine.statistics(now, ok)
            self._settle()
        dropped = int(repr(self._dropped)[6:-1])  # "count(N)": N permits (never read by next)
        if dropped:
            stats = dataclasses.replace(stats, abandoned=stats.abandoned + dropped)
        if self._listeners:
            self._listeners.deliver(self._name)
        return stats

    def force_open(self) -> None:
        """Reject every call (``retry_after`` None) until :meth:`reset`."""
        self._apply(BreakerMachine.force_open)

    def disable(self) -> None:
        """Admit every call and judge none until :meth:`reset`."""
        self._apply(BreakerMachine.disable)

    def reset(self) -> None:
        """Close with an empty window and the first wait duration."""
        self._apply(BreakerMachine.reset)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(change)`` on every later transition."""
        with self._lock:
            self._listeners.add(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; a no-op if it was not added."""
        with self._lock:
            self._listeners.remove(listener)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self._name!r}, state={self._machine.state.value})"


def _wait_elapsed(ref: weakref.ref[CircuitBreaker], epoch: object) -> None:
    """The automatic half-open timer; it does not keep its breaker alive."""
    breaker = ref()
    if breaker is not None:
        breaker._apply(partial(_wait_elapsed_in, epoch))


def _wait_elapsed_in(epoch: object, machine: BreakerMachine, now: float, ok: int) -> None:
    machine.wait_elapsed(epoch, now, ok)
