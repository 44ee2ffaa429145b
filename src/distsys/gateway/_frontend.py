"""Frontend: what every client connection of a gateway reads — limits, routes, state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from distsys.gateway._routes import RouteTable
from distsys.gateway._stats import RouteStats

if TYPE_CHECKING:
    from distsys.gateway._config import LimitsConfig
    from distsys.gateway._downstream import Downstream

__all__ = ["Frontend"]

log = logging.getLogger("distsys.gateway")


class Frontend:
    """The shared state of a gateway's connections (internal). Safe within one loop.

    A reload replaces ``table`` (and the limits) in one assignment each: a request
    reads the table once, when its turn comes, and keeps the route it matched.

    Attributes:
        loop: the event loop serving.
        table: the current route table.
        connections: the open client connections.
        unmatched: the counts of requests no route took (404, 405, 400 ...).
        draining: the gateway is stopping: answers say ``Connection: close``.
    """

    __slots__ = (
        "_ready",
        "connections",
        "draining",
        "header_timeout",
        "idle_timeout",
        "loop",
        "max_body_bytes",
        "max_header_bytes",
        "max_headers",
        "table",
        "unmatched",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: LimitsConfig) -> None:
        self.loop = loop
        self.table = RouteTable(())
        self.connections: set[Downstream] = set()
        self.unmatched = RouteStats("(unmatched)")
        self.draining = False
        self._ready: list[Callable[[], None]] = []
        self.max_header_bytes = 0
        self.max_headers = 0
        self.max_body_bytes = 0
        self.header_timeout = 0.0
        self.idle_timeout = 0.0
        self.set_limits(limits)

    def set_limits(self, limits: LimitsConfig) -> None:
        """Apply ``[limits]`` (to requests parsed from now on)."""
        self.max_header_bytes = int(limits.max_header_bytes)
        self.max_headers = limits.max_headers
        self.max_body_bytes = int(limits.max_body_bytes)
        self.header_timeout = float(limits.header_timeout)
        self.idle_timeout = float(limits.idle_timeout)

    def soon(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the loop has read what this round brought, with the
        others of the round (one loop handle per round, not one per call)."""
        ready = self._ready
        ready.append(callback)
        if len(ready) == 1:
            self.loop.call_soon(self._run_ready)

    def _run_ready(self) -> None:
        ready = self._ready
        self._ready = []
        for callback in ready:
            try:
                callback()
            except Exception:  # a bug: the round's other callbacks must still run
                log.exception("a gateway callback failed")

    @property
    def in_flight(self) -> int:
        """Requests being answered now."""
        return sum(1 for conn in self.connections if conn.current is not None)
