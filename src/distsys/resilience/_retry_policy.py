"""The retry decision, pure: which errors to retry, how often, and how long to wait.

Nothing here sleeps, reads a clock or takes a lock: :class:`RetryPolicy.decide` takes the
attempt number, the error and the time left, and returns a :class:`RetryDecision`. The
drivers in :mod:`distsys.resilience._retry` (and anyone else, such as a message queue
scheduling a redelivery) run the loop around it.

Backoff is exponential with *full jitter* (AWS Architecture Blog, "Exponential Backoff
And Jitter"): the delay before retry ``n`` (0 for the first retry) is drawn uniformly
from ``[0, min(cap, base * multiplier**n))``. Spreading retries over the whole interval
de-synchronises clients that failed together, which is what keeps a recovering
dependency from being hit by waves of retries.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.resilience._retry_checks import check_count, check_real

__all__ = ["Backoff", "RetryDecision", "RetryPolicy"]

#: Never retried, whatever ``retry_on`` says: they mean "stop", not "failed".
NEVER_RETRIED: Final = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)

NOT_RETRYABLE: Final = "not retryable"
EXHAUSTED: Final = "attempts exhausted"
DEADLINE: Final = "deadline"


class Random(Protocol):
    """What a backoff needs from ``rng=``: :meth:`random.Random.random`."""

    def random(self) -> float:
        """Return a float in [0, 1)."""
        ...


class Backoff:
    """Exponential backoff with full jitter: the delay before each retry.

    ``ceiling(n) = min(cap, base * multiplier**n)`` for retry ``n`` (0 for the first
    retry); ``delay(n)`` is uniform in ``[0, ceiling(n))`` with ``jitter=True`` (the
    default, "full jitter") and exactly ``ceiling(n)`` with ``jitter=False``.

    Thread-safe as long as ``rng`` is (``random.Random`` is); pure otherwise.

    Args:
        base: the ceiling of the first retry's delay, in seconds (> 0).
        cap: the largest delay, in seconds (>= base).
        multiplier: how much the ceiling grows per retry (>= 1).
        jitter: draw each delay uniformly below its ceiling (True) or use the ceiling.
        rng: the source of randomness (default: a new, unseeded ``random.Random``).

    Raises:
        InvalidArgumentError: a value is out of range (naming the field).
        ArgumentTypeError: a value is of the wrong kind.
    """

    __slots__ = ("_rng", "base", "cap", "jitter", "multiplier")

    def __init__(
        self,
        base: float = 0.1,
        cap: float = 10.0,
        *,
        multiplier: float = 2.0,
        jitter: bool = True,
        rng: Random | None = None,
    ) -> None:
        accepted = "a finite number of seconds > 0"
        self.base = check_real("base", base, accepted)
        if self.base <= 0:
            raise InvalidArgumentError("base", base, accepted)
        cap_accepted = f"a finite number of seconds >= base ({self.base})"
        self.cap = check_real("cap", cap, cap_accepted)
        if self.cap < self.base:
            raise InvalidArgumentError("cap", cap, cap_accepted)
        self.multiplier = check_real("multiplier", multiplier, "a finite number >= 1")
        if self.multiplier < 1:
            raise InvalidArgumentError("multiplier", multiplier, "a finite number >= 1")
        if not isinstance(jitter, bool):
            raise ArgumentTypeError("jitter", jitter, "a bool")
        self.jitter = jitter
        if rng is not None and not callable(getattr(rng, "random", None)):
            raise ArgumentTypeError("rng", rng, "None or an object with random() -> [0, 1)")
        self._rng: Random = rng if rng is not None else random.Random()

    def ceiling(self, retry: int) -> float:
        """Return the largest delay of retry ``retry`` (0 for the first retry)."""
        try:
            grown = self.base * self.multiplier**retry
        except OverflowError:
            return self.cap
        return min(self.cap, grown)

    def delay(self, retry: int) -> float:
        """Return the delay before retry ``retry`` (0 for the first retry), in seconds."""
        ceiling = self.ceiling(retry)
        return ceiling * self._rng.random() if self.jitter else ceiling

    def __repr__(self) -> str:
        return (
            f"Backoff(base={self.base!r}, cap={self.cap!r}, multiplier={self.multiplier!r}, "
            f"jitter={self.jitter!r})"
        )


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after a failed attempt.

    Attributes:
        retry: True to try again after ``delay`` seconds.
        delay: the seconds to wait before the next attempt; when giving up for the
            deadline, the delay that was drawn; else 0.0.
        reason: why not, when giving up: ``"not retryable"``, ``"attempts exhausted"`` or
            ``"deadline"`` (the next attempt would start at or after the deadline);
            ``""`` when retrying.
    """

    retry: bool
    delay: float = 0.0
    reason: str = ""


ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


