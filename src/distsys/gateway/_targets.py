"""Targets: how routes reach their services, with ServiceClient's own machinery.

A :class:`Target` is a :class:`~distsys.service._client_discovery.Discovery` — the
resolver's view of one service, a balancer, and per instance an
:class:`~distsys.service._client_instance.Upstream` (its connection pool from the shared
:class:`~distsys.http.HTTPClient`, its circuit breaker, wired to the balancer's
ejection) — exactly what a ``ServiceClient`` uses. Routes with the same service,
balancer and breaker settings share one target, and a reload keeps the targets whose
settings did not change, so breaker states and latency estimates survive it.

:class:`Services` holds one started :class:`~distsys.registry.Resolver` per service,
shared by every target of that service.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from distsys.balancer import Balancer, make_balancer
from distsys.resilience import Backoff, CircuitBreaker, TimeWindow
from distsys.service._client_discovery import Discovery

if TYPE_CHECKING:
    from distsys.clock import Clock
    from distsys.gateway._config import BreakerConfig, RouteConfig
    from distsys.http import HTTPClient
    from distsys.registry import Registry, Resolver

__all__ = ["Services", "Target", "TargetKey", "target_key"]

log = logging.getLogger("distsys.gateway")

TargetKey = tuple[str, str, float, "BreakerConfig"]


def target_key(route: RouteConfig) -> TargetKey:
    """Return what decides a route's target: service, balancer, its factor, breaker."""
    factor = route.hash_factor if route.balancer == "consistent_hash" else 0.0
    return (route.service, route.balancer, factor, route.breaker)


class Target:
    """A service as one or more routes reach it. Safe within one event loop.

    Attributes:
        service: the service name.
        balancer: picks an instance per attempt.
        discovery: the resolver subscription and the per-instance upstreams.
        hashing: whether the balancer needs a key (``consistent_hash``).
        backoff: the delay before a retry (full jitter, 25 ms to 250 ms).
        in_flight: requests being answered through it now.
        retrying: of those, the ones that were retried.
        retries: retries admitted since the start.
        retries_refused: retries refused by the limit since the start.
    """

    __slots__ = (
        "backoff",
        "balancer",
        "discovery",
        "hashing",
        "in_flight",
        "key",
        "retries",
        "retries_refused",
        "retrying",
        "service",
    )

    def __init__(self, key: TargetKey, resolver: Resolver, http: HTTPClient, clock: Clock) -> None:
        service, balancer, factor, breaker = key
        self.key = key
        self.service = service
        options: dict[str, Any] = {"service": service, "clock": clock}
        if balancer == "consistent_hash":
            options["factor"] = factor
        self.balancer: Balancer = make_balancer(balancer, (), **options)
        self.hashing = balancer == "consistent_hash"
        self.backoff = Backoff(0.025, 0.25)
        self.in_flight = 0
        self.retrying = 0
        self.retries = 0
        self.retries_refused = 0

        def new_breaker(name: str) -> CircuitBreaker:
            made = CircuitBreaker(
                name,
                window=TimeWindow(seconds=breaker.window, buckets=10),
                failure_rate_threshold=breaker.failure_rate,
                minimum_calls=breaker.minimum_calls,
                wait_duration=breaker.wait,
                clock=clock,
            )
            if not breaker.enabled:
                made.disable()
            return made

        self.discovery = Discovery(service, None, resolver, self.balancer, http, new_breaker, clock)

    def admit_retry(self) -> bool:
        """Admit one more request to be retried, unless too many are (Envoy's retry
        circuit breaker): at most 3 + 20% of the requests in flight; the caller
        decrements :attr:`retrying` when the request ends."""
        if self.retrying >= 3 + self.in_flight // 5:
            self.retries_refused += 1
            return False
        self.retrying += 1
        self.retries += 1
        return True

    async def start(self) -> None:
        """Follow the resolver (already started: this returns at once)."""
        await self.discovery.start()

    async def aclose(self) -> None:
        """Stop following the resolver (its upstreams' pools stay with the client)."""
        await self.discovery.aclose()


class Services:
    """One started resolver per service, shared by the targets. Safe within one loop."""

    def __init__(self, registry: Registry, *, start_timeout: float = 10.0) -> None:
        self._registry = registry
        self._start_timeout = start_timeout
        self.resolvers: dict[str, Resolver] = {}

    async def ensure(self, services: Iterable[str]) -> None:
        """Start a resolver for each service that has none.

        Raises:
            BackendUnavailableError: the registry gave no snapshot in time (the resolvers
                started before stay).
        """
        for service in sorted(set(services)):
            if service not in self.resolvers:
                resolver = self._registry.resolver(service)
                await resolver.start(timeout=self._start_timeout)
                self.resolvers[service] = resolver

    async def retain(self, services: Iterable[str]) -> None:
        """Close the resolvers of the services not in ``services``."""
        keep = set(services)
        for service in [s for s in self.resolvers if s not in keep]:
            resolver = self.resolvers.pop(service)
            await resolver.aclose()

    @property
    def stale(self) -> list[str]:
        """The services whose view is stale (the registry is unreachable)."""
        return sorted(s for s, r in self.resolvers.items() if r.statistics().stale)

    async def aclose(self) -> None:
        """Close every resolver."""
        await self.retain(())
