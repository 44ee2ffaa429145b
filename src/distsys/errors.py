"""The exception tree of distsys.

Every error distsys raises on purpose derives from :class:`DistsysError`. Leaves are
specific, carry their data as attributes, and also derive from the built-in exception
they resemble, so ``except TimeoutError`` or ``except ValueError`` keep working::

    DistsysError
    ├── InvalidArgumentError (ValueError)      bad configuration or argument: .field, .accepted
    │   ├── ArgumentTypeError (TypeError)      an argument of the wrong kind
    │   └── UnknownSchemeError                 a backend URL's scheme is not known: .scheme,
    │                                          .known, .suggestion
    ├── MissingDependencyError (ImportError)   a backend's client library is not installed:
    │                                          .extra (pip install 'distsys[<extra>]')
    ├── BackendUnavailableError (ConnectionError)
    │                                          a backend server cannot be reached: .url
    ├── LeaseExpiredError (LookupError)        a key was written under a lease that expired
    │                                          or was revoked: .lease
    ├── NoInstancesError (LookupError)         no eligible instance of a service: .service
    ├── RejectedError                          a resilience guard refused the call at once
    │   ├── BreakerOpenError                   a circuit breaker is open: .name, .retry_after
    │   ├── BulkheadFullError                  a bulkhead has no room: .name, .limit
    │   └── RateLimitedError                   a rate limiter has no token: .name, .retry_after
    ├── BlockingCallInLoopError (RuntimeError) a blocking call made on an event loop's thread
    ├── WouldBlock                             a *_nowait operation could not complete at once
    ├── ChannelClosedError                     send on / close of a closed channel, or a
    │                                          receive from a closed, drained one: .index
    ├── EmptyRingError (LookupError)           a hash ring with no nodes was asked for one
    └── ContextError                           a Context ended
        ├── CanceledError                      cancelled by its cancel function or a parent
        └── DeadlineExceededError (TimeoutError)
                                               its deadline, or an operation's timeout, passed

``asyncio.CancelledError`` is never turned into one of these: cancellation of a task
stays cancellation. ``CanceledError`` is the *reason* a :class:`~distsys.context.Context`
ended, as returned by ``Context.err()``.
"""

from __future__ import annotations

from typing import Any, Self

__all__ = [
    "ArgumentTypeError",
    "BackendUnavailableError",
    "BlockingCallInLoopError",
    "CanceledError",
    "ChannelClosedError",
    "ContextError",
    "DeadlineExceededError",
    "DistsysError",
    "EmptyRingError",
    "InvalidArgumentError",
    "LeaseExpiredError",
    "MissingDependencyError",
    "NoInstancesError",
    "RejectedError",
    "BreakerOpenError",
    "BulkheadFullError",
    "RateLimitedError",
    "UnknownSchemeError",
    "WouldBlock",
]


class DistsysError(Exception):
    """Base class of every error raised by distsys.

    Every distsys error pickles (to cross from a worker process or a cluster back to the
    caller) with the arguments it was made with, whatever its constructor takes, and with
    its attributes and notes.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        error = super().__new__(cls, *args)
        error._made_with = (args, kwargs)
        return error

    _made_with: tuple[tuple[Any, ...], dict[str, Any]]

    def __reduce__(self) -> tuple[Any, ...]:
        args, kwargs = self._made_with
        state = {k: v for k, v in self.__dict__.items() if k != "_made_with"}
        return (_remake, (type(self), args, kwargs), state)


def _remake(
    kind: type[DistsysError], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> DistsysError:
    """Make an unpickled distsys error again with its constructor's arguments."""
    return kind(*args, **kwargs)


class InvalidArgumentError(DistsysError, ValueError):
    """An argument or configuration value is not acceptable.

    Attributes:
        field: the argument or configuration key that was wrong.
        value: the value that was given.
        accepted: a human-readable description of what is accepted.
    """

    def __init__(self, field: str, value: Any, accepted: str, *, detail: str = "") -> None:
        self.field = field
        self.value = value
        self.accepted = accepted
        message = f"{field}={value!r} is not accepted: expected {accepted}"
        if detail:
            message = f"{message} ({detail})"
        super().__init__(message)


class ArgumentTypeError(InvalidArgumentError, TypeError):
    """An argument is of the wrong kind (for example a non-channel given to ``select``)."""


class UnknownSchemeError(InvalidArgumentError):
    """A backend URL names a scheme distsys does not know for that concept.

    Attributes:
        scheme: the scheme that was given.
        known: the schemes that are accepted, sorted.
        suggestion: the closest known scheme, or None.
    """

    def __init__(self, url: str, scheme: str, known: list[str], suggestion: str | None) -> None:
        self.scheme = scheme
        self.known = sorted(known)
        self.suggestion = suggestion
        hint = f"did you mean {suggestion}://?" if suggestion else ""
        super().__init__(
            "url",
            url,
            f"a URL whose scheme is one of {', '.join(s + '://' for s in self.known)}",
            detail=hint,
        )


