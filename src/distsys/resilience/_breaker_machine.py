"""The circuit breaker's decisions: a pure state machine, with the time passed in.

No lock, no clock, no I/O: :class:`~distsys.resilience.CircuitBreaker` holds its lock
around every method here and passes ``now`` (its clock) and ``ok`` (its count of plain
successes, see ``_breaker_window.py``). The machine appends each transition to
:attr:`BreakerMachine.events` for the driver to deliver, and asks for a timer through
:attr:`BreakerMachine.timer` when the breaker should turn half-open by itself.

::

                 failure or slow-call rate >= threshold
                 over >= minimum_calls in the window
     ┌────────┐ ───────────────────────────────────────▶ ┌────────┐
     │ CLOSED │                                           │  OPEN  │ rejects: BreakerOpenError
     └────────┘ ◀──────┐                    ┌──────────── └────────┘ (retry_after = wait left)
                       │ half_open_successes│ a trial fails,     │
                       │ trials succeed     │ or too many slow   │ the wait is over
                       │                    │                    ▼
                       └──────────────── ┌───────────┐ ◀─────────┘
                                         │ HALF_OPEN │ admits half_open_max_calls at once
                                         └───────────┘
     reset() → CLOSED from anywhere; force_open() → FORCED_OPEN; disable() → DISABLED
"""

from __future__ import annotations

from typing import Final

from distsys.resilience._breaker_checks import FAILURE, IGNORED
from distsys.resilience._breaker_settings import BreakerSettings
from distsys.resilience._breaker_state import BreakerState, BreakerStatistics, StateChange
from distsys.resilience._breaker_window import WindowCounts

__all__ = [
    "CLOSED_CALL",
    "FREE_CALL",
    "NEVER",
    "REJECTED",
    "TRIAL_CALL",
    "BreakerMachine",
]

CLOSED_CALL: Final = 0  # admitted while closed: judged by the window
TRIAL_CALL: Final = 1  # admitted while half-open: holds a trial slot
FREE_CALL: Final = 2  # admitted while disabled: judged by nothing
REJECTED: Final = 3

NEVER: Final = 1 << 62  # an ok count no breaker reaches

