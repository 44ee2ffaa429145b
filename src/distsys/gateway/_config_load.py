"""Reading a configuration: TOML to typed Structs, then the checks types cannot express.

Every mistake becomes one :class:`GatewayConfigError` naming the key path
(``routes[2].timeout``; route indices count from 0) and what the key accepts: an
unknown key, a missing one, a value of the wrong type, a bad duration, a route with no
service, two routes for the same prefix, a negative limit ...
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from distsys.backends import KV_SCHEMES, parse_url
from distsys.balancer import BALANCERS
from distsys.errors import InvalidArgumentError
from distsys.gateway._config import (
    BreakerConfig,
    GatewayConfig,
    LimitsConfig,
    RateLimitConfig,
    RouteConfig,
    UpstreamConfig,
    convert_value,
)
from distsys.gateway._errors import GatewayConfigError

__all__ = ["check_config", "load_config", "parse_config", "split_address"]

_SECTIONS: Final[dict[str, type[msgspec.Struct]]] = {
    "": GatewayConfig,
    "limits": LimitsConfig,
    "upstream": UpstreamConfig,
    "routes[]": RouteConfig,
    "routes[].rate_limit": RateLimitConfig,
    "routes[].breaker": BreakerConfig,
}
_REQUIRED: Final = {
    "registry": "the registry URL, such as 'sqlite:///.distsys/registry.db'",
    "prefix": "the path prefix the route matches, such as '/api/orders'",
    "service": "the name of the service the route sends requests to",
    "rate": "the tokens added per second",
}
_AT: Final = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_INDEX: Final = re.compile(r"\[\d+\]")
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
_HOST: Final = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read and check the TOML file at ``path``.

    Raises:
        GatewayConfigError: the file is not valid TOML or not a valid configuration (the
            message names the file and the key).
        OSError: the file cannot be read.
    """
    source = os.fspath(path)
    with open(source, "rb") as file:
        data = file.read()
    try:
        return parse_config(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise GatewayConfigError(
            "(document)", None, "UTF-8 text", source=source, message="not UTF-8 text"
        ) from exc
    except GatewayConfigError as exc:
        raise exc.with_source(source) from None


def parse_config(document: str | Mapping[str, Any]) -> GatewayConfig:
    """Check a configuration given as TOML text or as a mapping (parsed TOML, JSON ...).

    Raises:
        GatewayConfigError: it is not a valid configuration (the message names the key).
    """
    if isinstance(document, str):
        try:
            data: Any = tomllib.loads(document)
        except tomllib.TOMLDecodeError as exc:
            raise GatewayConfigError(
                "(document)", None, "valid TOML", message=f"not valid TOML: {exc}"
            ) from None
    else:
        data = document
    try:
        config: GatewayConfig = convert_value(data, GatewayConfig)
    except msgspec.ValidationError as exc:
        raise _translate(str(exc), data) from None
    check_config(config)
    return config


def check_config(config: GatewayConfig) -> None:
    """Check what the types alone do not: formats, ranges, conflicts between routes.

    Raises:
        GatewayConfigError: the first problem found, naming its key.
    """
    _check_registry(config.registry)
    split_address("listen", config.listen)
    host, _ = split_address("admin", config.admin)
    if not _loopback(host):
        raise GatewayConfigError(
            "admin", config.admin, "a loopback address such as 127.0.0.1:9901",
            detail="the admin API has no authentication",
        )  # fmt: skip
    limits = config.limits
    _at_least("limits.max_header_bytes", limits.max_header_bytes, 1024)
    _at_least("limits.max_headers", limits.max_headers, 1)
    _positive("limits.header_timeout", limits.header_timeout)
    _positive("limits.idle_timeout", limits.idle_timeout)
    _at_least("upstream.max_connections", config.upstream.max_connections, 1)
    _positive("upstream.connect_timeout", config.upstream.connect_timeout)
    _positive("upstream.idle_timeout", config.upstream.idle_timeout)
    seen_names: dict[str, int] = {}
    for index, route in enumerate(config.routes):
        _check_route(f"routes[{index}]", route)
        for other_index, other in enumerate(config.routes[:index]):
            if _same_match(route, other):
                raise GatewayConfigError(
                    f"routes[{index}].prefix", route.prefix,
                    "a prefix (with host and methods) no other route matches",
                    detail=f"routes[{other_index}] matches the same requests",
                )  # fmt: skip
        name = route.name if route.name is not None else route.prefix
        if name in seen_names:
            raise GatewayConfigError(
                f"routes[{index}].name", name, "a name no other route has",
                detail=f"routes[{seen_names[name]}] is named so too",
            )  # fmt: skip
        seen_names[name] = index


def split_address(key: str, address: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:80`` for IPv6) into host and port.

    Raises:
        GatewayConfigError: not ``host:port`` with a port in 0..65535.
    """
    accepted = "host:port, such as 127.0.0.1:8080 or [::1]:8080 (port 0: any free port)"
    host, colon, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise GatewayConfigError(key, address, accepted)
    return host, int(port)


# ---------------------------------------------------------------------- routes


def _check_route(at: str, route: RouteConfig) -> None:
    _check_path(f"{at}.prefix", route.prefix)
    if not _NAME.fullmatch(route.service):
        raise GatewayConfigError(
            f"{at}.service", route.service,
            "a service name: 1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit",
        )  # fmt: skip
    if route.name is not None and not route.name.strip():
        raise GatewayConfigError(f"{at}.name", route.name, "a non-empty name")
    if route.methods is not None:
        if not route.methods:
            raise GatewayConfigError(f"{at}.methods", route.methods, "a non-empty list")
        for n, method in enumerate(route.methods):
            if not _TOKEN.fullmatch(method):
                raise GatewayConfigError(
                    f"{at}.methods[{n}]", method, "an HTTP method such as 'GET'"
                )
    if route.host is not None and not _HOST.fullmatch(route.host.lower()):
        raise GatewayConfigError(
            f"{at}.host", route.host, "a host name without port, such as 'api.example.com'"
        )
    if route.rewrite is not None:
        if route.strip_prefix:
            raise GatewayConfigError(
                f"{at}.rewrite", route.rewrite, "no rewrite when strip_prefix = true",
                detail="strip_prefix removes the prefix, rewrite replaces it: choose one",
            )  # fmt: skip
        _check_path(f"{at}.rewrite", route.rewrite)
    _positive(f"{at}.timeout", route.timeout)
    _at_least(f"{at}.retries", route.retries, 1)
    if route.retries > 10:
        raise GatewayConfigError(f"{at}.retries", route.retries, "attempts in 1..10")
    _check_balancer(at, route)
    if route.rate_limit is not None:
        _check_rate_limit(f"{at}.rate_limit", route.rate_limit)
    breaker = route.breaker
    if not 0 < breaker.failure_rate <= 1:
        raise GatewayConfigError(
            f"{at}.breaker.failure_rate", breaker.failure_rate, "a share in (0, 1]"
        )
    _at_least(f"{at}.breaker.minimum_calls", breaker.minimum_calls, 1)
    _positive(f"{at}.breaker.window", breaker.window)


def _check_path(key: str, path: str) -> None:
    accepted = "a path starting with '/', without query, spaces or '.'/'..' segments"
    if (
        not path.startswith("/")
        or any(c in path for c in "?# \t\r\n")
        or not path.isascii()
        or any(part in (".", "..") for part in path.split("/"))
    ):
        raise GatewayConfigError(key, path, accepted)


def _check_balancer(at: str, route: RouteConfig) -> None:
    known = sorted(BALANCERS)
    if route.balancer not in BALANCERS:
        close = difflib.get_close_matches(route.balancer, known, n=1)
        raise GatewayConfigError(
            f"{at}.balancer", route.balancer, f"one of {', '.join(known)}",
            detail=f"did you mean {close[0]!r}?" if close else "",
        )  # fmt: skip
    hashing = route.balancer == "consistent_hash"
    if hashing and route.hash_on is None:
        raise GatewayConfigError(
            f"{at}.hash_on", None, "'header:NAME', 'cookie:NAME' or 'ip'", missing=True,
            detail="balancer = 'consistent_hash' hashes a request key",
        )  # fmt: skip
    if route.hash_on is not None:
        if not hashing:
            raise GatewayConfigError(
                f"{at}.hash_on", route.hash_on, "no hash_on unless balancer = 'consistent_hash'"
            )
        _check_key(f"{at}.hash_on", route.hash_on, ("header", "cookie"), ("ip",))
    if not route.hash_factor >= 1:
        raise GatewayConfigError(f"{at}.hash_factor", route.hash_factor, "a factor >= 1")


def _check_rate_limit(at: str, limit: RateLimitConfig) -> None:
    if not limit.rate > 0 or limit.rate == float("inf"):
        raise GatewayConfigError(f"{at}.rate", limit.rate, "a finite rate > 0 (per second)")
    if limit.burst is not None:
        _at_least(f"{at}.burst", limit.burst, 1)
    _check_key(f"{at}.key", limit.key, ("header",), ("ip", "global"))
    if limit.redis_url is not None:
        accepted = "a redis://host:port/db URL"
        try:
            parsed = parse_url(limit.redis_url)
        except InvalidArgumentError:
            raise GatewayConfigError(f"{at}.redis_url", limit.redis_url, accepted) from None
        if parsed.scheme != "redis":
            raise GatewayConfigError(f"{at}.redis_url", limit.redis_url, accepted)


def _check_key(key: str, value: str, kinds: tuple[str, ...], words: tuple[str, ...]) -> None:
    kind, colon, name = value.partition(":")
    if value in words or (colon and kind in kinds and _TOKEN.fullmatch(name)):
        return
    accepted = " or ".join([*(f"'{k}:NAME'" for k in kinds), *(f"'{w}'" for w in words)])
    raise GatewayConfigError(key, value, accepted)


def _same_match(a: RouteConfig, b: RouteConfig) -> bool:
    if a.prefix != b.prefix:
        return False
    if (a.host or "").lower() != (b.host or "").lower():
        return False
    if a.methods is None or b.methods is None:
        return True
    return bool({m.upper() for m in a.methods} & {m.upper() for m in b.methods})


# ---------------------------------------------------------------------- values


def _check_registry(url: str) -> None:
    known = KV_SCHEMES.schemes
    accepted = f"a registry URL whose scheme is one of {', '.join(s + '://' for s in known)}"
    try:
        parsed = parse_url(url)
    except InvalidArgumentError:
        raise GatewayConfigError("registry", url, accepted) from None
    if parsed.scheme not in known:
        raise GatewayConfigError("registry", parsed.redacted(), accepted)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _positive(key: str, seconds: float) -> None:
    if not seconds > 0:
        raise GatewayConfigError(key, seconds, "a duration > 0")


def _at_least(key: str, value: int, low: int) -> None:
    if value < low:
        raise GatewayConfigError(key, value, f"an int >= {low}")


# ------------------------------------------------------- msgspec's errors, reworded


def _translate(error: str, data: Any) -> GatewayConfigError:
    """Reword a msgspec ValidationError as a GatewayConfigError naming the key path."""
    match = _AT.match(error)
    assert match is not None
    message = match.group("message")
    path = (match.group("path") or "").lstrip(".")
    unknown = re.match(r"Object contains unknown field `(.+)`", message)
    missing = re.match(r"Object missing required field `(.+)`", message)
    if unknown or missing:
        field = (unknown or missing).group(1)  # type: ignore[union-attr]
        key = f"{path}.{field}" if path else field
        section = _SECTIONS.get(_INDEX.sub("[]", path))
        known = "" if section is None else ", ".join(section.__struct_fields__)
        table = _INDEX.sub("", path)
        where = "the top level"
        if path:
            where = f"[[{table}]]" if path.endswith("]") else f"[{table}]"
        if unknown:
            close = difflib.get_close_matches(field, known.split(", "), n=1)
            return GatewayConfigError(
                key, _lookup(data, key), f"a key of {where}: {known}",
                detail=f"unknown key; did you mean {close[0]!r}?" if close else "unknown key",
            )  # fmt: skip
        accepted = _REQUIRED.get(field, f"a value (a key of {where})")
        return GatewayConfigError(key, None, accepted, missing=True)
    accepted = message
    if message.startswith("Expected "):
        accepted = message[len("Expected ") :].split(", got ")[0].replace("`", "")
        accepted = {"int": "an int", "float": "a number", "str": "a string"}.get(accepted, accepted)
        accepted = accepted.replace("array", "a list").replace("object", "a table")
    return GatewayConfigError(path or "(top level)", _lookup(data, path), accepted)


def _lookup(data: Any, path: str) -> Any:
    """Return the value at ``routes[2].timeout`` in parsed TOML, or None."""
    node = data
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        try:
            node = node[int(part[1:-1])] if part.startswith("[") else node[part]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return node