def _check_retry_on(retry_on: object) -> tuple[type[BaseException], ...]:
    accepted = "an exception class or a tuple of exception classes"
    types = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    if not types or not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
        raise ArgumentTypeError("retry_on", retry_on, accepted)
    return types


class RetryPolicy:
    """When to retry a failed call, and after how long: pure and thread-safe.

    An error is *retryable* when it is an instance of ``retry_on`` and ``retry_if(error)``
    (when given) is true. ``asyncio.CancelledError``, ``KeyboardInterrupt``,
    ``SystemExit`` and ``GeneratorExit`` are never retried.

    Args:
        attempts: the most times the call runs, the first included (>= 1; 1: no retry).
        backoff: the delays between attempts (default: ``Backoff()``, 0.1 s doubling up
            to 10 s, full jitter).
        retry_on: the exception class(es) to retry (default: ``Exception``).
        retry_if: a further test an error must pass to be retried, or None.

    Raises:
        InvalidArgumentError: ``attempts`` is below 1.
        ArgumentTypeError: an argument is of the wrong kind.
    """

    __slots__ = ("attempts", "backoff", "retry_if", "retry_on")

    def __init__(
        self,
        attempts: int = 3,
        *,
        backoff: Backoff | None = None,
        retry_on: ExceptionTypes = Exception,
        retry_if: Callable[[BaseException], bool] | None = None,
    ) -> None:
        self.attempts = check_count("attempts", attempts, 1)
        if backoff is not None and not isinstance(backoff, Backoff):
            raise ArgumentTypeError("backoff", backoff, "None or a Backoff")
        self.backoff = backoff if backoff is not None else Backoff()
        self.retry_on = _check_retry_on(retry_on)
        if retry_if is not None and not callable(retry_if):
            raise ArgumentTypeError("retry_if", retry_if, "None or a callable(error) -> bool")
        self.retry_if = retry_if

    def retryable(self, error: BaseException) -> bool:
        """Return whether ``error`` is one to retry (ignoring attempts and time)."""
        if isinstance(error, NEVER_RETRIED) or not isinstance(error, self.retry_on):
            return False
        return self.retry_if is None or bool(self.retry_if(error))

    def decide(
        self, attempt: int, error: BaseException, remaining: float | None = None
    ) -> RetryDecision:
        """Decide what follows attempt number ``attempt`` (1 for the first) failing.

        Args:
            attempt: how many attempts have run, the failed one included.
            error: what the failed attempt raised.
            remaining: the seconds left before the caller's deadline, or None.

        Returns:
            Retry after a backoff delay, or give up and say why. Giving up for
            ``"deadline"`` happens when the delay would reach the deadline: an attempt
            that could only start after it is not worth waiting for.
        """
        if not self.retryable(error):
            return RetryDecision(False, reason=NOT_RETRYABLE)
        if attempt >= self.attempts:
            return RetryDecision(False, reason=EXHAUSTED)
        delay = self.backoff.delay(attempt - 1)
        if remaining is not None and delay >= remaining:
            return RetryDecision(False, delay, DEADLINE)
        return RetryDecision(True, delay)

    def __repr__(self) -> str:
        names = ", ".join(t.__name__ for t in self.retry_on)
        return (
            f"RetryPolicy(attempts={self.attempts}, backoff={self.backoff!r}, retry_on=({names}))"
        )
