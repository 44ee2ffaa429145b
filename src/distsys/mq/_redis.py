"""``redis://``: a broker on Redis Streams (Redis 7 or later) and their consumer groups.

Features: everything in :class:`~distsys.mq.Broker`. A topic is a stream and a consumer
group is a native Redis consumer group, so ``XINFO`` and ``redis-cli`` show them as they
are; who holds which delivery, and how often it was delivered, lives in the group's
pending entries list on the server. A delivery not acked within ``ack_wait`` is claimed
by a consumer of the group with ``XAUTOCLAIM`` and delivered again; an ack that comes
after that is refused as stale by a script that checks the entry's owner and delivery
counter (a late ack that nobody has overtaken yet still counts). Delayed publishes and
nacks wait in sorted sets scored on the server's clock, and are delivered within about
0.2 s of falling due. A batch is one script, stored whole or not at all. Publication
times are the server's (the time in an entry's id). :mod:`distsys.mq._redis_lua` draws
the data model and explains redelivery, nacks, delays and retention.

Each subscription holds one connection of its own, on which its fetches block in the
server (``XREADGROUP ... BLOCK``); when that connection drops, it reconnects with backoff
(recreating its group if the server lost it) and carries on; its unacked deliveries are
redelivered after ``ack_wait``. While a backlog lasts and batches are handled quickly, it
reads the next batch ahead (so up to twice ``prefetch`` deliveries are out to it).
Publishes, acks, nacks and ``depth`` share a pool and are never retried by the client: a
failure raises :class:`~distsys.errors.BackendUnavailableError` (with the password
redacted), and a publish that raises may or may not have been stored.

Connection string::

    redis://[user:password@]host[:port][/db][?namespace=name]

``port`` defaults to 6379, ``db`` to 0, ``namespace`` to ``distsys`` (all keys of a
namespace start with ``{namespace}``, also a Cluster hash tag; see the KV backend).

Ordering: per topic, in publication order (the stream's order); a delayed message takes
its place when it falls due; within a group, redeliveries (nacked, then reclaimed) come
before new messages. Consumers of a group share the stream, so each sees a subsequence.

Durability: ``publish`` returns once the entry is in the Redis server's memory. What a
crash of the server loses depends on its persistence settings: with ``appendonly yes``
and ``appendfsync everysec`` (the usual choice) up to about a second of writes — messages,
acks, group positions; with ``appendfsync always``, none, at a cost in throughput; with
RDB snapshots only, everything since the last snapshot. Replication is asynchronous, so a
failover to a replica may lose the latest writes too. Keep ``maxmemory-policy
noeviction``: an evicted stream is lost messages. The server this project develops and
tests against runs without persistence (``save ""``, ``appendonly no``): when it
restarts, every topic, group and pending delivery is gone — subscriptions recreate their
groups and carry on with what is published afterwards. Right for development, not for
data that must survive.

Retention: an entry is deleted (``XTRIM MINID``) once every group of its topic has acked
it; each fetching subscription checks every ``trim_interval`` seconds. A topic with no
group keeps everything, and a group created later starts from the oldest entry still
kept, so declare groups up front with :meth:`~distsys.mq.BrokerBase.create_group`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgspec
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from distsys.backends._redis import DEFAULT_PORT, _count, _positive, call_redis, unavailable
from distsys.backends._redis_url import parse_redis_url
from distsys.backends._url import BackendURL
from distsys.clock import Clock
from distsys.errors import BackendUnavailableError
from distsys.mq import _redis_lua as lua
from distsys.mq._broker import BrokerBase, Subscription
from distsys.mq._message import Depth, Outgoing
from distsys.mq._redis_fetch import MAX_BLOCK, RedisFetcher

__all__ = ["RedisBroker", "RedisBrokerStatistics"]

T = TypeVar("T")

_encode_headers: Final = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class RedisBrokerStatistics:
    """What a :class:`RedisBroker` has been through.

    Attributes:
        namespace: the namespace its keys live in.
        subscriptions: subscriptions open now.
        reconnects: times a subscription lost its connection and reconnected (or tried).
    """

    namespace: str
    subscriptions: int
    reconnects: int


class RedisBroker(BrokerBase):
    """A broker on Redis Streams, for many processes and machines.

    Safe within one event loop: any number of tasks may publish and consume at once
    (operations borrow pooled connections; each subscription has a connection of its own).

    Args:
        url: ``redis://[user:password@]host[:port][/db][?namespace=name]``.
        timeout: seconds to connect and to wait for each reply before the server is
            considered unavailable.
        trim_interval: how often each fetching subscription deletes the entries every
            group has acked, in seconds.
        max_connections: the size limit of the shared connection pool (None: unlimited).
        clock: paces fetch timeouts, reclaim scans and reconnection pauses; ack deadlines
            and delays run on the Redis server's own clock.
        wall: Unix time source for deadline headers and their checks (publication
            times are the server's: the time in a stream entry's id).

    Raises:
        InvalidArgumentError: a malformed URL, namespace, db or option (naming the field).
    """

    def __init__(
        self,
        url: str | BackendURL,
        *,
        timeout: float = 5.0,
        trim_interval: float = 1.0,
        max_connections: int | None = None,
        clock: Clock | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        parsed, namespace, db = parse_redis_url(url)
        if max_connections is not None:
            _count("max_connections", max_connections)
        accepted = "a finite number of seconds > 0"
        self._timeout = _positive("timeout", timeout, accepted)
        self._trim_interval = _positive("trim_interval", trim_interval, accepted)
        super().__init__(parsed, clock=clock, wall=wall)
        self._namespace = namespace
        self._ns = f"{{{namespace}}}"
        self._host, self._port = parsed.address(DEFAULT_PORT)
        self._db = db
        self._reconnects = 0
        self._client = self._redis(socket_timeout=self._timeout, max_connections=max_connections)
        self._publish_script = self._client.register_script(lua.PUBLISH)
        self._fetch_script = self._client.register_script(lua.FETCH)
        self._ack_script = self._client.register_script(lua.ACK)
        self._nack_script = self._client.register_script(lua.NACK)
        self._create_script = self._client.register_script(lua.CREATE_GROUP)
        self._leave_script = self._client.register_script(lua.LEAVE)
        self._depth_script = self._client.register_script(lua.DEPTH)

    def statistics(self) -> RedisBrokerStatistics:
        """Return a snapshot of the broker's counters."""
        return RedisBrokerStatistics(self._namespace, len(self._subscriptions), self._reconnects)

    # ------------------------------------------------------------------ plumbing

    def _redis(self, **options: Any) -> Redis:
        return Redis(
            host=self._host,
            port=self._port,
            db=self._db,
            username=self.url.username,
            password=self.url.password,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),  # a retried write could apply twice
            protocol=2,
            **options,
        )

    def _connect_single(self, name: str) -> Redis:
        """Return a client with one connection of its own (for a subscription's fetches)."""
        return self._redis(
            socket_timeout=self._timeout + MAX_BLOCK,  # outlasts the longest blocking read
            single_connection_client=True,
            client_name=name,  # visible in CLIENT LIST
        )

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        return unavailable(self.url, exc)

    async def _call(self, call: Callable[[], Awaitable[T]], *, idempotent: bool = False) -> T:
        return await call_redis(self.url, call, idempotent=idempotent)

    def _key(self, kind: str, topic: str, group: str = "") -> str:
        """Return the Redis key of ``kind`` (see :mod:`distsys.mq._redis_lua`)."""
        return f"{self._ns}{kind}:{topic}:{group}" if group else f"{self._ns}{kind}:{topic}"

    # ------------------------------------------------------------------ the hooks

    async def _publish(self, topic: str, messages: list[Outgoing]) -> list[str]:
        stream = self._key("stream", topic)
        if len(messages) == 1 and messages[0].delay <= 0:
            fields = _fields(messages[0], None)
            reply = await self._call(
                lambda: self._client.execute_command("XADD", stream, "*", *fields)  # type: ignore[no-untyped-call]
            )
            return [reply.decode()]
        args: list[bytes | str | int] = [self._key("delayed-msg", topic) + ":"]
        for out in messages:
            if out.delay > 0:
                message_id = uuid.uuid4().hex
                fields = _fields(out, message_id)
                args += (max(1, round(out.delay * 1000)), message_id, len(fields), *fields)
            else:
                fields = _fields(out, None)
                args += (0, "", len(fields), *fields)
        keys = [stream, self._key("delayed", topic)]
        ids = await self._call(lambda: self._publish_script(keys=keys, args=args))
        return [i.decode() for i in ids]

    async def _open_fetcher(self, subscription: Subscription) -> RedisFetcher:
        return RedisFetcher(self, subscription)

    async def _create_group(self, topic: str, group: str) -> None:
        keys = [self._key("stream", topic), self._key("ack-wait", topic)]
        await self._call(lambda: self._create_script(keys=keys, args=[group, ""]), idempotent=True)

    async def _depth(self, topic: str, group: str) -> Depth:
        keys = [
            self._key("stream", topic),
            self._key("delayed", topic),
            self._key("retry", topic, group),
            self._key("ack-wait", topic),
        ]
        waiting, in_flight, delayed = await self._call(
            lambda: self._depth_script(keys=keys, args=[group]), idempotent=True
        )
        return Depth(int(waiting), int(in_flight), int(delayed))

    async def _ping(self) -> None:
        await self._call(self._client.ping, idempotent=True)

    async def _aclose(self) -> None:
        await self._client.aclose()


def _fields(out: Outgoing, message_id: str | None) -> list[bytes | str]:
    """The stream fields of a message (see :mod:`distsys.mq._redis_lua`)."""
    fields: list[bytes | str] = [b"p", out.payload]
    if out.headers:
        fields += (b"h", _encode_headers(out.headers))
    if out.key is not None:
        fields += (b"k", out.key)
    if message_id is not None:
        fields += (b"i", message_id)
    return fields
