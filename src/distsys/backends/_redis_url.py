"""The ``redis://`` URL every Redis-backed part of distsys takes (no redis import here).

    redis://[user:password@]host[:port][/db][?namespace=name]

``namespace`` (default ``distsys``) prefixes every key, as ``{namespace}``, which is
also a Redis Cluster hash tag; several applications share one Redis by choosing
different namespaces.
"""

from __future__ import annotations

from typing import Final

from distsys.backends._url import BackendURL, parse_url
from distsys.errors import InvalidArgumentError

__all__ = ["DEFAULT_NAMESPACE", "DEFAULT_PORT", "URL_ACCEPTED", "parse_redis_url"]

DEFAULT_NAMESPACE: Final = "distsys"
DEFAULT_PORT: Final = 6379
URL_ACCEPTED: Final = "redis://[user:password@]host[:port][/db][?namespace=name]"


def parse_redis_url(url: str | BackendURL) -> tuple[BackendURL, str, int]:
    """Return the parsed URL, its namespace and its database number.

    Raises:
        InvalidArgumentError: not a ``redis://`` URL, an unknown query parameter, a bad
            namespace or database number (naming the field; the password redacted).
    """
    parsed = parse_url(url) if isinstance(url, str) else url
    if not isinstance(parsed, BackendURL) or parsed.scheme != "redis":
        shown = parsed.redacted() if isinstance(parsed, BackendURL) else parsed
        raise InvalidArgumentError("url", shown, URL_ACCEPTED)
    unknown = sorted(set(parsed.query) - {"namespace"})
    if unknown:
        raise InvalidArgumentError(
            "url", parsed.redacted(), URL_ACCEPTED, detail=f"unknown parameter {unknown[0]!r}"
        )
    namespace = parsed.query.get("namespace", DEFAULT_NAMESPACE)
    if not namespace or any(c in namespace for c in "{}\0"):
        raise InvalidArgumentError(
            "namespace", namespace, "a non-empty name without '{', '}' or NUL"
        )
    if parsed.path and not (parsed.path.isascii() and parsed.path.isdigit()):
        raise InvalidArgumentError("db", parsed.path, "a database number such as /0")
    return parsed, namespace, int(parsed.path or 0)
