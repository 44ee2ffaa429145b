"""An HTTP API gateway: route requests by path to services found in a registry.

``distsys gateway --config gateway.toml`` runs one; ``Gateway(config)`` embeds one::

    async with Gateway("gateway.toml") as gateway:   # or: await gateway.serve()
        ...

Requests are matched by the longest path prefix (and optionally method and Host),
forwarded to an instance the route's balancer picks among those the registry lists,
through that instance's circuit breaker, with retries where safe, a deadline forwarded
as ``X-Request-Timeout-Ms``, rate limits, and bodies streamed both ways. The
configuration (TOML, checked key by key) reloads on SIGHUP or when its file changes,
without dropping requests. An admin API on a loopback port shows the routes, services,
rolling rates and Prometheus metrics. See ``docs/gateway.md``.
"""

from distsys.gateway._config import (
    BreakerConfig,
    GatewayConfig,
    LimitsConfig,
    RateLimitConfig,
    RouteConfig,
    UpstreamConfig,
)
from distsys.gateway._config_load import load_config, parse_config
from distsys.gateway._errors import GatewayConfigError
from distsys.gateway._gateway import Gateway, GatewayStatistics

__all__ = [
    "Gateway",
    "GatewayStatistics",
    # configuration
    "GatewayConfig",
    "RouteConfig",
    "LimitsConfig",
    "UpstreamConfig",
    "RateLimitConfig",
    "BreakerConfig",
    "load_config",
    "parse_config",
    # errors
    "GatewayConfigError",
]
