"""Argument checks shared by the cache and the decorator: fail at once, name the field."""

from __future__ import annotations

from typing import Any

from distsys.clock import Clock, MonotonicClock
from distsys.errors import ArgumentTypeError, InvalidArgumentError

__all__ = [
    "TTL_ACCEPTED",
    "check_callable",
    "check_clock",
    "check_hashable",
    "check_jitter",
    "check_maxsize",
    "check_ttl",
]

TTL_ACCEPTED = "None (no expiry) or a number of seconds > 0 (math.inf: never)"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_maxsize(maxsize: object) -> int:
    """Return ``maxsize`` if it is an int >= 1."""
    accepted = "an int >= 1 (items, or total weight with getsizeof)"
    if isinstance(maxsize, bool) or not isinstance(maxsize, int):
        raise ArgumentTypeError("maxsize", maxsize, accepted)
    if maxsize < 1:
        raise InvalidArgumentError("maxsize", maxsize, accepted)
    return maxsize


def check_ttl(field: str, ttl: object) -> float | None:
    """Return ``ttl`` as float seconds (``math.inf``: never expires), or None for None."""
    if ttl is None:
        return None
    if not _is_number(ttl):
        raise ArgumentTypeError(field, ttl, TTL_ACCEPTED)
    assert isinstance(ttl, int | float)
    if not ttl > 0:  # also rejects NaN
        raise InvalidArgumentError(field, ttl, TTL_ACCEPTED)
    return float(ttl)


def check_jitter(jitter: object) -> float:
    """Return ``jitter`` if it is a number in [0, 1)."""
    accepted = "a number in [0, 1): the share by which each item's TTL may vary"
    if not _is_number(jitter):
        raise ArgumentTypeError("jitter", jitter, accepted)
    assert isinstance(jitter, int | float)
    if not 0 <= jitter < 1:
        raise InvalidArgumentError("jitter", jitter, accepted)
    return float(jitter)


def check_callable(field: str, fn: object, accepted: str) -> None:
    """Reject an argument that should be None or callable and is neither."""
    if fn is not None and not callable(fn):
        raise ArgumentTypeError(field, fn, accepted)


def check_clock(clock: object) -> Clock:
    """Return ``clock``, or a :class:`MonotonicClock` for None."""
    if clock is None:
        return MonotonicClock()
    if not isinstance(clock, Clock):
        raise ArgumentTypeError("clock", clock, "None or a Clock (an object with now())")
    return clock


def check_hashable(key: Any, field: str = "key") -> None:
    """Raise an error naming ``field`` if ``key`` cannot be hashed."""
    try:
        hash(key)
    except TypeError as exc:
        raise ArgumentTypeError(field, key, f"a hashable value ({exc})") from None
