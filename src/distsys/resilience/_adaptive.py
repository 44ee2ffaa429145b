"""AdaptiveBreaker: Google SRE client-side throttling, with no open or closed state.

From "Handling Overload" in Google's *Site Reliability Engineering* book, as go-zero's
``googlebreaker`` does it. Over a rolling window the client counts ``requests`` (calls
it attempted, its own rejections included) and ``accepts`` (calls the backend answered),
and rejects each new call locally with probability::

    p = max(0, (requests - protection - k * accepts) / (requests + 1))

While the backend accepts more than ``1/k`` of the calls (2/3 for k = 1.5), ``p`` is 0.
Beyond that, the client sheds just enough of its own traffic that what reaches the
backend is about ``k`` times what it can accept: the excess never leaves the client, yet
enough gets through to notice the backend healing, and ``p`` falls back as accepts come
back — no state to open, close or probe. ``protection`` keeps very low traffic from
being throttled at all: with fewer than ``protection + 1`` requests in the window,
``p`` is 0 whatever the outcome.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import ParamSpec, TypeVar

from distsys.clock import Clock, MonotonicClock
from distsys.errors import ArgumentTypeError, BreakerOpenError, InvalidArgumentError
from distsys.metrics._ring import BucketRing
from distsys.resilience._breaker_base import BreakerBase
from distsys.resilience._breaker_checks import (
    FAILURE,
    IGNORED,
    SUCCESS,
    Classifier,
    ExceptionFilter,
    check_clock,
    check_count,
    check_name,
    check_real,
)
from distsys.resilience._breaker_window import TimeWindow

__all__ = ["AdaptiveBreaker", "AdaptiveStatistics"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class AdaptiveStatistics:
    """A snapshot of an :class:`AdaptiveBreaker`, read at one instant.

    Attributes:
        name: the breaker's name.
        requests: calls attempted in the window (local rejections included).
        accepts: calls the backend accepted in the window.
        reject_probability: the probability that a call now is rejected.
        rejected: calls rejected locally since creation.
        k: the multiplier of accepts.
        protection: the requests never throttled.
    """

    name: str
    requests: int
    accepts: int
    reject_probability: float
    rejected: int
    k: float
    protection: int


class _Counts(BucketRing[list[int]]):
    """Requests and accepts over a rolling window, totals kept as buckets come and go."""

    __slots__ = ("accepts", "requests")

    def __init__(self, spec: TimeWindow, clock: Clock) -> None:
        self.requests = self.accepts = 0
        super().__init__(
            spec.buckets,
            spec.seconds / spec.buckets,
            clock=clock,
            ignore_current=False,
            thread_safe=False,
        )

    def _new_bucket(self) -> list[int]:
        return [0, 0]

    def _clear_bucket(self, bucket: list[int]) -> None:
        self.requests -= bucket[0]
        self.accepts -= bucket[1]
        bucket[0] = bucket[1] = 0

    def record(self, now: float, accepted: bool) -> None:
        if now >= self._next_roll:
            self._roll(now)
        bucket = self._cur
        bucket[0] += 1
        self.requests += 1
        if accepted:
            bucket[1] += 1
            self.accepts += 1

    def sync(self, now: float) -> None:
        if now >= self._next_roll:
            self._roll(now)

    def restart(self, now: float) -> None:
        self._restart(now)


def _check_k(k: object) -> float:
    accepted = "a finite number >= 1 (1.5 by default; 2 throttles later, 1 soonest)"
    number = check_real("k", k, accepted)
    if number < 1.0:
        raise InvalidArgumentError(
            "k", k, accepted, detail="below 1 a healthy backend would be throttled"
        )
    return number


class AdaptiveBreaker(BreakerBase):
    """Shed load on the client as soon as the backend stops keeping up (Google SRE).

    Each call is rejected locally, with :class:`~distsys.errors.BreakerOpenError`
    (``retry_after`` None), with probability ``max(0, (requests - protection - k *
    accepts) / (requests + 1))`` over the rolling ``window`` (see the module docstring).
    A call is *accepted* when it returns, or raises an exception that is not a failure;
    an exception matching ``record_exceptions`` (default: every ``Exception``) means
    "not accepted"; one matching ``ignore_exceptions``, or any ``BaseException`` that is
    not an ``Exception`` (cancellation), is not counted at all. A local rejection counts
    as a request that was not accepted, as the SRE book prescribes. Narrow
    ``record_exceptions`` to the errors that mean overload (timeouts, 503, connection
    refused) so that a "not found" does not throttle anyone.

    Same API as :class:`~distsys.resilience.CircuitBreaker`: ``call``, ``acall``,
    ``@breaker``, ``with breaker:``, ``allow()`` permits. Thread-safe: one lock guards
    the window; the random draw uses ``rng`` (``random.Random`` is thread-safe).

    Args:
        name: the breaker's name.
        k: the multiplier of accepts (>= 1; 1.5 as go-zero, the SRE book suggests 2).
        protection: requests in the window that are never throttled (>= 0).
        window: the rolling window (default ``TimeWindow(10.0, 40)``, go-zero's).
        record_exceptions: what is "not accepted" (Exception class, tuple, or predicate).
        ignore_exceptions: what is not counted at all.
        clock: the time source (default :class:`~distsys.clock.MonotonicClock`).
        rng: the random source (default a new ``random.Random()``).

    Raises:
        InvalidArgumentError: a setting is out of range (the error names it).
        ArgumentTypeError: a setting is of the wrong kind.
    """

    __slots__ = (
        "_classify",
        "_counts",
        "_k",
        "_lock",
        "_name",
        "_now",
        "_protection",
        "_random",
        "_rejected",
    )

    def __init__(
        self,
        name: str,
        *,
        k: float = 1.5,
        protection: int = 5,
        window: TimeWindow | None = None,
        record_exceptions: ExceptionFilter = Exception,
        ignore_exceptions: ExceptionFilter = (),
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._name = check_name(name)
        self._k = _check_k(k)
        self._protection = check_count("protection", protection, 0)
        if window is None:
            window = TimeWindow(10.0, 40)
        elif not isinstance(window, TimeWindow):
            raise ArgumentTypeError("window", window, "None or a TimeWindow")
        if rng is None:
            rng = random.Random()
        elif not isinstance(rng, random.Random):
            raise ArgumentTypeError("rng", rng, "None or a random.Random")
        self._random = rng.random
        self._classify = Classifier(record_exceptions, ignore_exceptions)
        clock = check_clock(clock)
        self._now: Callable[[], float] = (
            time.monotonic if type(clock) is MonotonicClock else clock.now
        )
        self._counts = _Counts(window, clock)
        self._lock = threading.Lock()
        self._rejected = 0

    def _probability(self) -> float:
        counts = self._counts
        requests = counts.requests
        return max(0.0, (requests - self._protection - self._k * counts.accepts) / (requests + 1))

    def _admit(self) -> None:
        now = self._now()
        with self._lock:
            self._counts.sync(now)
            p = self._probability()
            if p <= 0.0 or self._random() >= p:
                return
            self._counts.record(now, False)
            self._rejected += 1
        raise BreakerOpenError(self._name, None)

    def _record(self, outcome: int) -> None:
        if outcome != IGNORED:
            now = self._now()
            with self._lock:
                self._counts.record(now, outcome == SUCCESS)

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Return ``fn(*args, **kwargs)`` unless the call is throttled.

        Raises:
            BreakerOpenError: the call was rejected locally (``fn`` did not run).
        """
        self._admit()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._record(self._classify(exc))
            raise
        self._record(SUCCESS)
        return result

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Return ``await fn(*args, **kwargs)`` unless the call is throttled.

        Raises:
            BreakerOpenError: the call was rejected locally (``fn`` was not called).
        """
        self._admit()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._record(self._classify(exc))
            raise
        self._record(SUCCESS)
        return result

    def allow(self) -> _AdaptivePermit:
        """Return a permit for one call unless it is throttled.

        Raises:
            BreakerOpenError: the call was rejected locally.
        """
        self._admit()
        return _AdaptivePermit(self, self._now())

    @property
    def name(self) -> str:
        """The breaker's name."""
        return self._name

    def reject_probability(self) -> float:
        """Return the probability that a call made now is rejected."""
        now = self._now()
        with self._lock:
            self._counts.sync(now)
            return self._probability()

    def statistics(self) -> AdaptiveStatistics:
        """Return the window's requests and accepts, and the rejection probability now."""
        now = self._now()
        with self._lock:
            self._counts.sync(now)
            return AdaptiveStatistics(
                self._name,
                self._counts.requests,
                self._counts.accepts,
                self._probability(),
                self._rejected,
                self._k,
                self._protection,
            )

    def reset(self) -> None:
        """Forget the window: every call is admitted until failures come back."""
        now = self._now()
        with self._lock:
            self._counts.restart(now)

    def __repr__(self) -> str:
        return f"AdaptiveBreaker({self._name!r}, k={self._k:g}, protection={self._protection})"


class _AdaptivePermit:
    """A :class:`~distsys.resilience.Permit` of an :class:`AdaptiveBreaker`.

    A permit dropped unfinished is simply not counted: it holds no slot.
    """

    __slots__ = ("_breaker", "_done", "_start")

    def __init__(self, breaker: AdaptiveBreaker, start: float) -> None:
        self._breaker = breaker
        self._start = start
        self._done = False

    @property
    def started(self) -> float:
        return self._start

    @property
    def done(self) -> bool:
        return self._done

    def _end(self, outcome: int) -> bool:
        if self._done:
            return False
        self._done = True
        self._breaker._record(outcome)
        return True

    def success(self) -> bool:
        return self._end(SUCCESS)

    def failure(self, exc: BaseException | None = None) -> bool:
        return self._end(FAILURE if exc is None else self._breaker._classify(exc))

    def ignore(self) -> bool:
        return self._end(IGNORED)

    def __enter__(self) -> _AdaptivePermit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._done:
            if exc is None:
                self.success()
            else:
                self.failure(exc)
