"""The settings of a ``nats://`` broker, from its URL's query and keyword arguments."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from distsys.backends import BackendURL, parse_url
from distsys.backends._url import int_option, seconds_option
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.mq._nats_wire import NAMESPACE, NAMESPACE_ACCEPTED

__all__ = ["URL_FORMAT", "NATSSettings", "parse_nats_url"]

DEFAULT_PORT: Final = 4222
DEFAULT_NAMESPACE: Final = "distsys"
DEFAULT_MAX_AGE: Final = 7 * 24 * 3600.0
URL_FORMAT: Final = (
    "nats://[user:password@ | token@]host[:port][?namespace=name&storage=file|memory"
    "&replicas=n&max_age=seconds&max_bytes=n&confirm_acks=false|true&timeout=seconds]"
)
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class NATSSettings:
    """How a :class:`~distsys.mq.NATSBroker` connects and lays out its streams.

    Attributes:
        namespace: prefix of its streams and subjects (letters and digits).
        storage: ``"file"`` (durable) or ``"memory"`` streams.
        replicas: copies of each stream in a JetStream cluster (1..5).
        max_age: seconds a message is kept, acked or not (0: no limit).
        max_bytes: bytes a topic's stream may hold before its oldest messages are
            discarded (0: no limit).
        confirm_acks: wait for the server to confirm each ack (one round trip per batch
            of concurrent acks) instead of sending acks without waiting.
        timeout: seconds a request to the server may take.
        connect_timeout: seconds to open the connection.
        reconnect_attempts: reconnections tried once connected before the connection is
            given up (the next operation opens a new one).
        reconnect_wait: seconds between reconnection attempts.
    """

    namespace: str = DEFAULT_NAMESPACE
    storage: str = "file"
    replicas: int = 1
    max_age: float = DEFAULT_MAX_AGE
    max_bytes: int = 0
    confirm_acks: bool = False
    timeout: float = 5.0
    connect_timeout: float = 2.0
    reconnect_attempts: int = 60
    reconnect_wait: float = 1.0


def _flag(field: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise InvalidArgumentError(field, value, "true or false")


def _namespace(value: object) -> str:
    if not isinstance(value, str):
        raise ArgumentTypeError("namespace", value, NAMESPACE_ACCEPTED)
    if NAMESPACE.fullmatch(value) is None:
        raise InvalidArgumentError("namespace", value, NAMESPACE_ACCEPTED)
    return value


def _storage(value: object) -> str:
    if value not in ("file", "memory"):
        raise InvalidArgumentError("storage", value, "'file' or 'memory'")
    return str(value)


_CHECKS: Final[dict[str, Callable[[object], Any]]] = {
    "namespace": _namespace,
    "storage": _storage,
    "replicas": lambda v: int_option("replicas", v, 1, 5),
    "max_age": lambda v: seconds_option("max_age", v, zero=True),
    "max_bytes": lambda v: int_option("max_bytes", v, 0),
    "confirm_acks": lambda v: _flag("confirm_acks", v),
    "timeout": lambda v: seconds_option("timeout", v, zero=False),
    "connect_timeout": lambda v: seconds_option("connect_timeout", v, zero=False),
    "reconnect_attempts": lambda v: int_option("reconnect_attempts", v, 1),
    "reconnect_wait": lambda v: seconds_option("reconnect_wait", v, zero=True),
}
_IN_URL: Final = (
    "namespace",
    "storage",
    "replicas",
    "max_age",
    "max_bytes",
    "confirm_acks",
    "timeout",
)


def parse_nats_url(
    url: str | BackendURL, options: Mapping[str, Any]
) -> tuple[BackendURL, NATSSettings]:
    """Check a ``nats://`` URL; return it and the settings (keyword options win over the
    URL's query, which wins over the defaults; a None option means "not given").

    Raises:
        InvalidArgumentError: not nats://, a path, an unknown query option, or a setting
            out of range (naming the setting).
    """
    parsed = parse_url(url) if isinstance(url, str) else url
    shown = parsed.redacted()
    if parsed.scheme != "nats":
        raise InvalidArgumentError("url", shown, URL_FORMAT, detail="the scheme must be nats")
    if parsed.path:
        raise InvalidArgumentError(
            "url", shown, URL_FORMAT, detail="nats URLs take no path; use ?namespace="
        )
    unknown = sorted(set(parsed.query) - set(_IN_URL))
    if unknown:
        raise InvalidArgumentError(
            "url",
            shown,
            URL_FORMAT,
            detail=f"unknown option {unknown[0]!r}; known: {', '.join(_IN_URL)}",
        )
    values: dict[str, Any] = {name: parsed.query[name] for name in _IN_URL if name in parsed.query}
    values.update({name: value for name, value in options.items() if value is not None})
    checked: dict[str, Any] = {name: _CHECKS[name](value) for name, value in values.items()}
    return parsed, NATSSettings(**checked)
