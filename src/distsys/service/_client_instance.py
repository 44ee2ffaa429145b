"""Upstream: what a ServiceClient keeps per instance — its pool, breaker and counts.

The breaker is created on the instance's first pick. Its state changes drive the
balancer's outlier ejection: when it opens, the instance is ejected until the breaker
would let a trial call through (``now + retry_after``); when the ejection ends, the
balancer may pick it again, the breaker turns half-open on that call, and a successful
trial closes it (which readmits the instance, should it still be ejected), while a failed
one reopens it and ejects the instance again. Forced open: ejected until reset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distsys.resilience import BreakerState, StateChange

if TYPE_CHECKING:
    from distsys.balancer import Balancer
    from distsys.clock import Clock
    from distsys.http import ConnectionPool
    from distsys.registry import Instance
    from distsys.resilience import CircuitBreaker

__all__ = ["Upstream"]


class Upstream:
    """One instance as a ServiceClient sees it. Safe within one event loop."""

    __slots__ = (
        "_balancer",
        "_clock",
        "breaker",
        "errors",
        "instance",
        "latency_max",
        "latency_total",
        "pool",
        "requests",
    )

    def __init__(
        self,
        instance: Instance,
        pool: ConnectionPool,
        breaker: CircuitBreaker,
        balancer: Balancer,
        clock: Clock,
    ) -> None:
        self.instance = instance
        self.pool = pool
        self.breaker = breaker
        self._balancer = balancer
        self._clock = clock
        self.requests = 0
        self.errors = 0
        self.latency_total = 0.0
        self.latency_max = 0.0
        add = getattr(breaker, "add_listener", None)
        if add is not None:
            add(self._on_breaker_change)

    def record(self, seconds: float, error: bool) -> None:
        """Count one attempt."""
        self.requests += 1
        if error:
            self.errors += 1
        self.latency_total += seconds
        if seconds > self.latency_max:
            self.latency_max = seconds

    def _on_breaker_change(self, change: StateChange) -> None:
        instance_id = self.instance.id
        if change.new is BreakerState.OPEN:
            retry_after = self.breaker.statistics().retry_after
            until = None if retry_after is None else self._clock.now() + retry_after
            self._balancer.eject(instance_id, until=until)
        elif change.new is BreakerState.FORCED_OPEN:
            self._balancer.eject(instance_id, until=None)
        else:  # closed, half-open, disabled: let it take traffic
            self._balancer.readmit(instance_id)

    def forget(self) -> None:
        """Stop following the breaker (the instance left)."""
        remove = getattr(self.breaker, "remove_listener", None)
        if remove is not None:
            remove(self._on_breaker_change)
