"""How distsys's KV maps onto etcd's wire: the URL, keys, entries, leases and errors."""

from __future__ import annotations

import math
from typing import Any, Final

import aetcd  # type: ignore[import-untyped]
import grpc  # type: ignore[import-untyped]
from aetcd import rpc

from distsys.backends._kv import EventType, KVEntry, KVEvent
from distsys.backends._url import BackendURL, parse_url
from distsys.errors import ArgumentTypeError, InvalidArgumentError

__all__ = [
    "CLIENT_ERRORS",
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT",
    "INT64_MAX",
    "LEASE_NOT_FOUND",
    "MAX_LEASE_TTL",
    "TOO_LARGE",
    "channel_options",
    "encode_key",
    "held",
    "is_permanent",
    "parse_etcd_url",
    "reason_of",
    "to_entry",
    "to_event",
    "token_expired",
    "whole_seconds",
    "wire_lease",
]

DEFAULT_PORT: Final = 2379
DEFAULT_TIMEOUT: Final = 5.0
"""Seconds a request may take before the server counts as unavailable."""
MAX_LEASE_TTL: Final = 9_000_000_000
"""etcd's largest lease TTL in seconds (``MaxLeaseTTL`` in etcd's lessor)."""

INT64_MAX: Final = 2**63 - 1
"""The largest version or lease id etcd can hold (protobuf int64)."""
URL_FORMAT: Final = "etcd://[user:password@]host[:port][?timeout=seconds]"
LEASE_NOT_FOUND: Final = "requested lease not found"
TOO_LARGE: Final = ("request is too large", "larger than max")
AUTH_TOKEN: Final = ("invalid auth token", "auth token is expired")
PERMANENT: Final = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED})


def channel_options(timeout: float) -> dict[str, int]:
    """Return the gRPC channel options for a store whose requests take ``timeout`` at most.

    Reconnect quickly once a restarted server is back, instead of after gRPC's default
    backoff of up to two minutes. Ping while a watch is open, and give up on a connection
    whose pings go unanswered for ``timeout``: a silently dead connection (a partition, a
    frozen or vanished host) then breaks the watch within about 10 s + ``timeout``
    instead of never. etcd refuses pings more often than every 5 s
    (--grpc-keepalive-min-time). Large prefixes may need a large response.
    """
    timeout_ms = max(1, round(timeout * 1000))
    return {
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.min_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 1000,
        "grpc.keepalive_time_ms": 10_000,
        "grpc.keepalive_timeout_ms": timeout_ms,
        "grpc.http2.ping_timeout_ms": timeout_ms,
        "grpc.http2.max_pings_without_data": 0,
        "grpc.max_receive_message_length": 2**31 - 1,
    }


# What a failed call of aetcd / gRPC can raise; anything else is a bug and propagates.
CLIENT_ERRORS: Final = (aetcd.ClientError, grpc.RpcError, grpc.aio.BaseError, TimeoutError)


