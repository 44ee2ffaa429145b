"""What a circuit breaker shows: its states, a change of state, and its statistics."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["BreakerState", "BreakerStatistics", "StateChange"]


class BreakerState(enum.Enum):
    """The states of a :class:`~distsys.resilience.CircuitBreaker`.

    ``CLOSED`` lets calls through and judges them; ``OPEN`` rejects them until the wait is
    over; ``HALF_OPEN`` lets a few trial calls through to decide between the two.
    ``FORCED_OPEN`` rejects and ``DISABLED`` admits everything, judging nothing, until
    ``reset()``.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class StateChange:
    """One transition of a breaker, as its listeners hear it.

    Attributes:
        name: the breaker's name.
        old: the state it left.
        new: the state it entered.
        reason: why, in words ("failure rate 60.0% >= 50.0% over 20 calls").
        at: the breaker's clock time of the transition.
    """

    name: str
    old: BreakerState
    new: BreakerState
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class BreakerStatistics:
    """A snapshot of a circuit breaker, read at one instant.

    The window counts (``calls``, ``failures``, ``slow_calls`` and the rates) cover the
    calls the breaker is judging now: its rolling window while closed, the window that
    tripped it while open. The rates are 0.0 while the window is empty; the breaker acts on
    them only once ``calls >= minimum_calls``. The lifetime counts never go down.

    Attributes:
        name: the breaker's name.
        state: its state.
        calls: calls in the window (ignored calls are not counted).
        failures: failed calls in the window.
        slow_calls: calls in the window that took longer than the slow-call duration.
        failure_rate: ``failures / calls``.
        slow_call_rate: ``slow_calls / calls``.
        minimum_calls: the calls the window needs before its rates are acted on.
        retry_after: seconds until an open breaker lets trial calls through; None when
            it is not open, or is forced open.
        wait_duration: how long the breaker stays open the next (or current) time.
        half_open_in_flight: trial calls running now (half-open only).
        half_open_successes: trial calls that succeeded so far (half-open only).
        rejected: calls rejected since creation.
        opened: times the breaker opened since creation (forced opens excluded).
        abandoned: permits dropped without an outcome since creation.
    """

    name: str
    state: BreakerState
    calls: int
    failures: int
    slow_calls: int
    failure_rate: float
    slow_call_rate: float
    minimum_calls: int
    retry_after: float | None
    wait_duration: float
    half_open_in_flight: int
    half_open_successes: int
    rejected: int
    opened: int
    abandoned: int
