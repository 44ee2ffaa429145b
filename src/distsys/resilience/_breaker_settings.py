"""A circuit breaker's configuration: validated once, at construction."""

from __future__ import annotations

from dataclasses import dataclass

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.resilience._breaker_checks import (
    check_count,
    check_multiplier,
    check_rate,
    check_seconds,
    check_wait,
)
from distsys.resilience._breaker_window import CountWindow, TimeWindow

__all__ = ["BreakerSettings", "make_settings"]

_WINDOW_ACCEPTED = "a TimeWindow, a CountWindow, 'time' or 'count'"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """A circuit breaker's validated configuration (see CircuitBreaker for each field)."""

    window: TimeWindow | CountWindow
    failure_rate_threshold: float
    slow_call_rate_threshold: float
    slow_call_duration: float  # inf: no call is slow
    minimum_calls: int  # at most the calls of a CountWindow
    wait_duration: float
    wait_multiplier: float
    max_wait_duration: float
    half_open_max_calls: int
    half_open_successes: int
    automatic_half_open: bool


def _check_window(window: object) -> TimeWindow | CountWindow:
    if isinstance(window, TimeWindow | CountWindow):
        return window
    if window == "time":
        return TimeWindow()
    if window == "count":
        return CountWindow()
    if isinstance(window, str):
        raise InvalidArgumentError("window", window, _WINDOW_ACCEPTED)
    raise ArgumentTypeError("window", window, _WINDOW_ACCEPTED)


def make_settings(
    *,
    window: object,
    failure_rate_threshold: object,
    slow_call_rate_threshold: object,
    slow_call_duration: object,
    minimum_calls: object,
    wait_duration: object,
    wait_multiplier: object,
    max_wait_duration: object,
    half_open_max_calls: object,
    half_open_successes: object,
    automatic_half_open: object,
) -> BreakerSettings:
    """Return the settings, or raise an error naming the first field out of range."""
    spec = _check_window(window)
    minimum = check_count("minimum_calls", minimum_calls, 1)
    if isinstance(spec, CountWindow):
        minimum = min(minimum, spec.calls)  # as resilience4j: a full window suffices
    wait = check_wait("wait_duration", wait_duration)
    if max_wait_duration is None:
        cap = max(60.0, wait)
    else:
        cap = check_wait("max_wait_duration", max_wait_duration)
        if cap < wait:
            raise InvalidArgumentError(
                "max_wait_duration", max_wait_duration, f"a number >= wait_duration ({wait})"
            )
    trials = check_count("half_open_max_calls", half_open_max_calls, 1)
    return BreakerSettings(
        window=spec,
        failure_rate_threshold=check_rate("failure_rate_threshold", failure_rate_threshold),
        slow_call_rate_threshold=check_rate("slow_call_rate_threshold", slow_call_rate_threshold),
        slow_call_duration=(
            float("inf")
            if slow_call_duration is None
            else check_seconds("slow_call_duration", slow_call_duration)
        ),
        minimum_calls=minimum,
        wait_duration=wait,
        wait_multiplier=check_multiplier("wait_multiplier", wait_multiplier),
        max_wait_duration=cap,
        half_open_max_calls=trials,
        half_open_successes=(
            trials
            if half_open_successes is None
            else check_count("half_open_successes", half_open_successes, 1)
        ),
        automatic_half_open=bool(automatic_half_open),
    )
