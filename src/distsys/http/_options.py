"""PoolOptions: the limits of a connection pool, validated once."""

from __future__ import annotations

from typing import Final

from distsys.clock import Clock, MonotonicClock
from distsys.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["PoolOptions"]

_SECONDS: Final = "a finite number of seconds > 0"


def _count(field: str, value: object, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(field, value, f"an int >= {low}")
    if value < low:
        raise InvalidArgumentError(field, value, f"an int >= {low}")
    return value


def _seconds(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentTypeError(field, value, _SECONDS)
    if not 0 < value < float("inf"):
        raise InvalidArgumentError(field, value, _SECONDS)
    return float(value)


class PoolOptions:
    """The limits of a pool, validated once (shared by every pool of an HTTPClient).

    Not changed after it is made, so pools on any loop or thread may share it.

    Raises:
        InvalidArgumentError / ArgumentTypeError: a limit is invalid (the message names it).
    """

    __slots__ = (
        "clock",
        "connect_timeout",
        "idle_timeout",
        "max_connections",
        "max_header_bytes",
        "max_headers",
        "max_idle",
        "read_buffer",
    )

    def __init__(
        self,
        *,
        max_connections: int = 100,
        max_idle: int | None = None,
        idle_timeout: float = 4.0,
        connect_timeout: float = 5.0,
        max_header_bytes: int = 65536,
        max_headers: int = 100,
        read_buffer: int = 65536,
        clock: Clock | None = None,
    ) -> None:
        self.max_connections = _count("max_connections", max_connections)
        self.max_idle = (
            self.max_connections if max_idle is None else _count("max_idle", max_idle, 0)
        )
        self.idle_timeout = _seconds("idle_timeout", idle_timeout)
        self.connect_timeout = _seconds("connect_timeout", connect_timeout)
        self.max_header_bytes = _count("max_header_bytes", max_header_bytes, 256)
        self.max_headers = _count("max_headers", max_headers)
        self.read_buffer = _count("read_buffer", read_buffer, 1024)
        if clock is not None and not (callable(getattr(clock, "now", None))):
            raise ArgumentTypeError("clock", clock, "a Clock (now(), call_later())")
        self.clock: Clock = clock if clock is not None else MonotonicClock()