def check_timeout(value: object) -> float:
    """Return ``value`` as seconds if it is a finite number > 0, else raise naming timeout."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentTypeError("timeout", value, "a number of seconds > 0")
    if not (value > 0 and math.isfinite(value)):
        raise InvalidArgumentError("timeout", value, "a finite number of seconds > 0")
    return float(value)


def parse_etcd_url(url: str | BackendURL, timeout: float | None) -> tuple[BackendURL, float]:
    """Check an ``etcd://`` URL; return it and the request timeout (argument, URL, default).

    Raises:
        InvalidArgumentError: not etcd://, a path, a user without a password (or the
            reverse), an unknown query option, or a timeout that is not > 0.
    """
    parsed = parse_url(url) if isinstance(url, str) else url
    shown = parsed.redacted()
    if parsed.scheme != "etcd":
        raise InvalidArgumentError("url", shown, URL_FORMAT, detail="the scheme must be etcd")
    if parsed.path:
        raise InvalidArgumentError(
            "url", shown, URL_FORMAT, detail="etcd URLs take no path; use a key prefix"
        )
    if (parsed.username is None) != (parsed.password is None):
        raise InvalidArgumentError(
            "url", shown, URL_FORMAT, detail="give both a user and a password, or neither"
        )
    unknown = sorted(set(parsed.query) - {"timeout"})
    if unknown:
        raise InvalidArgumentError(
            "url", shown, URL_FORMAT, detail=f"unknown option {unknown[0]!r}; known: timeout"
        )
    if timeout is None and "timeout" in parsed.query:
        try:
            timeout = float(parsed.query["timeout"])
        except ValueError:
            raise InvalidArgumentError(
                "timeout", parsed.query["timeout"], "a finite number of seconds > 0"
            ) from None
    return parsed, check_timeout(DEFAULT_TIMEOUT if timeout is None else timeout)


def encode_key(key: str, field: str = "key") -> bytes:
    """Return ``key`` as etcd bytes (UTF-8), or raise naming ``field``.

    surrogateescape, here and when decoding: a key that someone else wrote to etcd and
    that is not UTF-8 reads as a str that writes back as the same bytes.
    """
    try:
        return key.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise InvalidArgumentError(field, key, "a str that UTF-8 can encode") from None


def to_entry(kv: Any) -> KVEntry:
    """Turn an etcd ``mvccpb.KeyValue`` into an entry (etcd's lease 0 means none)."""
    key: str = kv.key.decode("utf-8", "surrogateescape")
    return KVEntry(key, kv.value, kv.version, kv.lease or None)


def to_event(event: Any) -> KVEvent:
    """Turn an etcd ``mvccpb.Event`` into a PUT or DELETE event."""
    if event.type == rpc.Event.DELETE:
        return KVEvent(EventType.DELETE, event.kv.key.decode("utf-8", "surrogateescape"))
    entry = to_entry(event.kv)
    return KVEvent(EventType.PUT, entry.key, entry)


def held(lease: int | None) -> bool:
    """Whether ``lease`` could be an etcd lease id: etcd's are positive int64 (0 is none)."""
    return lease is not None and 0 < lease <= INT64_MAX


def wire_lease(lease: int | None) -> int | None:
    """Return the lease id to send: one etcd never grants in place of 0 or a non-int64.

    etcd takes 0 as "no lease", and protobuf refuses ids outside int64; -1 makes etcd
    answer "lease not found" itself, only when the write would happen (as for any
    lease it does not know), so a failing compare-and-set still just returns None.
    """
    if lease is None or held(lease) or -(2**63) <= lease < 0:
        return lease
    return -1


def whole_seconds(ttl: float) -> int:
    """Round a TTL up to the whole seconds etcd counts in (the server may raise it more)."""
    if ttl > MAX_LEASE_TTL:
        raise InvalidArgumentError("ttl", ttl, f"at most {MAX_LEASE_TTL} seconds (etcd's limit)")
    return max(1, math.ceil(ttl))


def status_of(exc: BaseException | None) -> Any:
    """Return the gRPC status code behind an aetcd / gRPC error, or None."""
    if exc is None:
        return None
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, grpc.aio.AioRpcError):
            return candidate.code()
    return None


def reason_of(exc: BaseException) -> str:
    """Describe an aetcd / gRPC failure for an error message: status code and details."""
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, grpc.aio.AioRpcError):
            return f"{candidate.code().name}: {candidate.details()}"
    return str(exc) or type(exc).__name__


def token_expired(exc: BaseException | None) -> bool:
    """Whether etcd refused a call because its auth token expired (renew and retry)."""
    unauthenticated = status_of(exc) == grpc.StatusCode.UNAUTHENTICATED
    return bool(unauthenticated and any(marker in str(exc) for marker in AUTH_TOKEN))


def is_permanent(exc: BaseException | None) -> bool:
    """Whether reconnecting will not cure a failure.

    Bad credentials (etcd answers INVALID_ARGUMENT "authentication failed"), a missing
    permission, or a request etcd refuses; an expired token is renewed instead.
    """
    code = status_of(exc)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return not token_expired(exc)
    return code in PERMANENT
