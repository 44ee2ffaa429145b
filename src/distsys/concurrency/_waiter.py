"""Parked operations: what a channel keeps in its wait queues.

A waiter stands for one blocked send or receive. Whoever completes it (a peer on the
channel, ``close()``, a timer, or the waiter's own cancellation) first *commits* it —
sets ``state`` and ``value`` while holding the channel's lock — and only then wakes it.
The waiter reads ``state`` after waking, so the decision is made exactly once, under a
lock, no matter which thread or loop each party runs on.

A ``select`` parks one :class:`SelectWaiter` on several channels through
:class:`Entry` records. Several channels may race to commit it, so its commit takes its
own small lock (always the innermost lock, so no lock order cycle is possible).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, Final

WAITING: Final = 0
DONE: Final = 1  # the peer took (send) or gave (receive) the value
CLOSED: Final = 2  # the channel was closed while waiting
TIMEOUT: Final = 3  # the wait's own timeout ran out
ABANDONED: Final = 4  # the waiter withdrew (cancelled, interrupted)

_get_ident = threading.get_ident
_allocate_lock = threading.Lock


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class AsyncWaiter:
    """A task parked on one channel."""

    __slots__ = ("fut", "loop", "state", "thread", "value")
    sel: None = None

    def __init__(self, value: Any = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.fut: asyncio.Future[None] = self.loop.create_future()
        self.thread = _get_ident()
        self.state = WAITING
        self.value = value

    def wake(self) -> None:
        if _get_ident() == self.thread:
            if not self.fut.done():
                self.fut.set_result(None)
        else:
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody left to wake
                self.loop.call_soon_threadsafe(_resolve, self.fut)


class ThreadWaiter:
    """A thread parked on one channel; it sleeps on a lock that ``wake`` releases."""

    __slots__ = ("lock", "state", "value")
    sel: None = None

    def __init__(self, value: Any = None) -> None:
        self.lock = _allocate_lock()
        self.lock.acquire()
        self.state = WAITING
        self.value = value

    def wake(self) -> None:
        self.lock.release()


class SelectWaiter:
    """One ``select`` call, parked on every channel of its cases at once."""

    __slots__ = ("index", "lock", "state", "value", "waker")

    def __init__(self, waker: AsyncWaiter | ThreadWaiter) -> None:
        self.lock = _allocate_lock()
        self.state = WAITING
        self.index = -1
        self.value: Any = None
        self.waker = waker

    def commit(self, index: int, state: int, value: Any) -> bool:
        """Decide the select's outcome; False if another case already decided it."""
        with self.lock:
            if self.state != WAITING:
                return False
            self.state = state
            self.index = index
            self.value = value
            return True

    def wake(self) -> None:
        self.waker.wake()


class Entry:
    """A select's presence in one channel's queue: which case, and the value to send."""

    __slots__ = ("index", "sel", "value")

    def __init__(self, sel: SelectWaiter, index: int, value: Any) -> None:
        self.sel = sel
        self.index = index
        self.value = value


Waiter = AsyncWaiter | ThreadWaiter | Entry
