"""Resilience: circuit breakers, adaptive throttling, retries, rate limits and bulkheads.

``CircuitBreaker`` (closed / open / half-open over a time- or count-based rolling
window, resilience4j- and Hystrix-style), ``AdaptiveBreaker`` (Google SRE client-side
throttling, go-zero's ``googlebreaker``) and ``NoopBreaker`` (the null object) all
satisfy the ``Breaker`` protocol: ``call`` / ``acall``, ``@breaker``, ``with breaker:``
and ``allow()`` permits. Every class takes ``clock=`` (and ``rng=`` where it draws) and
is thread-safe. See docs/resilience.md.
"""

from distsys.resilience._adaptive import AdaptiveBreaker, AdaptiveStatistics
from distsys.resilience._breaker import CircuitBreaker
from distsys.resilience._breaker_base import Breaker, Permit
from distsys.resilience._breaker_checks import ExceptionFilter
from distsys.resilience._breaker_state import BreakerState, BreakerStatistics, StateChange
from distsys.resilience._breaker_window import CountWindow, TimeWindow
from distsys.resilience._budget import RetryBudget, RetryBudgetStatistics
from distsys.resilience._bulkhead import Bulkhead, BulkheadStatistics
from distsys.resilience._bulkhead_slot import BulkheadSlot
from distsys.resilience._noop_breaker import NoopBreaker
from distsys.resilience._noop_guards import (
    NoopBulkhead,
    NoopRateLimiter,
    NoopRetry,
    NoopRetryBudget,
)
from distsys.resilience._ratelimit import RateLimiter, RateLimiterStatistics
from distsys.resilience._ratelimit_bucket import TokenBucket
from distsys.resilience._ratelimit_redis import RedisRateLimiter, RedisRateLimiterStatistics
from distsys.resilience._retry import Retry, RetryStatistics
from distsys.resilience._retry_policy import Backoff, RetryDecision, RetryPolicy

__all__ = [
    # breakers
    "Breaker",
    "Permit",
    "CircuitBreaker",
    "AdaptiveBreaker",
    "NoopBreaker",
    "BreakerState",
    "BreakerStatistics",
    "AdaptiveStatistics",
    "StateChange",
    "TimeWindow",
    "CountWindow",
    "ExceptionFilter",
    # retries, retry budgets, rate limits and bulkheads
    "Retry",
    "RetryStatistics",
    "RetryPolicy",
    "RetryDecision",
    "Backoff",
    "RetryBudget",
    "RetryBudgetStatistics",
    "RateLimiter",
    "RateLimiterStatistics",
    "TokenBucket",
    "RedisRateLimiter",
    "RedisRateLimiterStatistics",
    "Bulkhead",
    "BulkheadSlot",
    "BulkheadStatistics",
    "NoopRetry",
    "NoopRetryBudget",
    "NoopRateLimiter",
    "NoopBulkhead",
]
