"""The bucket ring: which bucket "now" falls in, and clearing the buckets time skipped.

Bucket ``k`` of a ring started at time ``start`` covers ``[start + k*interval,
start + (k+1)*interval)`` on the ring's clock. The ring keeps ``size`` slots; bucket ``k``
lives in slot ``k % size``. Nothing runs in the background: every operation first reads
the clock and, if time has crossed into a later bucket, clears the slots of the buckets
that were skipped — at most ``size`` of them, however long the gap — before it touches the
current one. The common case (still in the same bucket) is one comparison.

The rolling classes subclass :class:`BucketRing` with their bucket type and override two
hooks, :meth:`BucketRing._new_bucket` and :meth:`BucketRing._clear_bucket`; those that
keep an aggregate of the completed buckets refresh it in :meth:`BucketRing._enter_slot`,
which runs whenever the current bucket changes.
"""

from __future__ import annotations

import math
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Generic, TypeVar

from distsys.clock import Clock
from distsys.errors import InvalidArgumentError
from distsys.metrics._checks import check_clock, check_count, check_seconds

__all__ = ["BucketRing"]

B = TypeVar("B")


class BucketRing(Generic[B]):
    """Time-to-bucket bookkeeping shared by the rolling windows; see the module docstring.

    Not thread-safe by itself: subclasses hold ``_guard`` around every call into the ring.
    ``_guard`` is ``_lock`` for ``thread_safe=True`` and a no-op otherwise; ``_lock`` is None
    then, so a hot path can skip the ``with`` entirely.
    """

    __slots__ = (
        "_buckets",
        "_clock",
        "_cur",
        "_epoch",
        "_guard",
        "_ignore_current",
        "_interval",
        "_lock",
        "_next_roll",
        "_now",
        "_size",
        "_slot",
        "_start",
    )

    def __init__(
        self,
        size: int,
        interval: float,
        *,
        clock: Clock | None,
        ignore_current: bool,
        thread_safe: bool,
    ) -> None:
        self._size = check_count("size", size, 1)
        self._interval = check_seconds("interval", interval)
        if ignore_current and size < 2:
            raise InvalidArgumentError(
                "size", size, "an int >= 2 when ignore_current=True", detail="nothing to read"
            )
        self._clock = check_clock(clock)
        self._now = self._clock.now  # bound once: the hot path saves a lookup
        self._ignore_current = bool(ignore_current)
        self._lock: threading.Lock | None = threading.Lock() if thread_safe else None
        self._guard: AbstractContextManager[object] = self._lock or nullcontext()
        self._buckets = [self._new_bucket() for _ in range(size)]
        self._cur = self._buckets[0]  # the current bucket: what add() touches
        self._restart(self._now())

    @property
    def size(self) -> int:
        """The number of buckets."""
        return self._size

    @property
    def interval(self) -> float:
        """The seconds each bucket covers."""
        return self._interval

    @property
    def span(self) -> float:
        """The seconds the whole window covers once full: ``size * interval``."""
        return self._size * self._interval

    @property
    def thread_safe(self) -> bool:
        """Whether a lock guards every operation."""
        return self._lock is not None

    def clear(self) -> None:
        """Empty every bucket and restart the window now, as if it were new."""
        with self._guard:
            self._restart(self._now())

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self._size}, interval={self._interval}, "
            f"ignore_current={self._ignore_current}, thread_safe={self.thread_safe})"
        )

    def _new_bucket(self) -> B:
        """Return an empty bucket (overridden by every subclass)."""
        raise NotImplementedError

    def _clear_bucket(self, bucket: B) -> None:
        """Empty ``bucket`` in place (overridden by every subclass)."""
        raise NotImplementedError

    def _enter_slot(self, slot: int) -> None:
        """Make ``slot`` current (after the buckets it skipped were cleared)."""
        self._slot = slot
        self._cur = self._buckets[slot]

    def _restart(self, now: float) -> None:
        """Empty every bucket and start bucket 0 at ``now``."""
        self._start = now
        self._epoch = 0
        self._next_roll = now + self._interval
        for bucket in self._buckets:
            self._clear_bucket(bucket)
        self._enter_slot(0)

    def _sync(self) -> float:
        """Read the clock, roll forward to the bucket holding now, and return now."""
        now = self._now()
        if now >= self._next_roll:
            self._roll(now)
        return now

    def _roll(self, now: float) -> None:
        """Make the bucket holding ``now`` current, clearing the buckets in between."""
        epoch = self._epoch_at(now)
        skipped = epoch - self._epoch
        if skipped <= 0:
            return
        size, slot, buckets = self._size, self._slot, self._buckets
        for step in range(1, min(skipped, size) + 1):
            self._clear_bucket(buckets[(slot + step) % size])
        self._epoch = epoch
        self._next_roll = self._start + (epoch + 1) * self._interval
        self._enter_slot(epoch % size)

    def _epoch_at(self, now: float) -> int:
        """Return the number of the bucket holding ``now``.

        Division rounds, so near a boundary the quotient can land one bucket off; the
        boundaries are by definition ``start + k * interval`` as computed here, so settle
        against those (at most one step either way).
        """
        start, interval = self._start, self._interval
        epoch = max(math.floor((now - start) / interval), 0)
        while start + (epoch + 1) * interval <= now:
            epoch += 1
        while epoch > 0 and start + epoch * interval > now:
            epoch -= 1
        return epoch

    def _live(self) -> list[tuple[float, B]]:
        """Return ``(start time, bucket)`` of each bucket in the window, oldest first."""
        size, epoch, start, interval = self._size, self._epoch, self._start, self._interval
        newest = epoch - 1 if self._ignore_current else epoch
        buckets = self._buckets
        return [
            (start + e * interval, buckets[e % size])
            for e in range(max(epoch - size + 1, 0), newest + 1)
        ]

    def _live_buckets(self) -> list[B]:
        """Return the buckets in the window, oldest first."""
        size, epoch, buckets = self._size, self._epoch, self._buckets
        newest = epoch - 1 if self._ignore_current else epoch
        return [buckets[e % size] for e in range(max(epoch - size + 1, 0), newest + 1)]

    def _oldest_start(self) -> float:
        """Return when the oldest bucket in the window started."""
        return self._start + max(self._epoch - self._size + 1, 0) * self._interval

    def _covered(self, now: float) -> float:
        """Return the seconds the window's buckets have been recording, as of ``now``.

        From the start of the oldest bucket in the window (never before the ring started)
        to now, or, with ``ignore_current``, to the start of the current bucket.
        """
        if self._ignore_current:
            return min(self._epoch, self._size - 1) * self._interval
        return max(now - self._oldest_start(), 0.0)
