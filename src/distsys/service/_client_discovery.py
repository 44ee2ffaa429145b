"""Discovery: a ServiceClient's view of its service — resolver, balancer, per-instance state.

The resolver pushes every change of the instance list; the balancer gets *all* instances
(``resolver.instances()``), not only the UP ones the subscription passes, so that an
empty pick can say "all 3 instances are draining" rather than "none registered". The
per-instance :class:`Upstream` (pool, breaker, counts) is made on an instance's first
pick and dropped when the instance leaves, or moves to another address.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from distsys.registry import Instance, Registry, Resolver, open_registry
from distsys.resilience import CircuitBreaker
from distsys.service._client_instance import Upstream

if TYPE_CHECKING:
    from distsys.balancer import Balancer
    from distsys.clock import Clock
    from distsys.http import HTTPClient

__all__ = ["BreakerFactory", "Discovery"]

BreakerFactory = Callable[[str], CircuitBreaker]
"""Makes the breaker of one instance from its name, ``"<service>/<instance id>"``."""


class Discovery:
    """Follow one service for a ServiceClient. Safe within one event loop."""

    __slots__ = (
        "_balancer",
        "_clock",
        "_http",
        "_new_breaker",
        "_owns_registry",
        "_owns_resolver",
        "_registry",
        "_registry_arg",
        "_unsubscribe",
        "resolver",
        "service",
        "upstreams",
    )

    def __init__(
        self,
        service: str,
        registry: Registry | str | None,
        resolver: Resolver | None,
        balancer: Balancer,
        http: HTTPClient,
        breaker: BreakerFactory | None,
        clock: Clock,
    ) -> None:
        self.service = service
        self._registry_arg = registry
        self._registry: Registry | None = None
        self._owns_registry = False
        self.resolver = resolver
        self._owns_resolver = False
        self._balancer = balancer
        self._http = http
        self._new_breaker = breaker
        self._clock = clock
        self._unsubscribe: Callable[[], None] | None = None
        self.upstreams: dict[str, Upstream] = {}

    async def start(self) -> None:
        """Open the registry (for a URL) and the resolver if needed; follow the service."""
        resolver = self.resolver
        if resolver is None:
            registry = self._registry_arg
            if isinstance(registry, str):
                registry = self._registry = open_registry(registry, clock=self._clock)
                self._owns_registry = True
            assert registry is not None
            resolver = self.resolver = registry.resolver(self.service)
            self._owns_resolver = True
        await resolver.start()
        self._unsubscribe = resolver.subscribe(self._on_instances)

    def _on_instances(self, available: tuple[Instance, ...]) -> None:
        assert self.resolver is not None
        everything = self.resolver.instances()
        self._balancer.update(everything)
        upstreams = self.upstreams
        if upstreams:
            present = {i.id: i for i in everything}
            for key, upstream in list(upstreams.items()):
                instance = present.get(key)
                old = upstream.instance
                if instance is None or (instance.host, instance.port) != (old.host, old.port):
                    del upstreams[key]  # gone, or moved: a new breaker and pool if picked
                    upstream.forget()
                else:
                    upstream.instance = instance

    def upstream(self, instance: Instance) -> Upstream:
        """Return the state of ``instance``, making it (breaker, pool) on first use."""
        upstream = self.upstreams.get(instance.id)
        if upstream is None:
            name = f"{self.service}/{instance.id}"
            if self._new_breaker is not None:
                breaker = self._new_breaker(name)
            else:
                breaker = CircuitBreaker(name, clock=self._clock)
            pool = self._http.pool(instance.host, instance.port)
            upstream = Upstream(instance, pool, breaker, self._balancer, self._clock)
            self.upstreams[instance.id] = upstream
        return upstream

    @property
    def stale(self) -> bool:
        """Whether the resolver serves a stale view (the registry is unreachable)."""
        return self.resolver is not None and self.resolver.statistics().stale

    async def aclose(self) -> None:
        """Stop following; close the resolver and registry if they were opened here."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for upstream in self.upstreams.values():
            upstream.forget()
        self.upstreams.clear()
        if self._owns_resolver and self.resolver is not None:
            await self.resolver.aclose()
        if self._owns_registry and self._registry is not None:
            await self._registry.aclose()
