"""A clock that moves only when told to."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable

from distsys.errors import InvalidArgumentError

__all__ = ["ManualClock"]


class _ManualTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock for tests: time stands still until :meth:`advance` moves it.

    Timers scheduled with :meth:`call_later` run inside :meth:`advance`, on the thread
    that calls it, in deadline order, and each sees :meth:`now` equal to its own deadline.
    A timer scheduled by a running timer is honoured within the same advance if it falls
    due. Thread-safe: any thread may read, schedule or advance.

    Args:
        start: the time :meth:`now` reports before the first advance.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def now(self) -> float:
        """Return the current (manual) time."""
        return self._now

    def call_later(self, delay: float, callback: Callable[[], object]) -> _ManualTimer:
        """Run ``callback`` once the clock has been advanced by ``delay`` seconds."""
        with self._lock:
            timer = _ManualTimer(self._now + max(delay, 0.0), callback)
            heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    def advance(self, seconds: float) -> int:
        """Move time forward by ``seconds`` and run every timer that falls due.

        Returns:
            How many callbacks ran.

        Raises:
            InvalidArgumentError: ``seconds`` is negative (time never goes back).
        """
        if seconds < 0:
            raise InvalidArgumentError("seconds", seconds, "a number >= 0")
        ran = 0
        with self._lock:
            target = self._now + seconds
        while True:
            with self._lock:
                if not self._timers or self._timers[0][0] > target:
                    self._now = max(self._now, target)
                    return ran
                when, _, timer = heapq.heappop(self._timers)
                self._now = max(self._now, when)
            if not timer.cancelled:
                timer.cancelled = True
                timer.callback()
                ran += 1

    def pending(self) -> int:
        """Return how many timers are scheduled and not cancelled."""
        with self._lock:
            return sum(1 for _, _, timer in self._timers if not timer.cancelled)

    def next_deadline(self) -> float | None:
        """Return when the earliest live timer falls due, or None if there is none."""
        with self._lock:
            live = [when for when, _, timer in self._timers if not timer.cancelled]
        return min(live) if live else None

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r}, pending={self.pending()})"
