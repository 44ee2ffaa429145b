"""Argument checks shared by the retry, budget, rate-limit and bulkhead classes.

Each check names the field and what it accepts, and fails with
:class:`~distsys.errors.InvalidArgumentError` (a bad value) or
:class:`~distsys.errors.ArgumentTypeError` (a value of the wrong kind).
"""

from __future__ import annotations

import math

from distsys.context import Context
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.metrics._checks import check_clock, check_count, check_real, check_seconds

__all__ = [
    "check_clock",
    "check_context",
    "check_count",
    "check_name",
    "check_real",
    "check_seconds",
    "check_share",
    "check_timeout",
    "check_tokens",
]

TIMEOUT_ACCEPTED = "None (no limit) or a number of seconds >= 0"


def check_name(name: object) -> str:
    """Return ``name`` if it is a non-empty str."""
    if not isinstance(name, str):
        raise ArgumentTypeError("name", name, "a non-empty str")
    if not name:
        raise InvalidArgumentError("name", name, "a non-empty str")
    return name


def check_share(field: str, value: object) -> float:
    """Return ``value`` as a float if it is a share in [0, 1]."""
    accepted = "a number in [0, 1] (0.2 for 20%)"
    share = check_real(field, value, accepted)
    if not 0.0 <= share <= 1.0:
        raise InvalidArgumentError(field, value, accepted)
    return share


def check_timeout(timeout: object, field: str = "timeout") -> float:
    """Return ``timeout`` as float seconds (``math.inf`` for None)."""
    if timeout is None:
        return math.inf
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ArgumentTypeError(field, timeout, TIMEOUT_ACCEPTED)
    if not timeout >= 0:  # also rejects NaN
        raise InvalidArgumentError(field, timeout, TIMEOUT_ACCEPTED)
    return float(timeout)


def check_context(ctx: object) -> Context | None:
    """Return ``ctx`` if it is None or a :class:`~distsys.context.Context`."""
    if ctx is not None and not isinstance(ctx, Context):
        raise ArgumentTypeError("ctx", ctx, "None or a distsys.context.Context")
    return ctx


def check_tokens(tokens: object, burst: int) -> int:
    """Return ``tokens`` if it is an int in [1, burst] (more could never be granted)."""
    accepted = f"an int in [1, {burst}] (1 to the burst)"
    if isinstance(tokens, bool) or not isinstance(tokens, int):
        raise ArgumentTypeError("tokens", tokens, accepted)
    if not 1 <= tokens <= burst:
        raise InvalidArgumentError("tokens", tokens, accepted)
    return tokens
