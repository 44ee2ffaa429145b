"""The remaining budget of a Context as a relative timeout header.

A deadline travels between processes as *milliseconds left*, like gRPC's
``grpc-timeout``, never as a wall-clock instant: the receiver adds it to its own clock, so
clock skew between machines does not matter. The time a message spends on the wire is
not subtracted, which errs on the side of giving the callee a little more time.
"""

from __future__ import annotations

import math

from distsys.context._context import Context
from distsys.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["TIMEOUT_HEADER", "decode_timeout", "encode_timeout"]

TIMEOUT_HEADER = "X-Request-Timeout-Ms"
"""The HTTP header (and message header) that carries the remaining budget."""

_MAX_DIGITS = 10  # about 115 days; longer budgets are not deadlines worth sending
_ACCEPTED = f"a non-negative integer number of milliseconds, at most {_MAX_DIGITS} digits"


def encode_timeout(ctx: Context) -> str | None:
    """Return the header value for ``ctx``'s remaining budget, or None if it has no deadline.

    The value is rounded up to whole milliseconds so that a live context never reads as
    already expired; a deadline that has passed encodes as ``"0"``.
    """
    remaining = ctx.remaining()
    if remaining is None:
        return None
    if remaining <= 0:
        return "0"
    return str(min(math.ceil(remaining * 1000), 10**_MAX_DIGITS - 1))


def decode_timeout(value: str | bytes) -> float:
    """Parse a header value into seconds, for ``with_timeout(parent, seconds)``.

    Raises:
        InvalidArgumentError: the value is not a plain non-negative integer of at most
            ten digits (signs, spaces inside, decimals and units are refused).
    """
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidArgumentError(TIMEOUT_HEADER, value, _ACCEPTED) from None
    if not isinstance(value, str):
        raise ArgumentTypeError(TIMEOUT_HEADER, value, _ACCEPTED)
    text = value.strip()
    if not text or len(text) > _MAX_DIGITS or not (text.isascii() and text.isdigit()):
        raise InvalidArgumentError(TIMEOUT_HEADER, value, _ACCEPTED)
    return int(text) / 1000.0
