"""A service's lifecycle as an explicit state machine, after dskit's ``services.Service``.

::

          NEW ──────────────── stop before start ─────────────┐
           │ serve()                                          │
           ▼                                                  │
        STARTING ─────── error ────────▶ FAILED               │
           │  └── stop while starting ─┐   ▲  ▲               │
           │ listening, registered     │   │  │               │
           ▼                           │   │  │               │
        RUNNING ──────── error ────────┼───┘  │               │
           │ stop() / SIGTERM          │      │               │
           ▼                           │      │               │
        STOPPING ◀─────────────────────┘      │               │
           │  └───────── error ───────────────┘               │
           │ drained                                          │
           ▼                                                  │
       TERMINATED ◀───────────────────────────────────────────┘

TERMINATED and FAILED are final. The transition table is data; :class:`Lifecycle` checks
every move against it, tells listeners, and wakes tasks that wait for a state.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from distsys.errors import ArgumentTypeError
from distsys.service._errors import LifecycleError

__all__ = ["Lifecycle", "State", "Transition"]

log = logging.getLogger("distsys.service")


class State(enum.Enum):
    """Where a service is in its life."""

    NEW = "new"
    """Created, not started."""
    STARTING = "starting"
    """Binding its socket, running startup hooks, registering."""
    RUNNING = "running"
    """Serving and (if a registry is configured) registered."""
    STOPPING = "stopping"
    """Draining: deregistered, no new connections, finishing in-flight requests."""
    TERMINATED = "terminated"
    """Stopped cleanly. Final."""
    FAILED = "failed"
    """Stopped by an error in STARTING, RUNNING or STOPPING. Final."""

    @property
    def final(self) -> bool:
        """Whether no transition leaves this state."""
        return self in (State.TERMINATED, State.FAILED)


TRANSITIONS: Final[dict[State, frozenset[State]]] = {
    State.NEW: frozenset({State.STARTING, State.TERMINATED}),
    State.STARTING: frozenset({State.RUNNING, State.STOPPING, State.FAILED}),
    State.RUNNING: frozenset({State.STOPPING, State.FAILED}),
    State.STOPPING: frozenset({State.TERMINATED, State.FAILED}),
    State.TERMINATED: frozenset(),
    State.FAILED: frozenset(),
}
"""The allowed moves: ``TRANSITIONS[a]`` holds every state ``a`` may move to."""


def _reachable(start: State) -> frozenset[State]:
    seen = {start}
    todo = [start]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return frozenset(seen)


_REACHABLE: Final = {state: _reachable(state) for state in State}


@dataclass(frozen=True, slots=True)
class Transition:
    """One move of the state machine, as given to listeners.

    Attributes:
        old: the state left.
        new: the state entered.
        failure: for a move to FAILED, the exception that caused it.
    """

    old: State
    new: State
    failure: BaseException | None = None


Listener = Callable[[Transition], object]


class Lifecycle:
    """The state machine: validated transitions, listeners, and waits for a state.

    ``transition(new)`` moves only along :data:`TRANSITIONS` and raises
    :class:`LifecycleError` otherwise. Listeners are called synchronously, in the order
    they were added, after the state has changed; an exception in a listener is logged
    and does not stop the transition or the other listeners.

    Safe within one event loop (waiters are woken on the loop they wait on; transitions
    must be made on that loop's thread).
    """

    __slots__ = ("_failure", "_listeners", "_name", "_state", "_waiters")

    TRANSITIONS: Final = TRANSITIONS
    """The allowed moves: ``TRANSITIONS[a]`` holds every state ``a`` may move to."""

    def __init__(self, name: str = "service") -> None:
        self._name = name
        self._state = State.NEW
        self._failure: BaseException | None = None
        self._listeners: list[Listener] = []
        self._waiters: list[tuple[frozenset[State], asyncio.Future[State]]] = []

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def failure(self) -> BaseException | None:
        """The exception that moved the service to FAILED, else None."""
        return self._failure

    def can_move(self, new: State) -> bool:
        """Return whether ``new`` may follow the current state."""
        return new in TRANSITIONS[self._state]

    def transition(self, new: State, failure: BaseException | None = None) -> Transition:
        """Move to ``new`` and tell the listeners.

        Args:
            new: the next state.
            failure: the cause, required for a move to FAILED and refused otherwise.

        Raises:
            LifecycleError: ``new`` may not follow the current state.
        """
        if not isinstance(new, State):
            raise ArgumentTypeError("new", new, "a State")
        old = self._state
        if new not in TRANSITIONS[old]:
            allowed = ", ".join(sorted(s.name for s in TRANSITIONS[old])) or "none: it is final"
            raise LifecycleError(
                f"{self._name}: cannot move from {old.name} to {new.name} (allowed: {allowed})",
                old,
                self._failure,
            )
        if (new is State.FAILED) != (failure is not None):
            raise ArgumentTypeError(
                "failure", failure, "an exception for a move to FAILED, and only then"
            )
        self._state = new
        self._failure = failure
        change = Transition(old, new, failure)
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("%s: lifecycle listener %r failed", self._name, listener)
        self._wake()
        return change

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(transition)`` on every later transition (past ones are not replayed).

        Returns:
            A function that removes the listener again.
        """
        if not callable(listener):
            raise ArgumentTypeError("listener", listener, "a callable taking a Transition")
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    async def wait_for(self, *states: State) -> State:
        """Wait until the service is in one of ``states``; return the one it reached.

        Raises:
            LifecycleError: none of ``states`` can be reached any more (for example
                waiting for RUNNING after the service failed or stopped).
        """
        wanted = frozenset(states)
        if not wanted or not all(isinstance(s, State) for s in wanted):
            raise ArgumentTypeError("states", states, "one or more State values")
        self._check_reachable(wanted)
        if self._state in wanted:
            return self._state
        future: asyncio.Future[State] = asyncio.get_running_loop().create_future()
        entry = (wanted, future)
        self._waiters.append(entry)
        try:
            return await future
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def _check_reachable(self, wanted: frozenset[State]) -> None:
        if not wanted & _REACHABLE[self._state]:
            names = "/".join(sorted(s.name for s in wanted))
            raise LifecycleError(
                f"{self._name} can no longer reach {names}: it is {self._state.name}",
                self._state,
                self._failure,
            )

    def _wake(self) -> None:
        state = self._state
        for wanted, future in list(self._waiters):
            if future.done():
                continue
            if state in wanted:
                future.set_result(state)
            elif not wanted & _REACHABLE[state]:
                try:
                    self._check_reachable(wanted)
                except LifecycleError as exc:
                    future.set_exception(exc)

    def __repr__(self) -> str:
        return f"<Lifecycle {self._name} {self._state.name}>"
