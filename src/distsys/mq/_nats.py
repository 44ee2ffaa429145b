"""``nats://``: a broker on NATS JetStream, shared by any number of processes and machines.

Features: everything in :class:`~distsys.mq.Broker`. A topic is a stream
(``<namespace>_<topic>``, capturing the subject ``<namespace>.<topic>``); a consumer group
is a durable pull consumer named after the group, with explicit acks, the group's
``ack_wait``, deliver-all and no server-side delivery limit (dead-lettering after
``max_deliveries`` happens in the client, with JetStream's delivery count as the attempt).
Consumers send pull requests that the server holds until messages come: no polling.
``publish`` returns once JetStream's PubAck says the message is stored. ``publish_batch``
sends every message at once and waits for all their PubAcks — one round trip, but not
atomic (JetStream before 2.12 has no atomic batch): if it raises, some of the messages
may be stored, and publishing the batch again may store those twice.

Connection string::

    nats://[user:password@ | token@]host[:port][?namespace=name&storage=file|memory
        &replicas=n&max_age=seconds&max_bytes=n&confirm_acks=false|true&timeout=seconds]

The port defaults to 4222, ``namespace`` to ``distsys`` (letters and digits; several
applications share a server by choosing different ones), ``storage`` to ``file``,
``replicas`` to 1, ``max_age`` to 7 days (0: no limit), ``max_bytes`` to 0 (no limit),
``timeout`` to 5 s. Keyword arguments of the same names win over the URL. In a cluster,
name any member: the client learns the others from it and fails over. Not supported: TLS,
JetStream domains, several URLs. Needs nats-server 2.9 or later (tested on 2.9.10).

Ordering: per topic, the order in which the server stored the messages (one publisher's
awaited publishes, and a batch as sent, keep their order). A redelivery comes after newer
messages once its ack wait ends or it is nacked; consumers of one group run in parallel.

Durability: with ``storage=file`` (the default) a message is in the server's file store
before its PubAck, so it survives a crash or restart of the server process; the server
fsyncs every ``sync_interval`` (2 minutes by default; ``sync_interval: always`` on servers
2.10+ fsyncs every write), so a power loss can take the last interval's messages. With
``replicas=3`` in a JetStream cluster a message is acknowledged once a quorum stored it.
``storage=memory`` streams are lost when the server stops.

Retention: limits. A message stays until ``max_age`` or ``max_bytes`` removes it, acked
or not, so a group created at any time starts from everything the stream retains (interest
retention would drop messages published before any group existed, which the contract
forbids; work-queue retention allows one group). Size ``max_age`` to outlast your
slowest group: an unconsumed message older than that is gone.

Acks: a delivery's deadline is kept locally — the time its pull request was sent plus the
group's ack wait, never later than the server's deadline (a request lingers on the server
at most a tenth of ack_wait, so at most that much of the window is lost to this caution)
— and ``ack()`` or ``nack()`` after it returns False without telling the server.
Residual race: an ack made just before the local deadline may reach the server after the
server's; JetStream accepts an ack of a delivery it has since redelivered, so both
handlings of the message report True (the duplicate that at-least-once allows). Acks are
not waited for, as with nats-py's ``Msg.ack()``: they are queued and written together
within 2 ms, or with the next pull request — one write for a prefetch's worth of acks.
True means the ack will be sent; if the process or the connection dies first, the message
is redelivered, and ``depth`` may count an acked message as in flight for a moment.
``confirm_acks=true`` waits for the server's confirmation instead (``ack_sync``), one round
trip per batch of concurrent acks.

Duplicates: nats-server before 2.10.14 may deliver a message again with its delivery count
set back to 1 when it failed to deliver another one to an expired pull request
(nats-server#5305). Each process remembers, per group, the messages it holds and the last
4096 it acked: a second copy of one in hand is dropped (the first settles it), a copy of
one acked is acked again and dropped. A copy that reaches another process is handled
twice, as at-least-once allows.

Delays: JetStream before 2.12 cannot schedule messages, so a delayed message waits in the
topic's work-queue stream ``<namespace>-delay_<topic>`` with an ``x-distsys-not-before``
header (the publisher's wall clock). Each process with a subscription on the topic runs a
mover that naks a not-yet-due message with the time it has left (the server keeps the
timer) and publishes a due one into the topic's stream, de-duplicated by ``Nats-Msg-Id``
so that two movers cannot store it twice (the delay stream has no ``max_age``: any delay
is kept). It then is a new message there: it counts its
attempts from 1, keeps the id ``d<n>`` that ``publish`` returned and its original
``published_at``, and is ordered by when it fell due. Nothing moves while no process
subscribes to the topic. ``nack(delay=...)`` is JetStream's nak with a delay; ``depth``
counts such a message as delayed in the process that nacked it, as in flight elsewhere.
The error given to a ``nack`` is remembered in that process only, for the dead letter.

Connections: a publish to a server that cannot be reached fails within
``connect_timeout`` (2 s) with :class:`~distsys.errors.BackendUnavailableError`. Once
connected, nats-py reconnects (every second, 60 times) while requests fail after
``timeout``; then the connection is given up and the next operation opens a new one.
Subscriptions ride out outages of any length: they retry, and continue where their group
left off once the server is back.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from nats.js.errors import NoStreamResponseError, NotFoundError

from distsys.backends import BackendURL
from distsys.clock import Clock
from distsys.errors import BackendUnavailableError, InvalidArgumentError
from distsys.mq._broker import BrokerBase, Subscription
from distsys.mq._message import Depth, Outgoing
from distsys.mq._nats_conn import Connection, open_connection, unavailable
from distsys.mq._nats_consume import NATSFetcher
from distsys.mq._nats_delay import Mover
from distsys.mq._nats_layout import Layout
from distsys.mq._nats_ledger import Ledger
from distsys.mq._nats_settings import NATSSettings, parse_nats_url
from distsys.mq._nats_wire import HEADER_NOT_BEFORE, UNAVAILABLE, Names, encode_headers

__all__ = ["NATSBroker", "NATSBrokerStatistics"]

log = logging.getLogger("distsys.mq")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NATSBrokerStatistics:
    """What a :class:`NATSBroker` has been through.

    Attributes:
        namespace: the namespace of its streams.
        connected: whether its connection is up now.
        connections: connections opened (a new one after one was given up).
        reconnects: times nats-py reconnected a connection.
        subscriptions: subscriptions open now.
        movers: topics whose delayed messages this process moves now.
        moved: delayed messages this process moved into their topic.
    """

    namespace: str
    connected: bool
    connections: int
    reconnects: int
    subscriptions: int
    movers: int
    moved: int


class NATSBroker(BrokerBase):
    """A broker on NATS JetStream (see the module docstring for the URL and the mapping).

    Safe within one event loop: any number of tasks may publish and consume at once over
    its one connection, opened on first use.

    Args:
        url: ``nats://[user:password@ | token@]host[:port][?option=value...]``.
        clock: the clock of local ack deadlines (it must follow real time).
        wall: Unix time source for deadlines and delays.
        namespace, storage, replicas, max_age, max_bytes, confirm_acks, timeout: see
            :class:`~distsys.mq._nats_settings.NATSSettings`; None takes the URL's value,
            else the default.
        connect_timeout, reconnect_attempts, reconnect_wait: likewise (not in the URL).

    Raises:
        InvalidArgumentError: a malformed URL or a setting out of range (naming it).
    """

    def __init__(
        self,
        url: str | BackendURL = "nats://127.0.0.1:4222",
        *,
        clock: Clock | None = None,
        wall: Callable[[], float] = time.time,
        namespace: str | None = None,
        storage: str | None = None,
        replicas: int | None = None,
        max_age: float | None = None,
        max_bytes: int | None = None,
        confirm_acks: bool | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        reconnect_attempts: int | None = None,
        reconnect_wait: float | None = None,
    ) -> None:
        parsed, settings = parse_nats_url(
            url,
            {
                "namespace": namespace,
                "storage": storage,
                "replicas": replicas,
                "max_age": max_age,
                "max_bytes": max_bytes,
                "confirm_acks": confirm_acks,
                "timeout": timeout,
                "connect_timeout": connect_timeout,
                "reconnect_attempts": reconnect_attempts,
                "reconnect_wait": reconnect_wait,
            },
        )
        super().__init__(parsed, clock=clock, wall=wall)
        self.settings: NATSSettings = settings
        self.names = Names(settings.namespace)
        self.layout = Layout(self.names, settings)
        self._ledgers: dict[tuple[str, str], Ledger] = {}
        self._conn: Connection | None = None
        self._connect_lock = asyncio.Lock()
        self._movers: dict[str, Mover] = {}
        self._counts = {"connections": 0, "reconnects": 0, "moved": 0}

    def unavailable(self, exc: BaseException, doing: str) -> BackendUnavailableError:
        """Return the error to raise when ``doing`` failed with ``exc``."""
        return unavailable(self.url, exc, doing)

    async def connection(self) -> Connection:
        """Return the open connection, connecting first if there is none (or it was given up).

        Raises:
            BackendUnavailableError: the broker is closed or the server cannot be reached.
        """
        self._check_open()
        conn = self._conn
        if conn is not None and not conn.nc.is_closed:
            return conn
        async with self._connect_lock:
            self._check_open()
            conn = self._conn
            if conn is None or conn.nc.is_closed:
                self.layout.forget()  # a new connection may meet a new server: check again
                conn = await open_connection(
                    self.url, self.settings, on_reconnected=self._on_reconnected
                )
                self._conn = conn
                self._counts["connections"] += 1
            return conn

    async def _on_reconnected(self) -> None:
        self._counts["reconnects"] += 1
        log.info("nats %s: reconnected", self.url)

    # ------------------------------------------------------------ hooks: publish

    async def _publish(self, topic: str, messages: builtins.list[Outgoing]) -> builtins.list[str]:
        conn = await self.connection()
        limit = conn.nc.max_payload
        for out in messages:
            if len(out.payload) > limit:
                raise InvalidArgumentError(
                    "payload", f"{len(out.payload)} bytes", f"at most the server's {limit} bytes"
                )
        for retry in (False, True):
            try:
                await self.layout.stream(conn, topic)
                if any(out.delay > 0 for out in messages):
                    await self.layout.delay_stream(conn, topic)
                return await self._send(conn, topic, messages)
            except NoStreamResponseError as exc:
                # The stream went away behind our back (deleted, or a memory stream lost
                # in a restart): create it again, once.
                self.layout.forget(topic)
                if retry:
                    raise self.unavailable(exc, f"publishing to {topic}") from None
            except UNAVAILABLE as exc:
                raise self.unavailable(exc, f"publishing to {topic}") from None
        raise AssertionError("unreachable")

    async def _send(
        self, conn: Connection, topic: str, messages: builtins.list[Outgoing]
    ) -> builtins.list[str]:
        js = conn.js
        subject, delay_subject = self.names.subject(topic), self.names.delay_subject(topic)
        if len(messages) == 1 and messages[0].delay <= 0:
            out = messages[0]
            ack = await js.publish(subject, out.payload, headers=encode_headers(out))
            return [str(ack.seq)]
        wall = self.wall()
        futures = []
        try:
            for out in messages:
                if out.delay > 0:
                    due = {HEADER_NOT_BEFORE: f"{wall + out.delay:.6f}"}
                    headers = encode_headers(out, due)
                    futures.append(
                        await js.publish_async(delay_subject, out.payload, headers=headers)
                    )
                else:
                    headers = encode_headers(out)
                    futures.append(await js.publish_async(subject, out.payload, headers=headers))
            async with asyncio.timeout(self.settings.timeout):
                acks = await asyncio.gather(*futures)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        # A delayed message's id is fixed now, from its place in the delay stream.
        return [
            f"d{ack.seq}" if out.delay > 0 else str(ack.seq)
            for ack, out in zip(acks, messages, strict=True)
        ]

    # --------------------------------------------------------- hooks: the rest

    async def _open_fetcher(self, subscription: Subscription) -> NATSFetcher:
        fetcher = NATSFetcher(self, subscription)
        await fetcher.open()
        return fetcher

    async def _create_group(self, topic: str, group: str) -> None:
        conn = await self.connection()
        try:
            await self.layout.stream(conn, topic)
            await self.layout.group(conn, topic, group, None)
        except UNAVAILABLE as exc:
            raise self.unavailable(exc, f"creating group {group} of {topic}") from None

    async def _depth(self, topic: str, group: str) -> Depth:
        conn = await self.connection()
        js, names = conn.js, self.names
        try:
            consumer, stream, delay_stream = await asyncio.gather(
                _missing_as_none(js.consumer_info(names.stream(topic), group)),
                _missing_as_none(js.stream_info(names.stream(topic))),
                _missing_as_none(js.stream_info(names.delay_stream(topic))),
            )
        except UNAVAILABLE as exc:
            raise self.unavailable(exc, f"reading the depth of {topic}") from None
        nacked = self.ledger(topic, group).delayed(self.clock.now())
        delayed = nacked + (delay_stream.state.messages if delay_stream else 0)
        if consumer is None:  # the group will start from what the stream holds
            waiting = stream.state.messages if stream is not None else 0
            return Depth(waiting=waiting, in_flight=0, delayed=delayed)
        in_flight = max((consumer.num_ack_pending or 0) - nacked, 0)
        return Depth(waiting=consumer.num_pending or 0, in_flight=in_flight, delayed=delayed)

    async def _ping(self) -> None:
        conn = await self.connection()
        try:
            await conn.js.account_info()
        except UNAVAILABLE as exc:
            raise self.unavailable(exc, "ping") from None

    async def _aclose(self) -> None:
        movers, self._movers = builtins.list(self._movers.values()), {}
        for mover in movers:
            await mover.stop()
        conn, self._conn = self._conn, None
        if conn is not None and not conn.nc.is_closed:
            with contextlib.suppress(*UNAVAILABLE):
                await conn.nc.flush(timeout=1)  # what was sent without waiting goes out
            with contextlib.suppress(*UNAVAILABLE):
                await conn.nc.close()

    # ------------------------------------------------- shared with the consumers

    def acquire_mover(self, topic: str) -> None:
        """Start moving ``topic``'s delayed messages, or count one more user of it."""
        mover = self._movers.get(topic)
        if mover is None:
            mover = self._movers[topic] = Mover(self, topic)
            mover.start()
        mover.users += 1

    async def release_mover(self, topic: str) -> None:
        """Count one user of ``topic``'s mover less; stop it when none is left."""
        mover = self._movers.get(topic)
        if mover is None:
            return
        mover.users -= 1
        if mover.users <= 0:
            del self._movers[topic]
            await mover.stop()

    def ledger(self, topic: str, group: str) -> Ledger:
        """What this process knows of ``group``'s messages of ``topic``."""
        ledger = self._ledgers.get((topic, group))
        if ledger is None:
            ledger = self._ledgers[(topic, group)] = Ledger()
        return ledger

    def count_moved(self, n: int) -> None:
        """Count delayed messages moved into their topic."""
        self._counts["moved"] += n

    def statistics(self) -> NATSBrokerStatistics:
        """Return the broker's counters."""
        conn = self._conn
        return NATSBrokerStatistics(
            namespace=self.names.namespace,
            connected=conn is not None and conn.nc.is_connected,
            connections=self._counts["connections"],
            reconnects=self._counts["reconnects"],
            subscriptions=len(self._subscriptions),
            movers=len(self._movers),
            moved=self._counts["moved"],
        )


async def _missing_as_none(request: Awaitable[T]) -> T | None:
    try:
        return await request
    except NotFoundError:
        return None
