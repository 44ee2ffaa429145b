"""TokenBucket: the arithmetic of a token bucket, pure (the time is an argument).

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens per second. A taker
*reserves*: :meth:`TokenBucket.take` always removes its tokens and returns how long the
taker must wait until they are due, so the level may go below zero (tokens promised to
waiters). This is golang.org/x/time/rate's reservation model, and GCRA's: the waits of
successive takers queue up in order, so waiters are served first come, first served, a
large request is never starved by small ones, and the grants over any interval
``[t1, t2]`` (a grant happens when its wait ends) never exceed ``rate * (t2 - t1) +
burst``.

A taker that gives up before its wait ends (cancelled) returns its tokens with
:meth:`TokenBucket.give_back`; the level becomes what it would have been had it never
asked (capped at ``burst``), so a cancelled waiter leaks nothing. Waiters queued behind
it keep their (now pessimistic) waits.
"""

from __future__ import annotations

from distsys.errors import InvalidArgumentError
from distsys.resilience._retry_checks import check_count, check_real

__all__ = ["TokenBucket"]


class TokenBucket:
    """A token bucket's state: ``rate`` tokens per second, at most ``burst``; starts full.

    Pure: every method takes ``now`` (seconds on any monotonic scale) and does no I/O.
    Not thread-safe: the rate limiters hold a lock around it. Time going backwards is
    treated as no time passing.

    Args:
        rate: tokens added per second (finite, > 0).
        burst: the most tokens the bucket holds (an int >= 1).
        now: the time the bucket is created at (full).

    Raises:
        InvalidArgumentError: ``rate`` or ``burst`` is out of range.
        ArgumentTypeError: a value is of the wrong kind.
    """

    __slots__ = ("_level", "_updated", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float = 0.0) -> None:
        accepted = "a finite number of tokens per second > 0"
        self.rate = check_real("rate", rate, accepted)
        if self.rate <= 0:
            raise InvalidArgumentError("rate", rate, accepted)
        self.burst = check_count("burst", burst, 1)
        self._level = float(self.burst)
        self._updated = now

    def _advance(self, now: float) -> float:
        if now > self._updated:
            self._level = min(self.burst, self._level + (now - self._updated) * self.rate)
            self._updated = now
        return self._level

    def level(self, now: float) -> float:
        """Return the tokens in the bucket at ``now`` (negative: promised to waiters)."""
        return self._advance(now)

    def wait_time(self, now: float, tokens: int = 1) -> float:
        """Return the seconds from ``now`` until ``tokens`` could be taken (0.0: now)."""
        missing = tokens - self._advance(now)
        return missing / self.rate if missing > 0 else 0.0

    def take(self, now: float, tokens: int = 1) -> float:
        """Reserve ``tokens`` at ``now``; return the seconds until they are due (0.0: now)."""
        wait = self.wait_time(now, tokens)
        self._level -= tokens
        return wait

    def give_back(self, now: float, tokens: int = 1) -> None:
        """Return ``tokens`` a taker reserved and will not use (capped at ``burst``)."""
        self._level = min(self.burst, self._advance(now) + tokens)

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate!r}, burst={self.burst}, level={self._level:.3f})"
