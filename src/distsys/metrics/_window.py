"""RollingWindow: count, sum, mean, min, max and rate of the values added in the last N buckets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from distsys.clock import Clock
from distsys.errors import InvalidArgumentError
from distsys.metrics._checks import check_real
from distsys.metrics._ring import BucketRing

__all__ = ["RollingWindow", "WindowBucket", "WindowStatistics"]

_INF: Final = float("inf")
_VALUE_ACCEPTED: Final = "a finite real number (int or float)"


@dataclass(frozen=True, slots=True)
class WindowStatistics:
    """A snapshot of a :class:`RollingWindow`, read in one pass at one instant.

    ``mean``, ``min`` and ``max`` are None while the window holds no value. ``rate`` is
    ``sum / covered`` (0.0 while ``covered`` is 0); ``covered`` is the seconds the window's
    buckets have been recording, defined at :meth:`RollingWindow.rate`.
    """

    count: int
    sum: float
    mean: float | None
    min: float | None
    max: float | None
    rate: float
    covered: float


@dataclass(frozen=True, slots=True)
class WindowBucket:
    """One bucket of a :class:`RollingWindow`: when it started and what it holds."""

    start: float
    count: int
    sum: float
    min: float | None
    max: float | None


class _Bucket:
    __slots__ = ("count", "max", "min", "sum")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.min = _INF  # +inf / -inf while empty, so add() needs no emptiness test
        self.max = -_INF


class RollingWindow(BucketRing[_Bucket]):
    """Count, sum, mean, min, max and rate of the values added over the last ``size`` buckets.

    ``size`` buckets of ``interval`` seconds each form a ring (go-zero's
    ``RollingWindow``). :meth:`add` puts a value in the bucket of the current time in
    O(1); a read aggregates the buckets of the window in one O(``size``) pass. The ring
    advances lazily when it is used — no timer, no thread: a gap longer than the window
    clears every bucket in at most ``size`` steps. Buckets are aligned to the moment the
    window was created (or last :meth:`clear`-ed).

    The window is the current bucket and the ``size - 1`` before it. With
    ``ignore_current=True`` it leaves out the current, still filling bucket (go-zero's
    ``IgnoreCurrentBucket``): reads then see the ``size - 1`` completed buckets only, which
    makes a rate read just after a bucket boundary as steady as one read just before it.

    Thread-safe by default: one lock guards every operation, so threads and tasks may share
    a window (it never blocks on I/O, so holding it in a coroutine is fine). With
    ``thread_safe=False`` there is no lock; the window is then safe within one thread or one
    event loop only.

    Args:
        size: the number of buckets (>= 1; >= 2 with ``ignore_current``).
        interval: the seconds each bucket covers (> 0).
        clock: the time source (default: :class:`~distsys.clock.MonotonicClock`).
        ignore_current: leave the current bucket out of every read.
        thread_safe: guard every operation with a lock.

    Raises:
        InvalidArgumentError: ``size`` or ``interval`` is out of range.
        ArgumentTypeError: ``size``, ``interval`` or ``clock`` is of the wrong kind.
    """

    __slots__ = ()

    def __init__(
        self,
        size: int,
        interval: float,
        *,
        clock: Clock | None = None,
        ignore_current: bool = False,
        thread_safe: bool = True,
    ) -> None:
        super().__init__(
            size, interval, clock=clock, ignore_current=ignore_current, thread_safe=thread_safe
        )

    def _new_bucket(self) -> _Bucket:
        return _Bucket()

    def _clear_bucket(self, bucket: _Bucket) -> None:
        bucket.count = 0
        bucket.sum = 0.0
        bucket.min = _INF
        bucket.max = -_INF

    def add(self, value: float = 1.0) -> None:
        """Add ``value`` to the current bucket (O(1)).

        Raises:
            ArgumentTypeError: ``value`` is not an int or a float.
            InvalidArgumentError: ``value`` is NaN or infinite.
        """
        if value.__class__ is not float:
            value = check_real("value", value, _VALUE_ACCEPTED)
        elif value - value:  # NaN for NaN and ±inf, 0.0 for every finite float
            raise InvalidArgumentError("value", value, _VALUE_ACCEPTED)
        lock = self._lock
        if lock is None:
            self._record(value)
        else:
            with lock:
                self._record(value)

    def _record(self, value: float) -> None:
        now = self._now()
        if now >= self._next_roll:
            self._roll(now)
        bucket = self._cur
        bucket.count += 1
        bucket.sum += value
        if value < bucket.min:
            bucket.min = value
        if value > bucket.max:
            bucket.max = value

    def statistics(self) -> WindowStatistics:
        """Return count, sum, mean, min, max and rate of the window, read in one pass."""
        with self._guard:
            now = self._sync()
            count, total, low, high = 0, 0.0, _INF, -_INF
            for bucket in self._live_buckets():
                if bucket.count:
                    count += bucket.count
                    total += bucket.sum
                    if bucket.min < low:
                        low = bucket.min
                    if bucket.max > high:
                        high = bucket.max
            covered = self._covered(now)
        if not count:
            return WindowStatistics(0, 0.0, None, None, None, 0.0, covered)
        rate = total / covered if covered > 0 else 0.0
        return WindowStatistics(count, total, total / count, low, high, rate, covered)

    @property
    def count(self) -> int:
        """How many values the window holds (O(``size``); see :meth:`statistics`)."""
        return self.statistics().count

    @property
    def sum(self) -> float:
        """The sum of the values in the window."""
        return self.statistics().sum

    @property
    def mean(self) -> float | None:
        """The mean of the values in the window, or None if it is empty."""
        return self.statistics().mean

    @property
    def min(self) -> float | None:
        """The smallest value in the window, or None if it is empty."""
        return self.statistics().min

    @property
    def max(self) -> float | None:
        """The largest value in the window, or None if it is empty."""
        return self.statistics().max

    def rate(self) -> float:
        """Return the sum of the window per second of the time it covers.

        ``rate = sum / covered``, where ``covered`` runs from the start of the oldest
        bucket in the window — or from the window's creation (or last :meth:`clear`), if
        that is later — up to now; with ``ignore_current``, up to the start of the current
        bucket instead. So a young window is not diluted by time it did not see, and a
        steady stream reads steady: a full window covers between ``(size - 1) * interval``
        and ``size * interval`` seconds (exactly ``(size - 1) * interval`` with
        ``ignore_current``), matching the data it holds. Returns 0.0 while ``covered`` is
        0. For Hystrix's fixed divisor, use ``statistics().sum / span``.
        """
        return self.statistics().rate

    def buckets(self) -> tuple[WindowBucket, ...]:
        """Return the buckets in the window, oldest first (empty ones included).

        For go-zero-style reductions over buckets, e.g. the largest per-bucket count.
        """
        with self._guard:
            self._sync()
            return tuple(
                WindowBucket(start, b.count, b.sum, b.min, b.max)
                if b.count
                else WindowBucket(start, 0, 0.0, None, None)
                for start, b in self._live()
            )
