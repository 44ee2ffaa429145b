"""The listeners of a breaker: every state change delivered once, in order, unlocked."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable

from distsys.resilience._breaker_checks import check_callables
from distsys.resilience._breaker_state import StateChange

__all__ = ["Listener", "Listeners"]

Listener = Callable[[StateChange], object]

_log = logging.getLogger("distsys.resilience")


class Listeners:
    """A breaker's listeners and the changes waiting for them.

    The breaker queues changes while it holds its own lock (:meth:`queue`) and calls
    :meth:`deliver` after letting it go. Whoever holds the dispatch lock delivers every
    pending change, in order; a thread that finds it taken leaves its changes to the
    holder, which looks again after letting go. So listeners run outside the breaker's
    lock, one change at a time, in the order of the transitions, possibly on another
    thread than the one that caused the change — and a listener may call the breaker,
    even change its state (that change is delivered right after). One that raises is
    logged and skipped. Thread-safe.
    """

    __slots__ = ("_dispatching", "_listeners", "_pending")

    def __init__(self, listeners: Iterable[Listener]) -> None:
        self._listeners: tuple[Listener, ...] = check_callables("listeners", listeners)
        self._pending: deque[StateChange] = deque()
        self._dispatching = threading.Lock()

    def __bool__(self) -> bool:
        """Whether changes are waiting to be delivered."""
        return bool(self._pending)

    def add(self, listener: Listener) -> None:
        """Call ``listener`` on every later change."""
        (listener,) = check_callables("listener", (listener,))
        self._listeners = (*self._listeners, listener)  # replaced whole: readers need no lock

    def remove(self, listener: Listener) -> None:
        """Stop calling ``listener``; a no-op if it is not there."""
        listeners = list(self._listeners)
        if listener in listeners:
            listeners.remove(listener)
        self._listeners = tuple(listeners)

    def queue(self, changes: Iterable[StateChange]) -> None:
        """Queue ``changes`` for delivery (the breaker's lock held: keeps their order)."""
        self._pending.extend(changes)

    def deliver(self, name: str) -> None:
        """Call the listeners with each pending change (no breaker lock held)."""
        pending = self._pending
        while pending:
            if not self._dispatching.acquire(blocking=False):
                return
            try:
                while pending:
                    change = pending.popleft()
                    for listener in self._listeners:
                        try:
                            listener(change)
                        except Exception:
                            _log.exception("listener %r of breaker %r failed", listener, name)
            finally:
                self._dispatching.release()
