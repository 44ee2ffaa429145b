"""RateLimiter: a token bucket for one process, shared by its threads and tasks.

The arithmetic is :class:`~distsys.resilience._ratelimit_bucket.TokenBucket`'s; this
module adds a lock, the clock, the waiting (a thread blocks, a task sleeps) and the
decisions about deadlines.

Waiting, exactly: an ``acquire`` reserves its tokens at once and then sleeps until they
are due, so waiters are served first come, first served (fair FIFO) and ``allow()`` never
jumps the queue. Before reserving it compares the wait with what the caller allows: the
``timeout``, and the context's remaining time. If the wait would not end before the
deadline (or would exceed the timeout), it reserves nothing and raises
:class:`~distsys.errors.RateLimitedError` at once, whose ``retry_after`` is the exact wait
the bucket would have needed: the limiter refuses, rather than spend the caller's time
on a wait it knows is too long (golang.org/x/time/rate's ``Wait`` refuses the same way).
A context that was already over on entry, or that is cancelled while its caller waits,
raises its own error (``ctx.err()``); a cancelled task raises ``CancelledError``. Either
way the reserved tokens go back to the bucket.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from distsys.clock import Clock
from distsys.concurrency._chan import reject_blocking_in_loop
from distsys.context import Context
from distsys.errors import DeadlineExceededError, RateLimitedError
from distsys.resilience._ratelimit_bucket import TokenBucket
from distsys.resilience._retry_checks import (
    check_clock,
    check_context,
    check_name,
    check_timeout,
    check_tokens,
)
from distsys.resilience._retry_wait import sleep_async, sleep_blocking

__all__ = ["RateLimiter", "RateLimiterStatistics"]


@dataclass(frozen=True, slots=True)
class RateLimiterStatistics:
    """A snapshot of a rate limiter.

    Attributes:
        name: the limiter's name (for a Redis limiter, its key).
        rate: tokens added per second.
        burst: the most tokens the bucket holds.
        tokens: the tokens in the bucket now; negative while promised to waiters (None
            where only a server knows, as for a Redis limiter).
        granted: requests granted (at once, or after waiting).
        rejected: requests refused (``allow()`` returned False, or ``RateLimitedError``).
        waiting: callers waiting for their tokens now.
        canceled: waiters that gave up (cancelled, or their context ended) and returned
            their tokens.
    """

    name: str
    rate: float
    burst: int
    tokens: float | None
    granted: int
    rejected: int
    waiting: int
    canceled: int


def _raise_ended(ctx: Context | None) -> None:
    """Raise why ``ctx`` ended (a wait returns early only when its context ends)."""
    err = None if ctx is None else ctx.err()
    raise err if err is not None else DeadlineExceededError()


class RateLimiter:
    """Allow ``rate`` requests per second on average, and bursts of up to ``burst``.

    ``allow()`` answers at once; ``acquire()`` blocks a thread and ``await aacquire()``
    a task until the tokens are due, in arrival order (fair FIFO). The bucket starts
    full. See the module docstring for deadlines and what is raised.

    Thread-safe: threads and tasks of any number of event loops may share one limiter
    (one lock, held only for the arithmetic).

    Args:
        name: the limiter's name, carried by its ``RateLimitedError``.
        rate: tokens added per second (finite, > 0).
        burst: the most tokens the bucket holds (an int >= 1); a request may take at
            most this many.
        clock: the time source (default: :class:`~distsys.clock.MonotonicClock`).

    Raises:
        InvalidArgumentError: a value is out of range (naming the field).
        ArgumentTypeError: a value is of the wrong kind.
    """

    __slots__ = (
        "_bucket",
        "_canceled",
        "_clock",
        "_granted",
        "_lock",
        "_rejected",
        "_waiting",
        "name",
    )

    def __init__(self, name: str, *, rate: float, burst: int, clock: Clock | None = None) -> None:
        self.name = check_name(name)
        self._clock = check_clock(clock)
        self._bucket = TokenBucket(rate, burst, self._clock.now())
        self._lock = threading.Lock()
        self._granted = self._rejected = self._waiting = self._canceled = 0

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self._bucket.rate

    @property
    def burst(self) -> int:
        """The most tokens the bucket holds."""
        return self._bucket.burst

    def allow(self, tokens: int = 1) -> bool:
        """Take ``tokens`` if they are there now; never wait.

        Raises:
            InvalidArgumentError: ``tokens`` is not in [1, burst].
        """
        check_tokens(tokens, self._bucket.burst)
        with self._lock:
            now = self._clock.now()
            if self._bucket.wait_time(now, tokens) > 0:
                self._rejected += 1
                return False
            self._bucket.take(now, tokens)
            self._granted += 1
            return True

    def retry_after(self, tokens: int = 1) -> float:
        """Return the seconds until ``tokens`` could be taken (0.0: now), taking nothing."""
        check_tokens(tokens, self._bucket.burst)
        with self._lock:
            return self._bucket.wait_time(self._clock.now(), tokens)

    def _reserve(
        self, tokens: int, ctx: Context | None, timeout: float | None, blocking: bool
    ) -> float:
        """Reserve ``tokens`` and return the wait, or raise if the caller can't wait."""
        check_tokens(tokens, self._bucket.burst)
        limit = check_timeout(timeout)
        remaining = None
        ctx = check_context(ctx)
        if ctx is not None:
            err = ctx.err()
            if err is not None:
                raise err
            remaining = ctx.remaining()
        with self._lock:
            now = self._clock.now()
            wait = self._bucket.wait_time(now, tokens)
            if wait > 0:
                if wait > limit or (remaining is not None and wait >= remaining):
                    self._rejected += 1
                    raise RateLimitedError(self.name, wait)
                if blocking:
                    reject_blocking_in_loop("RateLimiter.acquire")
                self._waiting += 1
            else:
                self._granted += 1
            self._bucket.take(now, tokens)
        return wait

    def _done_waiting(self, tokens: int, granted: bool) -> None:
        with self._lock:
            self._waiting -= 1
            if granted:
                self._granted += 1
            else:
                self._canceled += 1
                self._bucket.give_back(self._clock.now(), tokens)

    def acquire(
        self, tokens: int = 1, *, ctx: Context | None = None, timeout: float | None = None
    ) -> None:
        """Take ``tokens``, blocking this thread until they are due (first come, first served).

        Args:
            tokens: how many tokens to take (1 to ``burst``).
            ctx: the caller's context: the wait must end before its deadline.
            timeout: the most seconds to wait (None: no limit but the context's).

        Raises:
            RateLimitedError: the wait needed is longer than ``timeout`` or would reach
                the context's deadline (nothing is taken; ``retry_after`` is that wait).
            ContextError: ``ctx`` had ended, or ended while waiting (tokens returned).
            BlockingCallInLoopError: called on an event loop's thread and a wait was
                needed (use :meth:`aacquire` there).
            InvalidArgumentError: ``tokens`` is not in [1, burst] or ``timeout`` < 0.
        """
        wait = self._reserve(tokens, ctx, timeout, blocking=True)
        if wait <= 0:
            return
        granted = False
        try:
            granted = sleep_blocking(wait, self._clock, ctx)
        finally:
            self._done_waiting(tokens, granted)
        if not granted:
            _raise_ended(ctx)

    async def aacquire(
        self, tokens: int = 1, *, ctx: Context | None = None, timeout: float | None = None
    ) -> None:
        """Take ``tokens``, sleeping this task until they are due; see :meth:`acquire`.

        Raises:
            asyncio.CancelledError: the task was cancelled while waiting (tokens returned).
        """
        wait = self._reserve(tokens, ctx, timeout, blocking=False)
        if wait <= 0:
            return
        granted = False
        try:
            granted = await sleep_async(wait, self._clock, ctx)
        finally:
            self._done_waiting(tokens, granted)
        if not granted:
            _raise_ended(ctx)

    def statistics(self) -> RateLimiterStatistics:
        """Return the bucket's level now and the counts since creation."""
        with self._lock:
            return RateLimiterStatistics(
                name=self.name,
                rate=self._bucket.rate,
                burst=self._bucket.burst,
                tokens=self._bucket.level(self._clock.now()),
                granted=self._granted,
                rejected=self._rejected,
                waiting=self._waiting,
                canceled=self._canceled,
            )

    def __repr__(self) -> str:
        return f"RateLimiter({self.name!r}, rate={self.rate!r}, burst={self.burst})"
