"""One parser for every backend URL distsys accepts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

from distsys.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["BackendURL", "int_option", "parse_url", "seconds_option"]

_ACCEPTED: Final = (
    "a URL such as memory://, sqlite:///relative/file.db, sqlite:////absolute/file.db, "
    "redis://host:6379/0, etcd://host:2379 or nats://host:4222"
)
_EMPTY: MappingProxyType[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class BackendURL:
    """A parsed backend URL.

    Attributes:
        scheme: the lower-cased scheme (``redis``, ``sqlite`` ...).
        host: the host, or None (``memory://``, ``sqlite:///...``).
        port: the port, or None when the URL gives none.
        path: for ``sqlite``, the database file: ``sqlite:///a/b.db`` is the relative path
            ``a/b.db`` and ``sqlite:////a/b.db`` the absolute ``/a/b.db`` (SQLAlchemy's
            convention); for other schemes, the path without its leading slash
            (``redis://h/2`` has path ``2``).
        username: the user, or None.
        password: the password, or None; never shown by ``str()`` or ``repr()``.
        query: the query parameters (last one wins when a name repeats).
        raw: the URL as given.
    """

    scheme: str
    host: str | None
    port: int | None
    path: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    query: MappingProxyType[str, str] = field(default_factory=lambda: _EMPTY)
    raw: str = field(default="", repr=False, compare=False)

    def address(self, default_port: int) -> tuple[str, int]:
        """Return ``(host, port)``, with 127.0.0.1 and ``default_port`` for what is missing."""
        return self.host or "127.0.0.1", self.port or default_port

    def redacted(self) -> str:
        """Return the URL with the password replaced by ``***`` (safe for logs and errors)."""
        if self.password is None:
            return self.raw
        return self.raw.replace(f":{self.password}@", ":***@", 1)

    def __str__(self) -> str:
        return self.redacted()


def parse_url(url: str) -> BackendURL:
    """Parse a backend URL, checking what every backend relies on.

    Raises:
        ArgumentTypeError: ``url`` is not a string.
        InvalidArgumentError: the URL has no ``scheme://``, a port outside 1..65535 or not a
            number, or an ``sqlite`` URL names no file.
    """
    if not isinstance(url, str):
        raise ArgumentTypeError("url", url, _ACCEPTED)
    if "://" not in url:
        raise InvalidArgumentError("url", url, _ACCEPTED, detail="it has no scheme://")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidArgumentError(
            "url", url, _ACCEPTED, detail=f"port must be a number in 1..65535 ({exc})"
        ) from None
    scheme = parts.scheme.lower()
    if not scheme or not scheme.isascii() or not (scheme[0].isalpha()):
        raise InvalidArgumentError("url", url, _ACCEPTED, detail="its scheme is not valid")
    if port is not None and not 1 <= port <= 65535:
        raise InvalidArgumentError("url", url, _ACCEPTED, detail="port must be in 1..65535")
    if parts.netloc.endswith(":"):
        raise InvalidArgumentError("url", url, _ACCEPTED, detail="port must be in 1..65535")
    path = unquote(parts.path)
    if scheme == "sqlite":
        if parts.netloc:
            raise InvalidArgumentError(
                "url", url, _ACCEPTED, detail="sqlite URLs take three slashes: sqlite:///file.db"
            )
        path = path[1:] if path.startswith("/") else path
        if not path or path.endswith("/"):
            raise InvalidArgumentError("url", url, _ACCEPTED, detail="it names no database file")
    else:
        path = path.lstrip("/")
    return BackendURL(
        scheme=scheme,
        host=parts.hostname or None,
        port=port,
        path=path,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        query=MappingProxyType(dict(parse_qsl(parts.query))),
        raw=url,
    )


def seconds_option(field: str, value: object, *, zero: bool) -> float:
    """Return ``value`` (a number, or its text from a URL) as seconds, > 0 or >= 0."""
    accepted = f"a finite number of seconds {'>= 0' if zero else '> 0'}"
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidArgumentError(field, value, accepted) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentTypeError(field, value, accepted)
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise InvalidArgumentError(field, value, accepted)
    return float(value)


def int_option(field: str, value: object, low: int = 1, high: int | None = None) -> int:
    """Return ``value`` (an int, or its text from a URL) if it is in ``low..high``."""
    accepted = f"an int >= {low}" if high is None else f"an int in {low}..{high}"
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise InvalidArgumentError(field, value, accepted) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(field, value, accepted)
    if value < low or (high is not None and value > high):
        raise InvalidArgumentError(field, value, accepted)
    return value
