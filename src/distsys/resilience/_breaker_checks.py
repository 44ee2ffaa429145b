"""Argument checks and exception classification shared by the breakers.

Each check names the field and what it accepts, and fails with
:class:`~distsys.errors.InvalidArgumentError` (a bad value) or
:class:`~distsys.errors.ArgumentTypeError` (a value of the wrong kind).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Final, TypeAlias

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.metrics._checks import check_clock, check_count, check_real, check_seconds

__all__ = [
    "FAILURE",
    "IGNORED",
    "SUCCESS",
    "Classifier",
    "ExceptionFilter",
    "check_callables",
    "check_clock",
    "check_count",
    "check_name",
    "check_rate",
    "check_real",
    "check_seconds",
    "check_multiplier",
    "check_wait",
]

ExceptionFilter: TypeAlias = (
    type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool]
)
"""Which exceptions a breaker counts: an Exception class, a tuple of them, or a predicate."""

SUCCESS: Final = 0
FAILURE: Final = 1
IGNORED: Final = 2

_FILTER_ACCEPTED = "an Exception subclass, a tuple of them, or a callable (exc) -> bool"


def check_name(name: object) -> str:
    """Return ``name`` if it is a non-empty str."""
    if not isinstance(name, str):
        raise ArgumentTypeError("name", name, "a non-empty str")
    if not name:
        raise InvalidArgumentError("name", name, "a non-empty str")
    return name


def check_rate(field: str, value: object) -> float:
    """Return ``value`` as a float if it is a rate in (0, 1]."""
    accepted = "a number in (0, 1] (0.5 for 50%)"
    rate = check_real(field, value, accepted)
    if not 0.0 < rate <= 1.0:
        raise InvalidArgumentError(field, value, accepted)
    return rate


def check_wait(field: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number of seconds >= 0."""
    accepted = "a finite number of seconds >= 0"
    seconds = check_real(field, value, accepted)
    if seconds < 0:
        raise InvalidArgumentError(field, value, accepted)
    return seconds


def _predicate(field: str, value: object) -> Callable[[Exception], bool]:
    if isinstance(value, type):
        value = (value,)
    if isinstance(value, tuple):
        kinds = value
        if not all(isinstance(k, type) and issubclass(k, Exception) for k in kinds):
            raise ArgumentTypeError(field, value, _FILTER_ACCEPTED)
        if not kinds:
            return lambda exc: False
        return lambda exc: isinstance(exc, kinds)
    if callable(value):
        return value
    raise ArgumentTypeError(field, value, _FILTER_ACCEPTED)


class Classifier:
    """Sort an exception into SUCCESS, FAILURE or IGNORED for a breaker.

    A ``BaseException`` that is not an ``Exception`` (``asyncio.CancelledError``,
    ``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``) is always IGNORED: the call
    was stopped, not answered. Otherwise ``ignore`` wins over ``record``, and an exception
    that neither matches counts as a SUCCESS (the dependency answered; the answer was an
    error the caller expects, such as "not found").
    """

    __slots__ = ("_ignore", "_record")

    def __init__(self, record: ExceptionFilter, ignore: ExceptionFilter) -> None:
        self._record = _predicate("record_exceptions", record)
        self._ignore = _predicate("ignore_exceptions", ignore)

    def __call__(self, exc: BaseException) -> int:
        """Return SUCCESS, FAILURE or IGNORED for ``exc``."""
        if not isinstance(exc, Exception):
            return IGNORED
        if self._ignore(exc):
            return IGNORED
        return FAILURE if self._record(exc) else SUCCESS


def check_callables(field: str, value: object) -> tuple[Callable[..., object], ...]:
    """Return ``value`` as a tuple if it is an iterable of callables."""
    accepted = "an iterable of callables"
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ArgumentTypeError(field, value, accepted)
    items = tuple(value)
    for item in items:
        if not callable(item):
            raise ArgumentTypeError(field, item, accepted)
    return items


def check_multiplier(field: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number >= 1."""
    accepted = "a finite number >= 1 (1 keeps the wait fixed, 2 doubles it)"
    number = check_real(field, value, accepted)
    if number < 1.0 or not math.isfinite(number):
        raise InvalidArgumentError(field, value, accepted)
    return number
