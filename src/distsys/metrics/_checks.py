"""Argument checks shared by the metrics classes: each names the field and what it accepts."""

from __future__ import annotations

import math
from numbers import Real

from distsys.clock import Clock, MonotonicClock
from distsys.errors import ArgumentTypeError, InvalidArgumentError

__all__ = [
    "check_accuracy",
    "check_clock",
    "check_count",
    "check_quantile",
    "check_real",
    "check_seconds",
]


def check_count(field: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an int >= ``minimum`` (bools are not counts)."""
    accepted = f"an int >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(field, value, accepted)
    if value < minimum:
        raise InvalidArgumentError(field, value, accepted)
    return value


def check_real(field: str, value: object, accepted: str) -> float:
    """Return ``value`` as a float if it is a finite real number (not a bool).

    Any :class:`numbers.Real` counts (numpy scalars, ``Fraction``); a ``str`` never does.
    """
    if value.__class__ is not int and (isinstance(value, bool) or not isinstance(value, Real)):
        raise ArgumentTypeError(field, value, accepted)
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        raise InvalidArgumentError(field, value, accepted) from None
    if not math.isfinite(number):
        raise InvalidArgumentError(field, value, accepted)
    return number


def check_seconds(field: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number of seconds > 0."""
    accepted = "a finite number of seconds > 0"
    seconds = check_real(field, value, accepted)
    if seconds <= 0:
        raise InvalidArgumentError(field, value, accepted)
    return seconds


def check_quantile(q: object) -> float:
    """Return ``q`` as a float if it lies in [0, 1]."""
    accepted = "a number in [0, 1]"
    number = check_real("q", q, accepted)
    if not 0.0 <= number <= 1.0:
        raise InvalidArgumentError("q", q, accepted)
    return number


def check_accuracy(value: object) -> float:
    """Return ``value`` as a float if it is a relative accuracy in (0, 1)."""
    accepted = "a number in (0, 1), e.g. 0.01 for 1%"
    accuracy = check_real("relative_accuracy", value, accepted)
    if not 0.0 < accuracy < 1.0:
        raise InvalidArgumentError("relative_accuracy", value, accepted)
    return accuracy


def check_clock(clock: object) -> Clock:
    """Return ``clock``, or a new :class:`MonotonicClock` for None."""
    if clock is None:
        return MonotonicClock()
    if not isinstance(clock, Clock):
        raise ArgumentTypeError("clock", clock, "None or a distsys.clock.Clock")
    return clock
