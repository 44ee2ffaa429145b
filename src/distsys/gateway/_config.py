"""The gateway's configuration: typed, frozen msgspec Structs, one per TOML table.

A file is read by :func:`~distsys.gateway.load_config` (``_config_load.py``), which
turns every mistake into a :class:`~distsys.gateway.GatewayConfigError` naming the key
path. Durations are a number of seconds or a string with a unit (``"250ms"``, ``"2s"``,
``"1.5m"``, ``"1h"``); sizes are a number of bytes or a string with a unit (``"64KiB"``,
``"16MiB"``, ``"1GB"``).
"""

from __future__ import annotations

import math
from typing import Any, Final

import msgspec

__all__ = [
    "BreakerConfig",
    "ByteSize",
    "Duration",
    "GatewayConfig",
    "LimitsConfig",
    "RateLimitConfig",
    "RouteConfig",
    "UpstreamConfig",
    "convert_value",
]

DURATION_ACCEPTED: Final = (
    "a duration: a number of seconds >= 0, or a string such as '250ms', '2s', '1.5m', '1h'"
)
SIZE_ACCEPTED: Final = (
    "a size: a number of bytes >= 0, or a string such as '512KiB', '16MiB', '1GB'"
)

_DURATION_UNITS: Final = (("ms", 0.001), ("us", 1e-6), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
_SIZE_UNITS: Final = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


class Duration(float):
    """Seconds, written in the file as a number or a string with a unit."""


class ByteSize(int):
    """Bytes, written in the file as a number or a string with a unit."""


def parse_duration(value: object) -> Duration:
    """Return ``value`` (seconds, or ``"250ms"``, ``"2s"`` ...) as a Duration.

    Raises:
        ValueError: not a finite duration >= 0 (the message says what is accepted).
    """
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        for unit, scale in _DURATION_UNITS:
            number = text[: -len(unit)]
            if text.endswith(unit) and number and number[-1].isdigit():
                try:
                    seconds = float(number) * scale
                except ValueError:
                    seconds = None
                break
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(DURATION_ACCEPTED)
    return Duration(seconds)


def parse_size(value: object) -> ByteSize:
    """Return ``value`` (bytes, or ``"16MiB"`` ...) as a ByteSize.

    Raises:
        ValueError: not a whole number of bytes >= 0 (the message says what is accepted).
    """
    size: float | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str):
        text = value.strip().lower()
        digits = len(text) - len(text.lstrip("0123456789."))
        number, unit = text[:digits], text[digits:].strip()
        scale = _SIZE_UNITS.get(unit)
        if number and scale is not None:
            try:
                size = float(number) * scale
            except ValueError:
                size = None
    if size is None or size < 0 or not math.isfinite(size) or size != int(size):
        raise ValueError(SIZE_ACCEPTED)
    return ByteSize(int(size))


def _dec_hook(kind: type, value: Any) -> Any:
    if kind is Duration:
        return parse_duration(value)
    if kind is ByteSize:
        return parse_size(value)
    raise NotImplementedError(kind)


def convert_value(data: Any, kind: type[Any]) -> Any:
    """Convert builtins (parsed TOML) to ``kind``; msgspec errors name the path."""
    return msgspec.convert(data, kind, dec_hook=_dec_hook)


