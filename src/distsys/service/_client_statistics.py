"""What a ServiceClient reports: frozen snapshots of the client and of each instance."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from distsys.resilience import BreakerState, RetryBudgetStatistics

if TYPE_CHECKING:
    from distsys.balancer import Balancer
    from distsys.service._client_instance import Upstream

__all__ = ["InstanceCallStatistics", "ServiceClientStatistics", "instance_records"]


@dataclass(frozen=True, slots=True)
class InstanceCallStatistics:
    """The calls one client made to one instance.

    Attributes:
        id: the instance id.
        address: its ``host:port``.
        requests: attempts sent to it.
        errors: attempts that failed there (connection errors, timeouts, 5xx answers).
        latency_mean: mean seconds per attempt (None before the first).
        latency_max: the longest attempt, in seconds (None before the first).
        breaker: its circuit breaker's state.
        ejected: whether the balancer skips it now (its breaker opened).
    """

    id: str
    address: str
    requests: int
    errors: int
    latency_mean: float | None
    latency_max: float | None
    breaker: BreakerState
    ejected: bool


@dataclass(frozen=True, slots=True)
class ServiceClientStatistics:
    """A snapshot of a :class:`~distsys.service.ServiceClient`.

    Attributes:
        service: the service it calls.
        requests: calls made (each may take several attempts).
        succeeded: calls that returned a response below 500.
        failed: calls that raised, or returned a 5xx after their last attempt.
        attempts: attempts sent to instances.
        retries: attempts after the first (each granted by the retry budget).
        retries_denied: retries the budget refused.
        rejected: picks refused by an instance's open breaker (another was tried).
        unavailable: calls that found no eligible instance (NoInstancesError).
        instances: one record per instance called (and still known), sorted by id.
        budget: the retry budget.
        stale: whether the resolver serves a stale view (the registry is unreachable).
    """

    service: str
    requests: int
    succeeded: int
    failed: int
    attempts: int
    retries: int
    retries_denied: int
    rejected: int
    unavailable: int
    instances: tuple[InstanceCallStatistics, ...]
    budget: RetryBudgetStatistics
    stale: bool


def instance_records(
    upstreams: Mapping[str, Upstream], balancer: Balancer
) -> tuple[InstanceCallStatistics, ...]:
    """Return one record per instance called, sorted by id."""
    ejected = {s.id for s in balancer.statistics().instances if s.ejected}
    records = []
    for key in sorted(upstreams):
        upstream = upstreams[key]
        seen = upstream.requests
        records.append(
            InstanceCallStatistics(
                id=key,
                address=upstream.instance.address,
                requests=seen,
                errors=upstream.errors,
                latency_mean=upstream.latency_total / seen if seen else None,
                latency_max=upstream.latency_max if seen else None,
                breaker=upstream.breaker.state,
                ejected=key in ejected,
            )
        )
    return tuple(records)
