"""RetryBudget: retries may be at most a share of recent requests, so failures don't storm.

Without a budget, every client of a failing dependency multiplies its load by the number
of attempts (3 attempts: 3x) exactly when it can least take it. A budget caps retries at
a share of the requests each client made recently (Envoy's ``retry_budget``, whose
``budget_percent`` defaults to 20%; the Google SRE book uses 10% per client; Finagle's
``RetryBudget`` keeps a floor of retries for quiet clients).

The rule, exactly: a retry is granted when, counting it, the retries recorded in the
window are at most ``max(min_retries, share * requests)``, where ``requests`` counts the
calls recorded in the window (first attempts; retries are not requests). The window is
the last ``window`` seconds, in ``buckets`` buckets (a :class:`RollingCounter`), so
counts leave it a bucket at a time. ``min_retries`` is a per-window floor: a client that
made 4 requests in the window may still retry 3 times (Envoy's floor,
``min_retry_concurrency``, counts concurrent retries instead; a count per window needs no
bookkeeping of when each retry ends).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from fractions import Fraction

from distsys.clock import Clock
from distsys.metrics import RollingCounter
from distsys.resilience._retry_checks import (
    check_clock,
    check_count,
    check_seconds,
    check_share,
)

__all__ = ["RetryBudget", "RetryBudgetStatistics"]


@dataclass(frozen=True, slots=True)
class RetryBudgetStatistics:
    """A snapshot of a :class:`RetryBudget`.

    Attributes:
        share: the most retries may be, as a share of the requests in the window.
        min_retries: the retries allowed per window whatever the traffic.
        window: the seconds the budget looks back over.
        requests: requests recorded in the window now.
        retries: retries granted in the window now.
        available: retries that would be granted now.
        granted: retries granted since creation.
        denied: retries refused since creation.
    """

    share: float
    min_retries: int
    window: float
    requests: int
    retries: int
    available: int
    granted: int
    denied: int


class RetryBudget:
    """Allow retries up to a share of recent requests; see the module docstring.

    Share one budget between every :class:`~distsys.resilience.Retry` that calls the same
    dependency (one budget per client of a service); each driver calls
    :meth:`record_request` once per call and :meth:`try_retry` before each retry.

    Thread-safe: one lock guards each check-and-record, so concurrent callers never
    overdraw it.

    Args:
        share: the most retries may be, as a share of requests, in [0, 1] (default 0.2).
        min_retries: retries allowed per window whatever the traffic (>= 0; default 3).
        window: the seconds to look back over (> 0; default 10).
        buckets: how many buckets the window rolls by (>= 1; default 10).
        clock: the time source (default: :class:`~distsys.clock.MonotonicClock`).

    Raises:
        InvalidArgumentError: a value is out of range (naming the field).
        ArgumentTypeError: a value is of the wrong kind.
    """

    __slots__ = (
        "_counter",
        "_denied",
        "_granted",
        "_lock",
        "_ratio",
        "_window",
        "min_retries",
        "share",
    )

    def __init__(
        self,
        share: float = 0.2,
        *,
        min_retries: int = 3,
        window: float = 10.0,
        buckets: int = 10,
        clock: Clock | None = None,
    ) -> None:
        self.share = check_share("share", share)
        # The share as the fraction its user wrote (0.29, not 0.28999...): 29% of 100
        # requests allows 29 retries, not 28.
        self._ratio = Fraction(repr(self.share))
        self.min_retries = check_count("min_retries", min_retries, 0)
        self._window = check_seconds("window", window)
        check_count("buckets", buckets, 1)
        self._counter = RollingCounter(
            buckets,
            self._window / buckets,
            fields=("requests", "retries"),
            clock=check_clock(clock),
            thread_safe=False,
        )
        self._lock = threading.Lock()
        self._granted = 0
        self._denied = 0

    def _allowance(self, requests: int) -> int:
        """Return the most retries the window may hold with ``requests`` requests in it."""
        return max(self.min_retries, math.floor(self._ratio * requests))

    def record_request(self) -> None:
        """Count one request (a call's first attempt)."""
        with self._lock:
            self._counter.add(1)

    def try_retry(self) -> bool:
        """Grant and record one retry if the budget allows it now.

        Returns:
            True if the caller may retry (the retry is counted), False if the budget is
            spent (nothing is counted but the refusal).
        """
        with self._lock:
            requests, retries = self._counter.totals()
            if retries < self._allowance(requests):
                self._counter.add(0, 1)
                self._granted += 1
                return True
            self._denied += 1
            return False

    def statistics(self) -> RetryBudgetStatistics:
        """Return the counts in the window now, and the totals since creation."""
        with self._lock:
            requests, retries = self._counter.totals()
            return RetryBudgetStatistics(
                share=self.share,
                min_retries=self.min_retries,
                window=self._window,
                requests=requests,
                retries=retries,
                available=max(0, self._allowance(requests) - retries),
                granted=self._granted,
                denied=self._denied,
            )

    def __repr__(self) -> str:
        return (
            f"RetryBudget(share={self.share!r}, min_retries={self.min_retries}, "
            f"window={self._window!r})"
        )
