"""Null guards: the same API as the real ones, and no effect at all."""

from __future__ import annotations

import inspect
from typing import TypeVar

import pytest

from distsys.resilience._budget import RetryBudget, RetryBudgetStatistics
from distsys.resilience._bulkhead import Bulkhead, BulkheadStatistics
from distsys.resilience._noop_guards import (
    NoopBulkhead,
    NoopRateLimiter,
    NoopRetry,
    NoopRetryBudget,
)
from distsys.resilience._ratelimit import RateLimiter, RateLimiterStatistics
from distsys.resilience._retry import Retry, RetryStatistics

T = TypeVar("T")

PAIRS = [
    (Retry, NoopRetry),
    (RetryBudget, NoopRetryBudget),
    (RateLimiter, NoopRateLimiter),
    (Bulkhead, NoopBulkhead),
]


async def echo(value: T) -> T:
    return value


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    found = {}
    for name, member in inspect.getmembers(cls):
        if (name.startswith("_") and name not in ("__call__", "__enter__", "__aenter__")) or (
            not callable(member)
        ):
            continue
        found[name] = inspect.signature(member)
    return found


@pytest.mark.parametrize(("real", "noop"), PAIRS, ids=[n.__name__ for _, n in PAIRS])
def test_a_null_guard_has_every_method_of_the_real_one_with_the_same_parameters(
    real: type, noop: type
) -> None:
    real_methods = public_methods(real)
    noop_methods = public_methods(noop)
    for name, signature in real_methods.items():
        assert name in noop_methods, f"{noop.__name__} lacks {name}"
        assert list(noop_methods[name].parameters) == list(signature.parameters), name
        assert inspect.iscoroutinefunction(getattr(noop, name)) == inspect.iscoroutinefunction(
            getattr(real, name)
        ), name


def test_noop_retry_runs_each_call_once() -> None:
    calls: list[int] = []

    def fails() -> None:
        calls.append(1)
        raise ConnectionError

    retry = NoopRetry()
    with pytest.raises(ConnectionError) as info:
        retry.call(fails)
    assert calls == [1]
    assert not hasattr(info.value, "__notes__")
    assert retry.call(divmod, 7, 2, ctx=None) == (3, 1)
    assert retry(fails) is fails
    assert retry.statistics() == RetryStatistics("no-retry", 0, 0, 0, 0, 0, 0, 0, 0)
    assert repr(retry) == "NoopRetry()"


async def test_noop_retry_awaits_once() -> None:
    assert await NoopRetry().acall(echo, 5) == 5


def test_noop_budget_grants_everything() -> None:
    budget = NoopRetryBudget()
    budget.record_request()
    assert all(budget.try_retry() for _ in range(1000))
    assert isinstance(budget.statistics(), RetryBudgetStatistics)
    assert budget.statistics().share == 1.0


async def test_noop_rate_limiter_allows_everything_at_once() -> None:
    limiter = NoopRateLimiter()
    assert all(limiter.allow(10**6) for _ in range(1000))
    limiter.acquire(5, timeout=0)
    await limiter.aacquire(5, ctx=None)
    assert limiter.retry_after() == 0.0
    assert limiter.rate == float("inf")
    assert isinstance(limiter.statistics(), RateLimiterStatistics)


async def test_noop_bulkhead_never_limits() -> None:
    bulkhead = NoopBulkhead()
    assert all(bulkhead.try_acquire() for _ in range(1000))
    with bulkhead, bulkhead.slot(timeout=0):
        pass
    async with bulkhead, bulkhead.slot():
        pass
    await bulkhead.aacquire()
    bulkhead.acquire()
    bulkhead.release()
    bulkhead.release()  # no bookkeeping, so no error either
    assert bulkhead.call(divmod, 9, 4) == (2, 1)
    assert await bulkhead.acall(echo, "x") == "x"
    assert isinstance(bulkhead.statistics(), BulkheadStatistics)
