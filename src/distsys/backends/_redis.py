"""``redis://``: a KV store in a Redis server (7 or later), shared by any number of processes.

Features: everything in :class:`~distsys.backends.KV`. Every write is one atomic Lua
script (:mod:`distsys.backends._redis_lua` draws the data model); leases expire on the
server's clock, and a leased key expires *with* its lease inside Redis, so it disappears
even when no client is connected. Watches subscribe to a change channel that the scripts
publish to, with sequence numbers, and hear of expiries through keyspace notifications;
they survive reconnections with a fresh RESET snapshot (see
:mod:`distsys.backends._redis_stream`). A single primary: no Sentinel or Cluster routing;
keep ``maxmemory-policy noeviction`` (the default), since evicted keys are not reported.

Connection string::

    redis://[user:password@]host[:port][/db][?namespace=name]

``port`` defaults to 6379, ``db`` to 0, ``namespace`` to ``distsys``; several
applications share one Redis by choosing different namespaces (all keys of a namespace
start with ``{namespace}``, which is also a Cluster hash tag).

Keyspace notifications: each watch, as it connects, checks ``notify-keyspace-events``
and, if expiry events are off, turns them on with ``CONFIG SET`` (adding the ``E`` and
``x`` flags to what is set; this changes the server's configuration for everyone). Where
``CONFIG`` is refused (managed Redis services often rename or forbid it), or with
``keyspace_notifications=False``, watches instead re-read their prefix every
``check_interval`` seconds and report keys that expired meanwhile as DELETE; enable
``Ex`` in the service's settings for prompt events.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from redis.asyncio import Connection, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from distsys.backends import _redis_lua as lua
from distsys.backends._kv import KVBase, KVEntry, KVEvent
from distsys.backends._redis_url import DEFAULT_NAMESPACE, DEFAULT_PORT, parse_redis_url
from distsys.backends._redis_watch import RedisWatch, WatchStats, open_subscriber
from distsys.backends._url import BackendURL
from distsys.clock import Clock, MonotonicClock
from distsys.errors import (
    ArgumentTypeError,
    BackendUnavailableError,
    InvalidArgumentError,
    LeaseExpiredError,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_PORT",
    "RedisKV",
    "RedisKVStatistics",
    "call_redis",
    "unavailable",
]

T = TypeVar("T")

_log = logging.getLogger(__name__)

_UNAVAILABLE: Final = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)
_KEYSPACE_SETTING: Final = "notify-keyspace-events"


@dataclass(frozen=True, slots=True)
class RedisKVStatistics:
    """What a :class:`RedisKV` has been through.

    Attributes:
        namespace: the namespace its keys live in.
        watches: watches open now.
        reconnects: times a watch lost its connection and reconnected (or tried to).
        resyncs: times a watch sent a new RESET without reconnecting (a sequence gap or a
            consumer too slow for its buffer).
        keyspace_notifications: whether the last watch session got expiry notifications
            (None before any watch); False means expiries are found by periodic checks.
    """

    namespace: str
    watches: int
    reconnects: int
    resyncs: int
    keyspace_notifications: bool | None


def _positive(field: str, value: object, accepted: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentTypeError(field, value, accepted)
    if not (value > 0 and math.isfinite(value)):
        raise InvalidArgumentError(field, value, accepted)
    return float(value)


def _count(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(field, value, "an int >= 1")
    if value < 1:
        raise InvalidArgumentError(field, value, "an int >= 1")


def unavailable(url: BackendURL, exc: BaseException) -> BackendUnavailableError:
    """Return the error for a failed Redis connection, with the URL's password redacted."""
    return BackendUnavailableError(url.redacted(), str(exc) or type(exc).__name__)


async def call_redis(
    url: BackendURL, call: Callable[[], Awaitable[T]], *, idempotent: bool = False
) -> T:
    """Await ``call()``, turning connection failures into BackendUnavailableError.

    An idempotent call is tried a second time, which heals a pooled connection that
    died since its last use (a restarted server); a write is never repeated.
    """
    try:
        return await call()
    except _UNAVAILABLE as exc:
        if not idempotent:
            raise unavailable(url, exc) from exc
    try:
        return await call()
    except _UNAVAILABLE as exc:
        raise unavailable(url, exc) from exc


