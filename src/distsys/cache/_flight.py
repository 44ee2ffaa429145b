"""Single flight: concurrent misses for one key run the function once and share the outcome.

The first caller to miss a key *leads* a flight: it runs the function and stores the
result; callers that miss the same key meanwhile *join* the flight and wait for its
outcome. The table of flights is guarded by one :class:`threading.Lock`, so callers on
any thread, and tasks on any event loop, meet in the same flight.

A flight nobody has joined is just its leader's token in the table (the thread's ident,
or the task), so an uncontended miss allocates nothing. The first caller to join turns it
into a :class:`_Flight`, where waiters park: a thread on the flight's
:class:`threading.Event`, a task on a future of its own loop, resolved with
``call_soon_threadsafe`` when the flight ends on another thread.

How a flight ends:

* a value: stored in the cache, then handed to every waiter;
* an :class:`Exception`: handed to every waiter and not cached, so the next call runs
  the function again;
* anything else (the leader's task was cancelled, ``KeyboardInterrupt``): the flight is
  *abandoned*. Only the leader sees that exception; the waiters start over, and the
  first to get the lock leads a new flight. No waiter is stranded, and a cancellation is
  never turned into an error for anyone else.

Before running the function a new leader looks in the cache once more (when ``lookup`` is
given: a cache shared between threads), so a caller that missed just before another
flight stored its value does not compute it again. A plain function over a
single-threaded cache cannot have company at all: ``alone`` just runs it. A call that
would join a flight it leads itself (the function calls itself with the same key on the
same thread or task) runs the function directly instead of waiting for itself forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from distsys.cache._core import MISSING

__all__ = ["FlightGroup", "FlightStatistics", "Lookup", "Store"]

Lookup = Callable[[Hashable, Any], Any] | None  # (key, MISSING): cached value or MISSING
Store = Callable[[Hashable, Any], object]  # store(key, value)
Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]

_get_ident = threading.get_ident
_current_task = asyncio.current_task
_LEAD: Any = object()
_REENTRANT: Any = object()


@dataclass(frozen=True, slots=True)
class FlightStatistics:
    """A snapshot of a cached function's single-flight group.

    Attributes:
        running: flights in progress (one per key being computed).
        waiting: calls waiting for another call's flight.
        calls: times the function ran to fill a miss.
        shared: calls that received another call's result or exception instead.
        abandoned: flights whose leader was cancelled or interrupted (a waiter, if any,
            took over).
    """

    running: int
    waiting: int
    calls: int
    shared: int
    abandoned: int


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _Flight:
    __slots__ = ("abandoned", "error", "event", "futures", "owner", "value")

    def __init__(self, owner: object) -> None:
        self.owner = owner  # the leader's token: its thread's ident, or its task
        self.value: Any = None
        self.error: Exception | None = None
        self.abandoned = False
        self.event: threading.Event | None = None  # created when a thread joins
        self.futures: list[Waiter] = []


class FlightGroup:
    """The flights of one cached function. Thread-safe; usable from any event loop."""

    __slots__ = ("_abandoned", "_calls", "_flights", "_lock", "_shared", "_waiting")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, object] = {}  # key -> leader token, or _Flight
        self._calls = self._shared = self._abandoned = self._waiting = 0

    def statistics(self) -> FlightStatistics:
        """Return a snapshot of the group."""
        with self._lock:
            return FlightStatistics(
                running=len(self._flights),
                waiting=self._waiting,
                calls=self._calls,
                shared=self._shared,
                abandoned=self._abandoned,
            )

    def alone(
        self, fn: Callable[..., Any], store: Store
    ) -> Callable[[Hashable, tuple[Any, ...], dict[str, Any]], Any]:
        """Return ``miss(key, args, kwargs)``: run ``fn`` for a key that cannot have company.

        For a plain function over a single-threaded cache: nothing else can miss the key
        while this runs, so there is no flight to share, only the call to count. One
        frame: the miss path of a memoised function is as hot as its hits on a big trace.
        """

        def miss(key: Hashable, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            self._calls += 1
            value = fn(*args, **kwargs)
            store(key, value)
            return value

        return miss

    def _join(self, key: Hashable, me: object) -> _Flight | bool:
        """Under the lock: True to lead, False if ``me`` leads already, or the flight."""
        entry = self._flights.get(key)
        if entry is None:
            self._flights[key] = me
            return True
        flight = entry if type(entry) is _Flight else None
        if (flight.owner if flight is not None else entry) == me:
            return False
        if flight is None:
            flight = self._flights[key] = _Flight(entry)
        self._waiting += 1
        return flight

    def call(
        self,
        key: Hashable,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        lookup: Lookup,
        store: Store,
    ) -> Any:
        """Return ``fn(*args, **kwargs)`` for a missed ``key``, once per flight (threads)."""
        me = _get_ident()
        flights = self._flights
        lock = self._lock
        with lock:
            uncontended = key not in flights
            if uncontended:  # the common case, inline: lead
                flights[key] = me
        if not uncontended:
            outcome = self._wait(key, me)
            if outcome is _REENTRANT:
                return fn(*args, **kwargs)  # waiting for itself would never end
            if outcome is not _LEAD:
                return outcome
        ran = False
        try:
            value = MISSING if lookup is None else lookup(key, MISSING)
            if value is MISSING:
                ran = True
                value = fn(*args, **kwargs)
                store(key, value)
        except Exception as exc:
            self._land(key, None, exc, False)
            raise
        except BaseException:
            self._land(key, None, None, True)
            raise
        with lock:
            entry = flights.pop(key)
            self._calls += ran
        if type(entry) is _Flight:  # somebody joined: hand them the value
            self._settle(entry, value, None, False)
        return value

    def _wait(self, key: Hashable, me: int) -> Any:
        """Join other threads' flights for ``key`` until one lands or this thread leads.

        Returns the value a flight landed with, ``_LEAD`` (a new flight is registered
        for ``me``: lead it) or ``_REENTRANT`` (``me`` leads the flight already); raises
        the exception a flight landed with.
        """
        while True:
            with self._lock:
                joined = self._join(key, me)
                if type(joined) is _Flight and joined.event is None:
                    joined.event = threading.Event()
            if joined is True:
                return _LEAD
            if joined is False:
                return _REENTRANT
            assert isinstance(joined, _Flight)
            assert joined.event is not None
            try:
                joined.event.wait()
            finally:
                self._leave(joined)
            if not joined.abandoned:
                return self._outcome(joined)

    async def acall(
        self,
        key: Hashable,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        lookup: Lookup,
        store: Store,
    ) -> Any:
        """Return ``await fn(*args, **kwargs)`` for a missed ``key``, once per flight."""
        me = _current_task()
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                joined = self._join(key, me)
                if type(joined) is _Flight:
                    waiter = (loop, loop.create_future())
                    joined.futures.append(waiter)
            if joined is True:
                break
            if joined is False:
                return await fn(*args, **kwargs)  # reentrant: waiting for itself never ends
            assert isinstance(joined, _Flight)
            try:
                await waiter[1]
            finally:
                self._leave(joined, waiter)
            if not joined.abandoned:
                return self._outcome(joined)
        ran = False
        try:
            value = MISSING if lookup is None else lookup(key, MISSING)
            if value is MISSING:
                ran = True
                value = await fn(*args, **kwargs)
                store(key, value)
        except Exception as exc:
            self._land(key, None, exc, False)
            raise
        except BaseException:  # cancelled: a waiter takes over
            self._land(key, None, None, True)
            raise
        self._land(key, value, None, False, ran)
        return value

    def _outcome(self, flight: _Flight) -> Any:
        with self._lock:
            self._shared += 1
        if flight.error is not None:
            raise flight.error
        return flight.value

    def _leave(self, flight: _Flight, waiter: Waiter | None = None) -> None:
        with self._lock:
            self._waiting -= 1
            if flight.owner is not None and waiter is not None:  # cancelled: flight still up
                flight.futures.remove(waiter)

    def _land(
        self,
        key: Hashable,
        value: Any,
        error: Exception | None,
        abandoned: bool,
        ran: bool = True,
    ) -> None:
        with self._lock:
            entry = self._flights.pop(key)
            self._calls += ran
            self._abandoned += abandoned
        if type(entry) is _Flight:
            self._settle(entry, value, error, abandoned)

    def _settle(
        self, flight: _Flight, value: Any, error: Exception | None, abandoned: bool
    ) -> None:
        """Record a popped flight's outcome and wake its waiters."""
        with self._lock:
            flight.owner = None
            flight.value = value
            flight.error = error
            flight.abandoned = abandoned
            event = flight.event
            futures, flight.futures = flight.futures, []
        if event is not None:
            event.set()
        here = asyncio._get_running_loop()
        for loop, fut in futures:
            if loop is here:
                _resolve(fut)
            else:
                with contextlib.suppress(RuntimeError):  # a closed loop has nobody to wake
                    loop.call_soon_threadsafe(_resolve, fut)
