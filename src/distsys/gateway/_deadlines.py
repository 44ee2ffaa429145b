"""DeadlineQueue: the deadlines of a route's requests, with one timer instead of one each.

Every request of a route gets the same timeout, so their deadlines arrive in order: a
FIFO queue holds them and one loop timer waits for the oldest. A request that finishes
only sets a flag (``Expiring.finished``) and, if it is at the head, leaves at once; the
timer, when it fires, drops the finished entries at the head, expires those whose
deadline has passed, and re-arms for the next live one. With steady traffic the timer
fires about once per timeout, not once per request: a loop timer costs a few
microseconds to arm and cancel, an append tens of nanoseconds. A deadline earlier than
the queue's last one (a client that sent a shorter ``X-Request-Timeout-Ms``) gets a
timer of its own. Finished entries behind a slow request are swept out whenever the
queue doubles, so memory follows the requests in flight, not the request rate.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Protocol

__all__ = ["DeadlineQueue", "Expiring"]


class Expiring(Protocol):
    """A request with a deadline (the gateway's exchanges)."""

    finished: bool

    def expire(self) -> None:
        """The deadline passed while the request was in flight."""


class DeadlineQueue:
    """Expire requests at their deadlines (``time.monotonic()``, the clock of asyncio's and
    uvloop's ``loop.time()``). Safe within one event loop."""

    __slots__ = ("_armed_at", "_compact_at", "_loop", "_queue", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: deque[tuple[float, Expiring]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = 0.0
        self._compact_at = 1024

    def add(self, deadline: float, request: Expiring) -> asyncio.TimerHandle | None:
        """Expire ``request`` at ``deadline`` unless it has finished by then.

        Returns:
            The request's own timer when its deadline is out of order (cancel it when the
            request finishes), else None.
        """
        queue = self._queue
        if queue and deadline < queue[-1][0]:
            return self._loop.call_at(deadline, _expire, request)
        queue.append((deadline, request))
        timer = self._timer
        if timer is None or deadline < self._armed_at:
            if timer is not None:
                timer.cancel()  # armed for a later deadline of requests gone meanwhile
            self._armed_at = deadline
            self._timer = self._loop.call_at(deadline, self._fire)
        elif len(queue) >= self._compact_at:
            self._compact()
        return None

    def finish(self, request: Expiring) -> None:
        """``request`` is over: mark it, and drop the finished entries at the head (requests
        mostly finish in the order they started, so the queue stays about as long as the
        requests in flight)."""
        request.finished = True
        queue = self._queue
        while queue and queue[0][1].finished:
            queue.popleft()

    def _fire(self) -> None:
        self._timer = None
        queue = self._queue
        now = time.monotonic()
        while queue:
            deadline, request = queue[0]
            if request.finished:
                queue.popleft()
            elif deadline <= now:
                queue.popleft()
                request.finished = True
                request.expire()
            else:
                self._armed_at = deadline
                self._timer = self._loop.call_at(deadline, self._fire)
                return

    def _compact(self) -> None:
        live = deque(entry for entry in self._queue if not entry[1].finished)
        self._queue = live
        self._compact_at = max(1024, 2 * len(live))

    def __len__(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        """Stop the timer (the requests left are no longer expired)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()


def _expire(request: Expiring) -> None:
    if not request.finished:
        request.finished = True
        request.expire()
