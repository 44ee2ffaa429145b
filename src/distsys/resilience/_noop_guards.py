"""Null objects for the retry, budget, rate-limit and bulkhead guards (go-zero's ``nop*``).

Each has the API of the guard it stands for and behaves as if the guard were not there,
so code that takes a guard never branches on "is this enabled?": configure
``NoopRetry()`` instead of ``Retry(...)`` to turn retries off. They keep no state beyond
counts, are thread-safe, and their ``statistics()`` return the real guards' records.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from distsys.context import Context
from distsys.resilience._budget import RetryBudgetStatistics
from distsys.resilience._bulkhead import BulkheadStatistics
from distsys.resilience._ratelimit import RateLimiterStatistics
from distsys.resilience._retry import RetryStatistics

__all__ = ["NoopBulkhead", "NoopRateLimiter", "NoopRetry", "NoopRetryBudget"]

P = ParamSpec("P")
T = TypeVar("T")


class NoopRetry:
    """A :class:`~distsys.resilience.Retry` that never retries: every call runs once.

    ``ctx=`` is accepted and ignored. Thread-safe.
    """

    __slots__ = ("name",)

    def __init__(self, name: str = "no-retry") -> None:
        self.name = name

    def call(
        self, fn: Callable[..., T], /, *args: Any, ctx: Context | None = None, **kwargs: Any
    ) -> T:
        """Return ``fn(*args, **kwargs)``."""
        return fn(*args, **kwargs)

    async def acall(
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        ctx: Context | None = None,
        **kwargs: Any,
    ) -> T:
        """Return ``await fn(*args, **kwargs)``."""
        return await fn(*args, **kwargs)

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Return ``fn`` itself (a decorator, as Retry's, that changes nothing)."""
        return fn

    def statistics(self) -> RetryStatistics:
        """Return all zeros: nothing is counted."""
        return RetryStatistics(self.name, 0, 0, 0, 0, 0, 0, 0, 0)

    def __repr__(self) -> str:
        return "NoopRetry()"


class NoopRetryBudget:
    """A :class:`~distsys.resilience.RetryBudget` that grants every retry. Thread-safe."""

    __slots__ = ()

    def record_request(self) -> None:
        """Do nothing."""

    def try_retry(self) -> bool:
        """Return True."""
        return True

    def statistics(self) -> RetryBudgetStatistics:
        """Return a budget of 100% with nothing counted."""
        return RetryBudgetStatistics(1.0, 0, math.inf, 0, 0, 0, 0, 0)

    def __repr__(self) -> str:
        return "NoopRetryBudget()"


class NoopRateLimiter:
    """A :class:`~distsys.resilience.RateLimiter` that allows everything at once.

    ``allow`` is a plain method (as RateLimiter's); use ``aacquire`` where a
    :class:`~distsys.resilience.RedisRateLimiter` may stand in its place. Thread-safe.
    """

    __slots__ = ("name",)

    def __init__(self, name: str = "no-limit") -> None:
        self.name = name

    @property
    def rate(self) -> float:
        """``math.inf``."""
        return math.inf

    @property
    def burst(self) -> int:
        """0, standing for "no limit" (as in its statistics)."""
        return 0

    def allow(self, tokens: int = 1) -> bool:
        """Return True."""
        return True

    def retry_after(self, tokens: int = 1) -> float:
        """Return 0.0."""
        return 0.0

    def acquire(
        self, tokens: int = 1, *, ctx: Context | None = None, timeout: float | None = None
    ) -> None:
        """Return at once."""

    async def aacquire(
        self, tokens: int = 1, *, ctx: Context | None = None, timeout: float | None = None
    ) -> None:
        """Return at once."""

    def statistics(self) -> RateLimiterStatistics:
        """Return an infinite rate with nothing counted."""
        return RateLimiterStatistics(self.name, math.inf, 0, math.inf, 0, 0, 0, 0)

    def __repr__(self) -> str:
        return "NoopRateLimiter()"


class NoopBulkhead:
    """A :class:`~distsys.resilience.Bulkhead` that never limits: every call runs at once.

    Thread-safe.
    """

    __slots__ = ("name",)

    def __init__(self, name: str = "no-bulkhead") -> None:
        self.name = name

    def try_acquire(self) -> bool:
        """Return True."""
        return True

    def acquire(self, *, ctx: Context | None = None, timeout: float | None = None) -> None:
        """Return at once."""

    async def aacquire(self, *, ctx: Context | None = None, timeout: float | None = None) -> None:
        """Return at once."""

    def release(self) -> None:
        """Do nothing."""

    def slot(self, *, ctx: Context | None = None, timeout: float | None = None) -> NoopBulkhead:
        """Return this bulkhead, a context manager that does nothing."""
        return self

    def __enter__(self) -> NoopBulkhead:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass

    async def __aenter__(self) -> NoopBulkhead:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass

    def call(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        ctx: Context | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> T:
        """Return ``fn(*args, **kwargs)``."""
        return fn(*args, **kwargs)

    async def acall(
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        ctx: Context | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> T:
        """Return ``await fn(*args, **kwargs)``."""
        return await fn(*args, **kwargs)

    def statistics(self) -> BulkheadStatistics:
        """Return zeros (a limit of 0 stands for "no limit")."""
        return BulkheadStatistics(self.name, 0, 0, 0, 0, 0, 0, 0, 0, 0)

    def __repr__(self) -> str:
        return "NoopBulkhead()"