class _Table(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A TOML table: unknown keys are refused."""


class RateLimitConfig(_Table, frozen=True, kw_only=True):
    """``[routes.rate_limit]``: a token bucket per client key, local or in Redis.

    Attributes:
        rate: tokens added per second (> 0); required.
        burst: the most tokens a bucket holds (>= 1; default ``ceil(rate)``).
        key: what a bucket belongs to: ``"ip"`` (the client address, the default),
            ``"header:NAME"`` (a header's value; requests without it share one bucket),
            or ``"global"`` (one bucket for the route).
        redis_url: ``redis://host:6379/0``: keep the buckets in Redis, shared by every
            gateway process that uses the same URL and route name (default: in memory).
        fail_open: with Redis, let requests through while Redis is unreachable (the
            default, as Envoy's rate limit filter) instead of answering 503.
    """

    rate: float
    burst: int | None = None
    key: str = "ip"
    redis_url: str | None = None
    fail_open: bool = True


class BreakerConfig(_Table, frozen=True, kw_only=True):
    """``[routes.breaker]``: the circuit breaker of each instance behind the route.

    Attributes:
        enabled: False turns the breakers off (every call is let through).
        failure_rate: the failure share that opens a breaker, in (0, 1] (default 0.5).
        minimum_calls: calls in the window before it is judged (>= 1; default 20).
        window: the rolling window, a duration (> 0; default 10 s).
        wait: how long an open breaker stays open before trial calls (default 5 s).
    """

    enabled: bool = True
    failure_rate: float = 0.5
    minimum_calls: int = 20
    window: Duration = Duration(10.0)
    wait: Duration = Duration(5.0)


class RouteConfig(_Table, frozen=True, kw_only=True):
    """``[[routes]]``: which requests go to which service, and how.

    Attributes:
        prefix: the path prefix matched (starts with ``/``; ``/api`` matches ``/api``,
            ``/api/...`` and ``/api?...`` but not ``/apix``); required.
        service: the service name the registry knows; required.
        name: the route's name in metrics and the admin API (default: the prefix).
        methods: the methods matched (default: all).
        host: the ``Host`` matched, without port (default: any).
        strip_prefix: remove the prefix before forwarding (``/api/x`` -> ``/x``).
        rewrite: replace the prefix by this path before forwarding.
        timeout: the whole exchange's limit (> 0; default 30 s), capped by the client's
            ``X-Request-Timeout-Ms``.
        retries: the most attempts per request, the first included (>= 1; default 2).
            A request that may have reached an instance is repeated only if its method
            is idempotent and it has no body; one that reached none is always.
        balancer: ``round_robin``, ``random``, ``least_outstanding``, ``p2c_ewma``
            (default) or ``consistent_hash``.
        hash_on: for ``consistent_hash``: ``"header:NAME"``, ``"cookie:NAME"`` or
            ``"ip"`` (required with it; a request without the key hashes its client IP).
        hash_factor: the bounded-load factor of ``consistent_hash`` (>= 1; default 1.25).
        rate_limit: the route's rate limit (default: none).
        breaker: the per-instance circuit breaker settings.
    """

    prefix: str
    service: str
    name: str | None = None
    methods: list[str] | None = None
    host: str | None = None
    strip_prefix: bool = False
    rewrite: str | None = None
    timeout: Duration = Duration(30.0)
    retries: int = 2
    balancer: str = "p2c_ewma"
    hash_on: str | None = None
    hash_factor: float = 1.25
    rate_limit: RateLimitConfig | None = None
    breaker: BreakerConfig = BreakerConfig()


class LimitsConfig(_Table, frozen=True, kw_only=True):
    """``[limits]``: what a client may send, and how slowly.

    Attributes:
        max_header_bytes: the largest request line + header section (default 32 KiB;
            larger: 431).
        max_headers: the most request headers (default 100; more: 431).
        max_body_bytes: the largest request body (default 16 MiB; larger: 413).
        header_timeout: the time a client has to send a request's headers, from its
            first byte (or from connecting) (default 10 s; then 408 and the connection
            is closed: slowloris).
        idle_timeout: how long a keep-alive connection may wait for its next request
            (default 60 s).
    """

    max_header_bytes: ByteSize = ByteSize(32 * 1024)
    max_headers: int = 100
    max_body_bytes: ByteSize = ByteSize(16 * 1024 * 1024)
    header_timeout: Duration = Duration(10.0)
    idle_timeout: Duration = Duration(60.0)


class UpstreamConfig(_Table, frozen=True, kw_only=True):
    """``[upstream]``: the pooled keep-alive connections to each instance.

    Attributes:
        max_connections: the most connections open to one instance (default 256);
            requests beyond wait for one, bounded by their deadline.
        connect_timeout: the time a connection may take to open (default 2 s).
        idle_timeout: how long an idle connection is kept (default 4 s, under uvicorn's
            5 s keep-alive so the gateway closes first).
    """

    max_connections: int = 256
    connect_timeout: Duration = Duration(2.0)
    idle_timeout: Duration = Duration(4.0)


class GatewayConfig(_Table, frozen=True, kw_only=True):
    """The whole configuration (the TOML file's top level).

    Attributes:
        registry: the registry URL (``sqlite:///.distsys/registry.db``,
            ``redis://...``, ``etcd://...``, ``memory://``); required.
        listen: ``host:port`` to serve on (default ``127.0.0.1:8080``; port 0: any).
        admin: ``host:port`` of the admin API, a loopback address (default
            ``127.0.0.1:9901``; port 0: any).
        reload_interval: how often the file's modification time is checked (default
            2 s; 0 turns polling off: reload on SIGHUP only).
        drain_timeout: on stop, how long requests in flight may take to finish (default
            10 s).
        limits: the ``[limits]`` table.
        upstream: the ``[upstream]`` table.
        routes: the ``[[routes]]``.
    """

    registry: str
    listen: str = "127.0.0.1:8080"
    admin: str = "127.0.0.1:9901"
    reload_interval: Duration = Duration(2.0)
    drain_timeout: Duration = Duration(10.0)
    limits: LimitsConfig = LimitsConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    routes: list[RouteConfig] = []