class RedisKV(KVBase):
    """A KV store in Redis, for many processes and machines.

    Safe within one event loop: any number of tasks may use one store at once (each
    operation borrows a pooled connection; each watch has its own subscriber connection).

    Args:
        url: ``redis://[user:password@]host[:port][/db][?namespace=name]``.
        timeout: seconds to connect and to wait for each reply before the server is
            considered unavailable.
        keyspace_notifications: enable (with CONFIG SET if needed) and use expiry
            notifications for watches; False: find expiries by periodic checks.
        check_interval: seconds between a watch's liveness pings, and between its expiry
            checks when notifications are not available.
        watch_buffer: changes a slow watcher may fall behind by before it is resynchronised
            with a RESET.
        max_connections: the size limit of the connection pool (None: unlimited).
        clock: paces watch pings, checks and reconnection pauses; leases run on the Redis
            server's own clock.

    Raises:
        InvalidArgumentError: a malformed URL, namespace, db or option (naming the field).
    """

    def __init__(
        self,
        url: str | BackendURL,
        *,
        timeout: float = 5.0,
        keyspace_notifications: bool = True,
        check_interval: float = 1.0,
        watch_buffer: int = 1024,
        max_connections: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        parsed, namespace, db = parse_redis_url(url)
        _count("watch_buffer", watch_buffer)
        if max_connections is not None:
            _count("max_connections", max_connections)
        super().__init__(parsed)
        self._timeout = _positive("timeout", timeout, "a finite number of seconds > 0")
        self._check_interval = _positive(
            "check_interval", check_interval, "a finite number of seconds > 0"
        )
        self._use_notifications = bool(keyspace_notifications)
        self._watch_buffer = watch_buffer
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._namespace = namespace
        self._db = db
        self._host, self._port = parsed.address(DEFAULT_PORT)

        tag = f"{{{namespace}}}"
        self._ns = tag
        self._hash_prefix = f"{tag}k:"
        self._index = f"{tag}keys"
        self._seq = f"{tag}seq"
        self._lease_seq = f"{tag}lease-seq"
        self._channel = f"{tag}changes"

        self._client = Redis(
            host=self._host,
            port=self._port,
            db=self._db,
            username=parsed.username,
            password=parsed.password,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),  # a retried write could apply twice
            protocol=2,
            max_connections=max_connections,
        )
        self._write = self._client.register_script(lua.WRITE)
        self._delete_script = self._client.register_script(lua.DELETE)
        self._grant_script = self._client.register_script(lua.GRANT)
        self._keep_alive_script = self._client.register_script(lua.KEEP_ALIVE)
        self._revoke_script = self._client.register_script(lua.REVOKE)
        self._snapshot_script = self._client.register_script(lua.SNAPSHOT)
        self._watches: set[RedisWatch] = set()
        self._stats = WatchStats()
        self._warned_config = False

    def statistics(self) -> RedisKVStatistics:
        """Return a snapshot of the store's watch counters."""
        return RedisKVStatistics(
            namespace=self._namespace,
            watches=len(self._watches),
            reconnects=self._stats.reconnects,
            resyncs=self._stats.resyncs,
            keyspace_notifications=self._stats.keyspace_notifications,
        )

    # ------------------------------------------------------------------ helpers

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        return unavailable(self.url, exc)

    async def _run(self, call: Callable[[], Awaitable[T]], *, idempotent: bool = False) -> T:
        return await call_redis(self.url, call, idempotent=idempotent)

    def _lease_key(self, lease: int) -> str:
        return f"{self._ns}lease:{lease}"

    @staticmethod
    def _entries(flat: list[Any]) -> tuple[KVEntry, ...]:
        return tuple(
            KVEntry(
                flat[i].decode(),
                flat[i + 1] or b"",
                int(flat[i + 2]),
                int(flat[i + 3]) if flat[i + 3] else None,
            )
            for i in range(0, len(flat), 4)
        )

    async def _snapshot(self, prefix: str, token: str) -> tuple[int, tuple[KVEntry, ...]]:
        if prefix:
            low, high = b"[" + prefix.encode(), b"(" + prefix.encode() + b"\xff"
        else:
            low, high = b"-", b"+"
        seq, flat = await self._snapshot_script(
            keys=[self._index, self._seq], args=[self._ns, low, high, self._channel, token]
        )
        return int(seq), self._entries(flat)

    # ------------------------------------------------------------------ the hooks

    async def _ping(self) -> None:
        await self._run(self._client.ping, idempotent=True)

    async def _get(self, key: str) -> KVEntry | None:
        reply: list[Any] = await self._run(
            lambda: self._client.hmget(self._hash_prefix + key, ["value", "version", "lease"]),
            idempotent=True,
        )
        value, version, lease = reply
        if version is None:
            return None
        return KVEntry(key, value or b"", int(version), int(lease) if lease else None)

    async def _list(self, prefix: str) -> list[KVEntry]:
        _, entries = await self._run(lambda: self._snapshot(prefix, ""), idempotent=True)
        return list(entries)

    async def _put(self, key: str, value: bytes, lease: int | None) -> KVEntry:
        written = await self._write_entry(key, value, -1, lease)
        assert written is not None  # only a compare can fail
        return written

    async def _compare_and_set(
        self, key: str, value: bytes, version: int, lease: int | None
    ) -> KVEntry | None:
        return await self._write_entry(key, value, version, lease)

    async def _write_entry(
        self, key: str, value: bytes, expected: int, lease: int | None
    ) -> KVEntry | None:
        keys = [self._hash_prefix + key, self._index, self._seq]
        if lease is not None:
            keys += [self._lease_key(lease), self._lease_key(lease) + ":keys"]
        args = [self._ns, key, value, "" if lease is None else lease, expected, self._channel]
        reply = await self._run(lambda: self._write(keys=keys, args=args))
        if reply[0] == -1:
            assert lease is not None
            raise LeaseExpiredError(lease)
        if reply[0] == 0:
            return None
        return KVEntry(key, value, int(reply[1]), lease)

    async def _delete(self, key: str) -> bool:
        deleted = await self._run(
            lambda: self._delete_script(
                keys=[self._hash_prefix + key, self._index, self._seq],
                args=[self._ns, key, self._channel],
            )
        )
        return bool(deleted)

    async def _grant(self, ttl: float) -> int:
        ttl_ms = max(1, round(ttl * 1000))
        lease = await self._run(
            lambda: self._grant_script(keys=[self._lease_seq], args=[self._ns, ttl_ms])
        )
        return int(lease)

    async def _keep_alive(self, lease: int) -> bool:
        lease_key = self._lease_key(lease)
        alive = await self._run(
            lambda: self._keep_alive_script(
                keys=[lease_key, lease_key + ":keys"], args=[self._ns, lease]
            ),
            idempotent=True,
        )
        return bool(alive)

    async def _revoke(self, lease: int) -> bool:
        lease_key = self._lease_key(lease)
        revoked = await self._run(
            lambda: self._revoke_script(
                keys=[lease_key, lease_key + ":keys", self._index, self._seq],
                args=[self._ns, lease, self._channel],
            )
        )
        return bool(revoked)

    def _watch(self, prefix: str) -> AsyncGenerator[KVEvent, None]:
        watch = RedisWatch(
            prefix,
            subscribe=self._subscribe,
            snapshot=self._snapshot,
            channel=self._channel.encode(),
            hash_prefix=self._hash_prefix.encode(),
            unavailable=self._unavailable,
            clock=self._clock,
            check_interval=self._check_interval,
            buffer=self._watch_buffer,
            stats=self._stats,
            registry=self._watches,
        )
        return watch.events()

    async def _aclose(self) -> None:
        for watch in list(self._watches):
            await watch.close()
        await self._client.aclose()

    # ------------------------------------------------------------------ watch support

    async def _subscribe(self) -> tuple[Connection, bool]:
        """Open a subscriber connection to the change (and expiry) channels."""
        notifications = await self._keyspace_events()
        channels = [self._channel]
        if notifications:
            channels.append(f"__keyevent@{self._db}__:expired")
        conn = await open_subscriber(
            self.url,
            (self._host, self._port, self._db),
            channels,
            timeout=self._timeout,
            name=f"distsys-watch:{self._namespace}",  # visible in CLIENT LIST
        )
        return conn, notifications

    async def _keyspace_events(self) -> bool:
        """Make sure Redis publishes expiry events; False if it cannot be made to."""
        if not self._use_notifications:
            return False
        try:
            reply = await self._client.config_get(_KEYSPACE_SETTING)
            raw: Any = next(iter(reply.values()), b"") or b""
            flags = raw.decode() if isinstance(raw, bytes) else str(raw)
            missing = ("" if "E" in flags else "E") + ("" if set(flags) & set("xA") else "x")
            if missing:
                await self._client.config_set(_KEYSPACE_SETTING, flags + missing)
            return True
        except ResponseError as exc:
            if not self._warned_config:
                self._warned_config = True
                _log.warning(
                    "%s: cannot enable keyspace notifications (%s); watches will find "
                    "expired keys by re-reading every %.3g s",
                    self.url,
                    exc,
                    self._check_interval,
                )
            return False