class MissingDependencyError(DistsysError, ImportError):
    """The client library a backend needs is not installed.

    Attributes:
        extra: the distsys extra that installs it.
    """

    def __init__(self, scheme: str, library: str, extra: str) -> None:
        self.extra = extra
        super().__init__(
            f"{scheme}:// needs the {library!r} client library: pip install 'distsys[{extra}]'"
        )


class BackendUnavailableError(DistsysError, ConnectionError):
    """A backend server could not be reached, or stopped answering.

    Attributes:
        url: the backend's URL, with any password masked.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(f"{url} is unavailable: {reason}")


class LeaseExpiredError(DistsysError, LookupError):
    """A key was written under a lease that has expired or was revoked.

    Attributes:
        lease: the lease id.
    """

    def __init__(self, lease: int) -> None:
        self.lease = lease
        super().__init__(f"lease {lease} has expired or was revoked; grant() a new one")


class NoInstancesError(DistsysError, LookupError):
    """No instance of a service is eligible (none registered, or all draining or ejected).

    Attributes:
        service: the service name.
        reason: why none was eligible.
    """

    def __init__(self, service: str, reason: str = "no instance is registered") -> None:
        self.service = service
        self.reason = reason
        super().__init__(f"no instance of {service!r} is available: {reason}")


class RejectedError(DistsysError):
    """A resilience guard (breaker, bulkhead, rate limiter) refused a call without running it.

    Attributes:
        name: the guard's name.
        retry_after: seconds after which trying again may succeed, or None if unknown.
    """

    def __init__(self, name: str, message: str, *, retry_after: float | None = None) -> None:
        self.name = name
        self.retry_after = retry_after
        super().__init__(message)


class BreakerOpenError(RejectedError):
    """The circuit breaker is open (or its half-open trial slots are taken): fail fast."""

    def __init__(self, name: str, retry_after: float | None) -> None:
        hint = f"; retry after {retry_after:.3f}s" if retry_after is not None else ""
        super().__init__(name, f"circuit breaker {name!r} is open{hint}", retry_after=retry_after)


class BulkheadFullError(RejectedError):
    """The bulkhead's concurrent calls and waiting places are all taken.

    Attributes:
        limit: the bulkhead's concurrency limit.
    """

    def __init__(self, name: str, limit: int, reason: str = "no place left") -> None:
        self.limit = limit
        super().__init__(name, f"bulkhead {name!r} is full (limit {limit}): {reason}")


class RateLimitedError(RejectedError):
    """The rate limiter has no token for this call now."""

    def __init__(self, name: str, retry_after: float | None) -> None:
        hint = f"; next token in {retry_after:.3f}s" if retry_after is not None else ""
        super().__init__(name, f"rate limit {name!r} exceeded{hint}", retry_after=retry_after)


class BlockingCallInLoopError(DistsysError, RuntimeError):
    """A blocking (thread-side) call was made on a thread that runs an event loop.

    Blocking there would stall every task of the loop, and deadlock if the peer it waits
    for runs on that loop. Use the ``await`` form instead.
    """

    def __init__(self, call: str) -> None:
        self.call = call
        super().__init__(f"{call} would block the running event loop; await the async form instead")


class WouldBlock(DistsysError):
    """A ``*_nowait`` operation could not complete without waiting."""


class ChannelClosedError(DistsysError):
    """The channel is closed.

    Raised by a send on a closed channel, by closing it twice, and by a receive once the
    channel is closed and its buffer drained.

    Attributes:
        index: when raised by ``select``, the position of the case whose channel is closed.
    """

    def __init__(self, message: str = "channel is closed", *, index: int | None = None) -> None:
        self.index = index
        super().__init__(message)


class EmptyRingError(DistsysError, LookupError):
    """A hash ring with no nodes was asked to place a key."""

    def __init__(self, message: str = "the hash ring has no nodes; add() one first") -> None:
        super().__init__(message)


class ContextError(DistsysError):
    """A :class:`~distsys.context.Context` ended; see its two subclasses."""


class CanceledError(ContextError):
    """The context was cancelled (by its cancel function or through a parent)."""

    def __init__(self, message: str = "context canceled", *, cause: BaseException | None = None):
        self.cause = cause
        super().__init__(message)


class DeadlineExceededError(ContextError, TimeoutError):
    """A deadline or timeout passed before the work completed."""

    def __init__(self, message: str = "context deadline exceeded") -> None:
        super().__init__(message)
