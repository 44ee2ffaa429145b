"""The breaker's rolling windows: which calls it judges, and their counts.

Two shapes, as in resilience4j: :class:`TimeWindow` judges the calls of the last N
seconds (kept in buckets, Hystrix's rolling window), :class:`CountWindow` the last N
calls. Both keep three totals — calls, failures, slow calls — updated in O(1) per call.

The time-based counts split a call's bookkeeping in two so that the breaker's hot path
needs no lock (see ``_breaker.py``): successes that are neither slow nor the first call
of a new bucket only bump a shared counter (``ok``, an ever-growing int owned by the
breaker), and each bucket remembers the value of ``ok`` when it became current (its
*mark*). The window's plain successes are then ``ok`` now minus the mark of its oldest
bucket. Everything else — failures, slow calls, rolls — is recorded here, under the
breaker's lock. Nothing in this module is thread-safe on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from distsys.clock import Clock
from distsys.metrics._ring import BucketRing
from distsys.resilience._breaker_checks import check_count, check_seconds

__all__ = ["CountWindow", "TimeWindow", "WindowCounts", "make_counts"]


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Judge the calls of the last ``seconds``, kept in ``buckets`` buckets.

    The window is the current bucket and the ``buckets - 1`` before it, so it covers
    between ``seconds - seconds / buckets`` and ``seconds`` of history. More buckets make
    old calls leave more smoothly; they cost nothing per call.

    Raises:
        InvalidArgumentError: ``seconds`` is not > 0, or ``buckets`` is not >= 1.
        ArgumentTypeError: one of them is not a number.
    """

    seconds: float = 10.0
    buckets: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "seconds", check_seconds("seconds", self.seconds))
        check_count("buckets", self.buckets, 1)

    def __str__(self) -> str:
        return f"last {self.seconds:g} s in {self.buckets} buckets"


@dataclass(frozen=True, slots=True)
class CountWindow:
    """Judge the last ``calls`` calls.

    Raises:
        InvalidArgumentError: ``calls`` is not >= 1.
        ArgumentTypeError: ``calls`` is not an int.
    """

    calls: int = 100

    def __post_init__(self) -> None:
        check_count("calls", self.calls, 1)

    def __str__(self) -> str:
        return f"last {self.calls} calls"


class WindowCounts(Protocol):
    """The calls, failures and slow calls of a window (what both shapes offer)."""

    @property
    def next_roll(self) -> float:
        """When the window next needs :meth:`roll` (``inf`` if never)."""
        ...

    def reset(self, now: float, ok: int) -> None:
        """Forget every call; ``ok`` is the breaker's plain-success count now."""
        ...

    def roll(self, now: float, ok: int) -> None:
        """Let the calls older than the window leave it."""
        ...

    def record(self, now: float, ok: int, failed: bool, slow: bool) -> None:
        """Count one call that ended at ``now``."""
        ...

    def totals(self, ok: int) -> tuple[int, int, int]:
        """Return ``(calls, failures, slow calls)`` in the window."""
        ...


class _Bucket:
    __slots__ = ("calls", "failures", "mark", "slow")

    def __init__(self) -> None:
        self.mark = 0  # the breaker's ok count when this bucket became current
        self.calls = 0  # calls recorded here (all but the lock-free plain successes)
        self.failures = 0
        self.slow = 0


class TimeCounts(BucketRing[_Bucket]):
    """The counts of a :class:`TimeWindow` over a :class:`BucketRing`."""

    __slots__ = ("_calls", "_failures", "_ok", "_slow")

    def __init__(self, spec: TimeWindow, clock: Clock) -> None:
        self._calls = self._failures = self._slow = 0  # totals of the live buckets
        self._ok = 0  # the mark given to the buckets entered by the next roll
        super().__init__(
            spec.buckets,
            spec.seconds / spec.buckets,
            clock=clock,
            ignore_current=False,
            thread_safe=False,
        )

    @property
    def next_roll(self) -> float:
        return self._next_roll

    def _new_bucket(self) -> _Bucket:
        return _Bucket()

    def _clear_bucket(self, bucket: _Bucket) -> None:
        self._calls -= bucket.calls
        self._failures -= bucket.failures
        self._slow -= bucket.slow
        bucket.calls = bucket.failures = bucket.slow = 0
        bucket.mark = self._ok

    def reset(self, now: float, ok: int) -> None:
        self._ok = ok
        self._restart(now)

    def roll(self, now: float, ok: int) -> None:
        if now >= self._next_roll:
            self._ok = ok
            self._roll(now)

    def record(self, now: float, ok: int, failed: bool, slow: bool) -> None:
        if now >= self._next_roll:
            self._ok = ok
            self._roll(now)
        bucket = self._cur
        bucket.calls += 1
        self._calls += 1
        if failed:
            bucket.failures += 1
            self._failures += 1
        if slow:
            bucket.slow += 1
            self._slow += 1

    def totals(self, ok: int) -> tuple[int, int, int]:
        # The slot after the current one holds the oldest bucket of the window; in a
        # young window it has not been used yet and carries the mark of the restart.
        oldest = self._buckets[(self._slot + 1) % self._size]
        return ok - oldest.mark + self._calls, self._failures, self._slow


_FAILED = 1
_SLOW = 2


class CountCounts:
    """The counts of a :class:`CountWindow`: a ring of the last N outcomes."""

    __slots__ = ("_calls", "_failures", "_next", "_outcomes", "_slow", "next_roll")

    def __init__(self, spec: CountWindow) -> None:
        self._outcomes = bytearray(spec.calls)
        self.next_roll = math.inf
        self.reset(0.0, 0)

    def reset(self, now: float, ok: int) -> None:
        self._outcomes[:] = bytes(len(self._outcomes))
        self._next = 0
        self._calls = self._failures = self._slow = 0

    def roll(self, now: float, ok: int) -> None:
        return None

    def record(self, now: float, ok: int, failed: bool, slow: bool) -> None:
        outcomes, i = self._outcomes, self._next
        if self._calls == len(outcomes):  # full: the oldest outcome leaves
            old = outcomes[i]
            self._failures -= old & _FAILED
            self._slow -= (old & _SLOW) >> 1
        else:
            self._calls += 1
        outcomes[i] = (_FAILED if failed else 0) | (_SLOW if slow else 0)
        self._failures += failed
        self._slow += slow
        self._next = (i + 1) % len(outcomes)

    def totals(self, ok: int) -> tuple[int, int, int]:
        return self._calls, self._failures, self._slow


def make_counts(spec: TimeWindow | CountWindow, clock: Clock) -> WindowCounts:
    """Return empty counts for the window ``spec``."""
    if isinstance(spec, TimeWindow):
        return TimeCounts(spec, clock)
    return CountCounts(spec)
