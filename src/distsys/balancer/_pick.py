"""Pick: one chosen instance, and the promise to say how the request went."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from distsys.registry import Instance

if TYPE_CHECKING:
    from distsys.balancer._base import Balancer, Node

__all__ = ["Pick"]


class Pick:
    """An instance chosen for one request; finish it once the request is over.

    ``done()`` reports a success, ``done(error=True)`` a failure that should count
    against the instance, ``abandon()`` a request that ended without an outcome (the
    caller gave up). The first of these calls counts; later ones do nothing, so a
    ``finally`` may call ``done()`` again safely. ``with balancer.pick() as p:`` calls
    ``done()`` when the block ends normally, ``done(error=True)`` when it raises an
    :class:`Exception`, and ``abandon()`` when it is left by cancellation or another
    :class:`BaseException`; a ``done(...)`` inside the block takes precedence.

    A pick that is garbage-collected unfinished is released by the balancer on its next
    call (counted as ``leaked``), so a forgotten pick never holds an outstanding count
    forever.

    Thread-safe: finishing takes the balancer's lock, and only the first call counts
    even if two threads race.

    Attributes:
        instance: the instance to send the request to.
    """

    __slots__ = ("_balancer", "_node", "_open", "_start", "instance")

    def __init__(self, balancer: Balancer, node: Node, start: float) -> None:
        self.instance: Instance = node.instance
        self._balancer = balancer
        self._node = node
        self._start = start
        self._open = True

    @property
    def finished(self) -> bool:
        """Whether ``done`` or ``abandon`` was called."""
        return not self._open

    def done(self, *, error: bool = False) -> None:
        """Report the request's outcome (the first call counts; later ones do nothing).

        Args:
            error: True if the instance failed the request (a connection error, a 5xx
                reply, a timeout): latency-aware balancers penalise it.
        """
        if self._open:
            self._balancer._settle(self, True if error else False)  # noqa: SIM210  (no call)

    def abandon(self) -> None:
        """Release the pick without an outcome: no latency sample, no error counted."""
        if self._open:
            self._balancer._settle(self, None)

    def __enter__(self) -> Pick:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._open:
            if exc_type is None:
                self._balancer._settle(self, False)
            elif issubclass(exc_type, Exception):
                self._balancer._settle(self, True)
            else:  # cancellation, KeyboardInterrupt, GeneratorExit: not the instance's fault
                self._balancer._settle(self, None)

    def __del__(self) -> None:
        # Never take a lock here: the collector may run this in the middle of any call,
        # on any thread. The balancer drains the queue on its next call.
        if self._open:
            self._open = False
            self._balancer._leaked.append((self._node, self._start))

    def __repr__(self) -> str:
        state = "finished" if not self._open else "open"
        return f"<Pick {self.instance.service}/{self.instance.id} {state}>"
