"""ClientSettings: a ServiceClient's retry, timeout and body settings, validated once."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.resilience import Backoff

__all__ = ["ClientSettings", "check_seconds"]


def check_seconds(field: str, value: object, *, allow_none: bool = True) -> float | None:
    """Return ``value`` as seconds (> 0, finite), or None when allowed.

    Raises:
        InvalidArgumentError / ArgumentTypeError: naming ``field``.
    """
    accepted = "a finite number of seconds > 0" + (", or None" if allow_none else "")
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentTypeError(field, value, accepted)
    if not 0 < value < float("inf"):
        raise InvalidArgumentError(field, value, accepted)
    return float(value)


class ClientSettings:
    """The per-call settings of a ServiceClient (see its docstring for each one).

    Immutable after construction; safe to share.

    Raises:
        InvalidArgumentError / ArgumentTypeError: a setting is invalid (the message names
            it).
    """

    __slots__ = (
        "attempt_timeout",
        "attempts",
        "backoff",
        "headers",
        "max_body",
        "retry_statuses",
        "timeout",
    )

    def __init__(
        self,
        *,
        attempts: int,
        backoff: Backoff,
        retry_statuses: Collection[int],
        timeout: float | None,
        attempt_timeout: float | None,
        max_body: int,
        headers: Mapping[str, str] | None,
    ) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise ArgumentTypeError("attempts", attempts, "an int >= 1")
        if attempts < 1:
            raise InvalidArgumentError("attempts", attempts, "an int >= 1")
        self.attempts = attempts
        if not isinstance(backoff, Backoff):
            raise ArgumentTypeError("backoff", backoff, "a Backoff")
        self.backoff = backoff
        try:
            statuses = frozenset(retry_statuses)
        except TypeError:
            raise ArgumentTypeError(
                "retry_statuses", retry_statuses, "a collection of statuses"
            ) from None
        if not all(isinstance(s, int) and 100 <= s <= 599 for s in statuses):
            raise InvalidArgumentError("retry_statuses", retry_statuses, "statuses in 100..599")
        self.retry_statuses = statuses
        self.timeout = check_seconds("timeout", timeout)
        self.attempt_timeout = check_seconds("attempt_timeout", attempt_timeout)
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 0:
            raise InvalidArgumentError("max_body", max_body, "an int >= 0 (bytes)")
        self.max_body = max_body
        self.headers: tuple[tuple[bytes, bytes], ...] = ()
        if headers is not None:
            if not isinstance(headers, Mapping):
                raise ArgumentTypeError("headers", headers, "a mapping of str to str")
            try:
                self.headers = tuple(
                    (k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
                )
            except (AttributeError, UnicodeEncodeError):
                raise InvalidArgumentError(
                    "headers", headers, "a mapping of Latin-1 str to Latin-1 str"
                ) from None
