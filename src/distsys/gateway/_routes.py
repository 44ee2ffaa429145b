"""The route table: configured routes compiled for a lookup without regexes or decoding.

Matching works on the raw bytes of the path: a route's prefix matches a path equal to it,
or continuing it after a ``/`` (``/api`` matches ``/api`` and ``/api/x``, not ``/apix``;
a prefix that ends with ``/`` matches whatever continues it). Among the routes that
match, the longest prefix wins; at equal prefixes a route bound to the request's
``Host`` wins over one for any host. The table keeps one dict from prefix to routes
and the distinct prefix lengths, longest first, so a lookup is a slice and a dict
probe per length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final

from distsys.gateway._config import RouteConfig

if TYPE_CHECKING:
    from distsys.gateway._deadlines import DeadlineQueue
    from distsys.gateway._limits import Limiter
    from distsys.gateway._stats import RouteStats
    from distsys.gateway._targets import Target

__all__ = ["KeyOf", "Route", "RouteTable", "key_reader", "rewrite_target"]

KeyOf = Callable[[list[bytes], bytes], bytes | None]
"""Reads a request key from its header fields (``[name, b": ", value, b"\\r\\n", ...]``)
and its client address (hashing, rate limits)."""

_IDEMPOTENT: Final = frozenset({b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"})


class Route:
    """One compiled route, and the live objects it uses (set by the gateway).

    Safe within one event loop. Its fields are read on every request: plain attributes.
    """

    __slots__ = (
        "attempts",
        "config",
        "deadlines",
        "hash_key",
        "host",
        "index",
        "limit_key",
        "limiter",
        "methods",
        "name",
        "prefix",
        "replace",
        "retry_methods",
        "service",
        "stats",
        "target",
        "timeout",
    )

    def __init__(self, index: int, config: RouteConfig) -> None:
        self.index = index
        self.config = config
        self.name = config.name if config.name is not None else config.prefix
        self.service = config.service
        self.prefix = config.prefix.encode("ascii")
        self.host = None if config.host is None else config.host.lower().encode("ascii")
        self.methods = (
            None
            if config.methods is None
            else frozenset(m.upper().encode("ascii") for m in config.methods)
        )
        self.replace: bytes | None = None
        if config.strip_prefix:
            self.replace = b""
        elif config.rewrite is not None:
            self.replace = config.rewrite.encode("ascii")
        self.timeout = float(config.timeout)
        self.attempts = config.retries
        self.retry_methods = _IDEMPOTENT if config.retries > 1 else frozenset()
        self.hash_key: KeyOf | None = None if config.hash_on is None else key_reader(config.hash_on)
        limit = config.rate_limit
        self.limit_key: KeyOf | None = None if limit is None else key_reader(limit.key)
        # The live parts, attached by the gateway when it builds the table.
        self.target: Target
        self.stats: RouteStats
        self.deadlines: DeadlineQueue
        self.limiter: Limiter | None = None

    def upstream_target(self, url: bytes, path: bytes) -> bytes:
        """Return the request target to send upstream for ``url`` (``path`` + query)."""
        replace = self.replace
        if replace is None:
            return url
        return rewrite_target(replace, path[len(self.prefix) :], url[len(path) :])

    def __repr__(self) -> str:
        return f"<Route {self.name!r} {self.prefix.decode()} -> {self.service}>"


def rewrite_target(replace: bytes, rest: bytes, query: bytes) -> bytes:
    """Join the replacement of a prefix, the rest of the path and the query."""
    if not rest:
        new = replace or b"/"
    elif rest[:1] == b"/":
        new = replace.rstrip(b"/") + rest
    else:
        new = replace.rstrip(b"/") + b"/" + rest
    return new + query


def key_reader(spec: str) -> KeyOf:
    """Return a reader of ``"ip"``, ``"global"``, ``"header:NAME"`` or ``"cookie:NAME"``.

    A header or cookie the request lacks reads as None.
    """
    kind, _, name = spec.partition(":")
    if spec == "ip":
        return _client_ip
    if spec == "global":
        return _global
    wanted = name.lower().encode("latin-1")
    size = len(wanted)
    if kind == "header":

        def header(fields: list[bytes], client: bytes) -> bytes | None:
            for i in range(0, len(fields), 4):
                key = fields[i]
                if len(key) == size and key.lower() == wanted:
                    return fields[i + 2]
            return None

        return header
    cookie_name = name.encode("latin-1") + b"="

    def cookie(fields: list[bytes], client: bytes) -> bytes | None:
        for i in range(0, len(fields), 4):
            key = fields[i]
            if len(key) == 6 and key.lower() == b"cookie":
                for part in fields[i + 2].split(b";"):
                    part = part.strip()
                    if part.startswith(cookie_name):
                        return part[len(cookie_name) :]
        return None

    return cookie


def _client_ip(fields: list[bytes], client: bytes) -> bytes:
    return client


def _global(fields: list[bytes], client: bytes) -> bytes:
    return b"*"


class RouteTable:
    """The routes of one configuration, compiled for matching; immutable once built.

    A reload builds a new table and swaps it in whole: a request keeps the route it
    matched for its whole life.
    """

    __slots__ = ("_by_prefix", "_lengths", "routes", "uses_hosts")

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        by_prefix: dict[bytes, list[Route]] = {}
        for route in self.routes:
            by_prefix.setdefault(route.prefix, []).append(route)
        for group in by_prefix.values():
            group.sort(key=lambda r: (r.host is None, r.methods is None, r.index))
        self._by_prefix = {prefix: tuple(group) for prefix, group in by_prefix.items()}
        self._lengths = tuple(sorted({len(p) for p in by_prefix}, reverse=True))
        # Whether a route is bound to a Host (else the Host header is never looked at);
        # an attribute, not a property: it is read on every request.
        self.uses_hosts = any(route.host is not None for route in self.routes)

    def match(self, method: bytes, path: bytes, host: bytes | None) -> Route | None:
        """Return the route for a request, or None (see :meth:`allowed` for 404 vs 405).

        Args:
            method: the method, upper-case as sent.
            path: the path without query.
            host: the Host header lower-cased without port (None: not looked at).
        """
        size = len(path)
        by_prefix = self._by_prefix
        for length in self._lengths:
            if length > size:
                continue
            group = by_prefix.get(path[:length])
            if group is None:
                continue
            if length != size and path[length - 1] != 47 and path[length] != 47:  # "/"
                continue
            for route in group:
                if (route.host is None or route.host == host) and (
                    route.methods is None or method in route.methods
                ):
                    return route
        return None

    def allowed(self, path: bytes, host: bytes | None) -> Sequence[str]:
        """Return the methods routes accept for ``path`` (empty: no route has the path)."""
        size = len(path)
        methods: set[str] = set()
        for length in self._lengths:
            group = self._by_prefix.get(path[:length]) if length <= size else None
            if group is None:
                continue
            if length != size and path[length - 1] != 47 and path[length] != 47:
                continue
            for route in group:
                if route.host is None or route.host == host:
                    if route.methods is None:
                        return ()  # any method would have matched: not a 405
                    methods.update(m.decode() for m in route.methods)
        return sorted(methods)
