"""The admin API's documents, built from a gateway's live state (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from distsys.gateway._stats import CLASSES

if TYPE_CHECKING:
    from distsys.gateway._routes import Route
    from distsys.gateway._stats import RouteStats
    from distsys.gateway._targets import Target

__all__ = ["routes_view", "services_view", "stats_view"]


def routes_view(routes: Iterable[Route]) -> list[dict[str, Any]]:
    """Describe the routes in force, in configuration order."""
    described = []
    for route in routes:
        config = msgspec.to_builtins(route.config, enc_hook=_plain)
        config["name"] = route.name
        described.append(config)
    return described


def _plain(value: Any) -> Any:
    """Encode a Duration (a float) or a ByteSize (an int) as the plain number it is."""
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    raise NotImplementedError(type(value))


def services_view(targets: Iterable[Target], stale: Iterable[str]) -> list[dict[str, Any]]:
    """Describe each target: its service, balancer, and instances with breaker and load."""
    stale_services = set(stale)
    described = []
    for target in sorted(targets, key=lambda t: (t.service, t.balancer.name)):
        upstreams = target.discovery.upstreams
        balanced = target.balancer.statistics()
        instances = []
        for node in balanced.instances:
            upstream = upstreams.get(node.id)
            instances.append(
                {
                    "id": node.id,
                    "address": node.address,
                    "status": node.status.value,
                    "weight": node.weight,
                    "eligible": node.eligible,
                    "ejected": node.ejected,
                    "breaker": None if upstream is None else upstream.breaker.state.value,
                    "ewma_ms": None if node.ewma is None else round(node.ewma * 1000, 3),
                    "outstanding": node.outstanding,
                    "picks": node.picks,
                    "errors": node.errors,
                    "requests": 0 if upstream is None else upstream.requests,
                }
            )
        described.append(
            {
                "service": target.service,
                "balancer": balanced.balancer,
                "stale": target.service in stale_services,
                "eligible": balanced.eligible,
                "panic": balanced.panic,
                "instances": instances,
            }
        )
    return described


def stats_view(
    stats: Mapping[str, RouteStats], unmatched: RouteStats, window: int
) -> dict[str, Any]:
    """Describe the rolling rates and totals per route (``unmatched``: no route took it)."""
    routes = {}
    for name, route_stats in [*sorted(stats.items()), (unmatched.name, unmatched)]:
        route_stats.fold()
        totals = route_stats.by_class()
        routes[name] = {
            "rates": route_stats.rates(),
            "total": dict(zip(CLASSES, totals, strict=True)),
            "requests": sum(totals),
            "in_flight": route_stats.in_flight,
            "errors": dict(sorted(route_stats.errors.items())),
        }
    return {"window_seconds": window, "routes": routes}