_CLOSED, _OPEN, _HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class BreakerMachine:
    """The states and transitions of one circuit breaker. Not thread-safe."""

    __slots__ = (
        "_fast",
        "_next_wait",
        "abandoned",
        "check_at",
        "counts",
        "epoch",
        "events",
        "fast_epoch",
        "name",
        "next_roll",
        "open_until",
        "opened",
        "rejected",
        "settings",
        "state",
        "timer",
        "trial_in_flight",
        "trial_slow",
        "trial_successes",
        "wait",
    )

    def __init__(
        self,
        name: str,
        settings: BreakerSettings,
        counts: WindowCounts,
        *,
        fast: bool,
        now: float,
        ok: int,
    ) -> None:
        self.name = name
        self.settings = settings
        self.counts = counts
        self._fast = fast  # may plain successes skip the lock (time windows under a GIL)
        self.state = _CLOSED
        self.epoch = object()  # a new token per state entered: stale calls are told apart
        self.fast_epoch: object | None = self.epoch if fast else None
        self.events: list[StateChange] = []
        self.timer: tuple[object, float] | None = None  # (OPEN epoch, delay) to schedule
        self.open_until = 0.0
        self.wait = settings.wait_duration  # the current (or last) open's wait
        self._next_wait = settings.wait_duration
        self.trial_in_flight = self.trial_successes = self.trial_slow = 0
        self.rejected = self.opened = self.abandoned = 0
        counts.reset(now, ok)
        self.next_roll = counts.next_roll
        self.check_at = NEVER

    # -- transitions ------------------------------------------------------------------

    def _enter(self, new: BreakerState, reason: str, now: float, ok: int) -> None:
        old = self.state
        self.state = new
        self.epoch = epoch = object()
        self.fast_epoch = epoch if new is _CLOSED and self._fast else None
        self.check_at = NEVER
        if new is _CLOSED:
            self.counts.reset(now, ok)
            self.next_roll = self.counts.next_roll
            self._next_wait = self.settings.wait_duration
        elif new is _OPEN:
            self.opened += 1
            self.wait = self._next_wait
            self._next_wait = min(
                self._next_wait * self.settings.wait_multiplier, self.settings.max_wait_duration
            )
            self.open_until = now + self.wait
            if self.settings.automatic_half_open:
                self.timer = (epoch, self.wait)
        elif new is _HALF_OPEN:
            self.trial_in_flight = self.trial_successes = self.trial_slow = 0
        self.events.append(StateChange(self.name, old, new, reason, now))

    def refresh(self, now: float, ok: int) -> None:
        """Apply what time alone changes: the end of a wait, the window rolling on."""
        state = self.state
        if state is _OPEN:
            if now >= self.open_until:
                self._enter(_HALF_OPEN, f"waited {self.wait:g} s", now, ok)
        elif state is _CLOSED and now >= self.next_roll:
            self.counts.roll(now, ok)
            self.next_roll = self.counts.next_roll
            self._judge(now, ok, trip=False)

    def judge(self, now: float, ok: int) -> None:
        """Judge the window after a plain success the hot path was told to report."""
        if self.state is _CLOSED:
            self.counts.roll(now, ok)
            self.next_roll = self.counts.next_roll
            self._judge(now, ok, trip=True)

    def _judge(self, now: float, ok: int, *, trip: bool) -> None:
        """Open if the window is over a threshold and ``trip``; else tell the hot path
        (through ``check_at``) which plain success must be reported to be judged.

        The breaker judges its window after every recorded call, never on a mere look
        (``state``, ``statistics()``): a roll that leaves the window over a threshold
        makes the next recorded call, success or not, decide.
        """
        calls, failures, slow = self.counts.totals(ok)
        settings = self.settings
        minimum = settings.minimum_calls
        if calls >= minimum:
            reason = ""
            rate = failures / calls
            if rate >= settings.failure_rate_threshold:
                threshold = settings.failure_rate_threshold
                reason = f"failure rate {rate:.1%} >= {threshold:.1%} over {calls} calls"
            else:
                rate = slow / calls
                if rate >= settings.slow_call_rate_threshold:
                    threshold = settings.slow_call_rate_threshold
                    reason = f"slow-call rate {rate:.1%} >= {threshold:.1%} over {calls} calls"
            if reason:
                if trip:
                    self._enter(_OPEN, reason, now, ok)
                else:
                    self.check_at = ok  # the very next success reports
                return
        # Below the minimum, a success trips the breaker only if it brings the window to
        # the minimum while it holds a failure or a slow call: the hot path reports that
        # one. Above it, successes only lower the rates.
        if calls < minimum and (failures or slow):
            self.check_at = ok + (minimum - calls - 1)
        else:
            self.check_at = NEVER

    def wait_elapsed(self, epoch: object, now: float, ok: int) -> None:
        """Turn half-open: the timer of the open state ``epoch`` fired."""
        if epoch is self.epoch and self.state is _OPEN:
            self._enter(_HALF_OPEN, f"waited {self.wait:g} s", now, ok)

    def force_open(self, now: float, ok: int) -> None:
        """Reject every call until :meth:`reset`."""
        if self.state is not BreakerState.FORCED_OPEN:
            self._enter(BreakerState.FORCED_OPEN, "force_open()", now, ok)

    def disable(self, now: float, ok: int) -> None:
        """Admit every call, judging none, until :meth:`reset`."""
        if self.state is not BreakerState.DISABLED:
            self._enter(BreakerState.DISABLED, "disable()", now, ok)

    def reset(self, now: float, ok: int) -> None:
        """Close with an empty window and the first wait (quietly if already closed)."""
        if self.state is _CLOSED:
            self.counts.reset(now, ok)
            self.next_roll = self.counts.next_roll
            self.check_at = NEVER
            self._next_wait = self.settings.wait_duration
        else:
            self._enter(_CLOSED, "reset()", now, ok)

    # -- calls ------------------------------------------------------------------------

    def admit(self, now: float, ok: int) -> tuple[int, object, float | None]:
        """Return ``(kind, epoch, retry_after)`` for a call; kind REJECTED refuses it."""
        self.refresh(now, ok)
        state = self.state
        if state is _CLOSED:
            return CLOSED_CALL, self.epoch, None
        retry_after: float | None = None
        if state is _HALF_OPEN:
            if self.trial_in_flight < self.settings.half_open_max_calls:
                self.trial_in_flight += 1
                return TRIAL_CALL, self.epoch, None
        elif state is _OPEN:
            retry_after = self.open_until - now
        elif state is BreakerState.DISABLED:
            return FREE_CALL, self.epoch, None
        self.rejected += 1
        return REJECTED, self.epoch, retry_after

    def finish(
        self, kind: int, epoch: object, now: float, ok: int, outcome: int, slow: bool
    ) -> None:
        """Record the outcome of a call admitted as ``kind`` in the state ``epoch``.

        A call admitted in an earlier state (before the breaker opened, or in an earlier
        half-open period) is not counted: it says nothing about the present.
        """
        if epoch is not self.epoch:
            return
        if kind == CLOSED_CALL:
            if outcome != IGNORED:
                self.counts.record(now, ok, outcome == FAILURE, slow)
                self.next_roll = self.counts.next_roll
                self._judge(now, ok, trip=True)
        elif kind == TRIAL_CALL:
            self.trial_in_flight -= 1
            if outcome == IGNORED:
                return
            if outcome == FAILURE:
                self._enter(_OPEN, "a trial call failed", now, ok)
                return
            self.trial_successes += 1
            self.trial_slow += slow
            needed = self.settings.half_open_successes
            if self.trial_successes >= needed:
                rate = self.trial_slow / self.trial_successes
                threshold = self.settings.slow_call_rate_threshold
                if rate >= threshold:
                    reason = f"slow-call rate {rate:.1%} >= {threshold:.1%} over {needed} trials"
                    self._enter(_OPEN, reason, now, ok)
                else:
                    self._enter(_CLOSED, f"{needed} trial calls succeeded", now, ok)

    def abandon(self, epoch: object) -> None:
        """Give back the slot of a trial permit dropped unfinished: no outcome."""
        self.abandoned += 1
        if epoch is self.epoch:
            self.trial_in_flight -= 1

    # -- reading ----------------------------------------------------------------------

    def statistics(self, now: float, ok: int) -> BreakerStatistics:
        """Return a snapshot (call :meth:`refresh` first to see the present)."""
        calls, failures, slow = self.counts.totals(ok)
        state = self.state
        half_open = state is _HALF_OPEN
        return BreakerStatistics(
            name=self.name,
            state=state,
            calls=calls,
            failures=failures,
            slow_calls=slow,
            failure_rate=failures / calls if calls else 0.0,
            slow_call_rate=slow / calls if calls else 0.0,
            minimum_calls=self.settings.minimum_calls,
            retry_after=max(self.open_until - now, 0.0) if state is _OPEN else None,
            wait_duration=self.wait if state is _OPEN else self._next_wait,
            half_open_in_flight=self.trial_in_flight if half_open else 0,
            half_open_successes=self.trial_successes if half_open else 0,
            rejected=self.rejected,
            opened=self.opened,
            abandoned=self.abandoned,
        )
