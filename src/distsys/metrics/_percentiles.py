"""RollingPercentiles: p50/p90/p99 of the values added in the last N buckets."""

from __future__ import annotations

from collections.abc import Iterable

from distsys.clock import Clock
from distsys.metrics._checks import check_accuracy, check_count
from distsys.metrics._ring import BucketRing
from distsys.metrics._sketch import LogSketch, SketchStatistics

__all__ = ["RollingPercentiles"]


class RollingPercentiles(BucketRing[LogSketch]):
    """Quantiles of the values added over the last ``size`` buckets, within a relative error.

    One :class:`LogSketch` per bucket of the same ring as :class:`RollingWindow` (same
    lazy advancing, same ``ignore_current``). :meth:`add` counts a value in the current
    bucket's sketch in O(1). A read merges the sketches of the window — exactly, so every
    quantile is within ``relative_accuracy`` of the true value of rank
    ``floor(q * (count - 1))`` among the values in the window. The completed buckets do
    not change until the ring rolls, so their merge is kept until then: the first read
    after a roll costs O(``size`` x sketch buckets), later ones O(sketch buckets).
    Values must be >= 0 (latencies, sizes).

    Thread-safe by default (one lock guards every operation); with ``thread_safe=False``,
    safe within one thread or one event loop only.

    Args:
        size: the number of buckets (>= 1; >= 2 with ``ignore_current``).
        interval: the seconds each bucket covers (> 0).
        clock: the time source (default: :class:`~distsys.clock.MonotonicClock`).
        relative_accuracy: the sketches' bound on relative error, in (0, 1).
        max_buckets: the most counters each bucket's sketch keeps (see :class:`LogSketch`).
        ignore_current: leave the current bucket out of every read.
        thread_safe: guard every operation with a lock.

    Raises:
        InvalidArgumentError: an argument is out of range.
        ArgumentTypeError: an argument is of the wrong kind.
    """

    __slots__ = ("_accuracy", "_completed", "_max_buckets")

    def __init__(
        self,
        size: int,
        interval: float,
        *,
        clock: Clock | None = None,
        relative_accuracy: float = 0.01,
        max_buckets: int = 2048,
        ignore_current: bool = False,
        thread_safe: bool = True,
    ) -> None:
        self._accuracy = check_accuracy(relative_accuracy)
        self._max_buckets = check_count("max_buckets", max_buckets, 1)
        self._completed: LogSketch | None = None  # merge of the completed buckets, or None
        super().__init__(
            size, interval, clock=clock, ignore_current=ignore_current, thread_safe=thread_safe
        )

    @property
    def relative_accuracy(self) -> float:
        """The bound on the relative error of a quantile."""
        return self._accuracy

    def _new_bucket(self) -> LogSketch:
        return LogSketch(self._accuracy, max_buckets=self._max_buckets)

    def _clear_bucket(self, bucket: LogSketch) -> None:
        bucket.clear()

    def _enter_slot(self, slot: int) -> None:
        super()._enter_slot(slot)
        self._completed = None

    def add(self, value: float) -> None:
        """Count ``value`` in the current bucket.

        Raises:
            ArgumentTypeError: ``value`` is not an int or a float.
            InvalidArgumentError: ``value`` is negative, NaN or infinite.
        """
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
        self._cur.add(value)

    def sketch(self) -> LogSketch:
        """Return a new sketch of every value in the window (to merge across processes)."""
        merged = self._new_bucket()
        with self._guard:
            self._sync()
            completed = self._completed
            if completed is None:
                completed = self._new_bucket()
                current = self._cur
                completed.merge(*(b for b in self._live_buckets() if b is not current))
                self._completed = completed
            if self._ignore_current:
                merged.merge(completed)
            else:
                merged.merge(completed, self._cur)
        return merged

    def quantile(self, q: float) -> float | None:
        """Return the value at quantile ``q`` of the window, or None if it is empty.

        Raises:
            InvalidArgumentError: ``q`` is outside [0, 1].
            ArgumentTypeError: ``q`` is not a number.
        """
        return self.sketch().quantile(q)

    def quantiles(self, qs: Iterable[float]) -> list[float | None]:
        """Return the value at each quantile of ``qs``, merging the buckets once."""
        return self.sketch().quantiles(qs)

    def statistics(self) -> SketchStatistics:
        """Return count, sum, mean, min, max, p50, p90 and p99 of the window."""
        return self.sketch().statistics()
