"""NoopBreaker: the breaker that is not there, with the same API (a null object).

Code that takes a :class:`~distsys.resilience.Breaker` never has to ask whether one is
configured: give it a ``NoopBreaker`` and every call goes straight through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from distsys.clock import Clock
from distsys.resilience._breaker_base import BreakerBase
from distsys.resilience._breaker_checks import check_clock, check_name
from distsys.resilience._breaker_state import BreakerState, BreakerStatistics

__all__ = ["NoopBreaker"]

P = ParamSpec("P")
R = TypeVar("R")


class NoopBreaker(BreakerBase):
    """A breaker that admits every call and records nothing (go-zero's ``nopBreaker``).

    ``call`` and ``acall`` just call the function; ``@breaker`` returns the function
    unchanged, so decorating costs nothing at all; ``statistics()`` reports a
    ``DISABLED`` breaker that has seen no call. Stateless, so thread-safe.

    Args:
        name: the breaker's name (default ``"noop"``).
        clock: the time source of ``permit.started`` (default
            :class:`~distsys.clock.MonotonicClock`).
    """

    __slots__ = ("_name", "_now")

    def __init__(self, name: str = "noop", *, clock: Clock | None = None) -> None:
        self._name = check_name(name)
        self._now = check_clock(clock).now

    @property
    def name(self) -> str:
        """The breaker's name."""
        return self._name

    def allow(self) -> _NoopPermit:
        """Return a permit that records nothing; never raises."""
        return _NoopPermit(self._now())

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Return ``fn(*args, **kwargs)``."""
        return fn(*args, **kwargs)

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Return ``await fn(*args, **kwargs)``."""
        return await fn(*args, **kwargs)

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Return ``fn`` itself: there is nothing to guard."""
        return fn

    def __enter__(self) -> _NoopPermit:
        return self.allow()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def statistics(self) -> BreakerStatistics:
        """Return the statistics of a disabled breaker that has seen no call."""
        return BreakerStatistics(
            name=self._name,
            state=BreakerState.DISABLED,
            calls=0,
            failures=0,
            slow_calls=0,
            failure_rate=0.0,
            slow_call_rate=0.0,
            minimum_calls=0,
            retry_after=None,
            wait_duration=0.0,
            half_open_in_flight=0,
            half_open_successes=0,
            rejected=0,
            opened=0,
            abandoned=0,
        )

    def __repr__(self) -> str:
        return f"NoopBreaker({self._name!r})"


class _NoopPermit:
    """A :class:`~distsys.resilience.Permit` that records nothing."""

    __slots__ = ("_done", "_start")

    def __init__(self, start: float) -> None:
        self._start = start
        self._done = False

    @property
    def started(self) -> float:
        return self._start

    @property
    def done(self) -> bool:
        return self._done

    def _end(self) -> bool:
        done, self._done = self._done, True
        return not done

    def success(self) -> bool:
        return self._end()

    def failure(self, exc: BaseException | None = None) -> bool:
        return self._end()

    def ignore(self) -> bool:
        return self._end()

    def __enter__(self) -> _NoopPermit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done = True
