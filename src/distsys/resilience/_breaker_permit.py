"""The permit of a CircuitBreaker: one call's leave, finished with its outcome."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from distsys.resilience._breaker_checks import FAILURE, IGNORED, SUCCESS
from distsys.resilience._breaker_machine import TRIAL_CALL

if TYPE_CHECKING:
    from distsys.resilience._breaker import CircuitBreaker

__all__ = ["CircuitPermit"]


class CircuitPermit:
    """A :class:`~distsys.resilience.Permit` of a :class:`CircuitBreaker`."""

    __slots__ = ("_breaker", "_done", "_epoch", "_kind", "_start")

    def __init__(self, breaker: CircuitBreaker, kind: int, epoch: object, start: float) -> None:
        self._breaker = breaker
        self._kind = kind
        self._epoch = epoch
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
        self._breaker._finish(self._kind, self._epoch, self._start, outcome)
        return True

    def success(self) -> bool:
        return self._end(SUCCESS)

    def failure(self, exc: BaseException | None = None) -> bool:
        return self._end(FAILURE if exc is None else self._breaker._classify(exc))

    def ignore(self) -> bool:
        return self._end(IGNORED)

    def __enter__(self) -> CircuitPermit:
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

    def __del__(self) -> None:
        # May run on any thread, inside any code (a garbage collection): take no lock.
        # A trial permit leaves its epoch for the next locked operation to give the slot
        # back; any other is only counted (deque.append and next() are atomic).
        if not self._done:
            if self._kind == TRIAL_CALL:
                self._breaker._abandoned.append(self._epoch)
            else:
                next(self._breaker._dropped)

    def __repr__(self) -> str:
        kind = "trial" if self._kind == TRIAL_CALL else "call"
        return f"<permit ({kind}) of {self._breaker.name!r}, done={self._done}>"
