"""The NATS side of one subscription: a member of a durable pull consumer (the group)."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from nats.aio.msg import Msg

from distsys.errors import BackendUnavailableError
from distsys.mq._broker import Subscription
from distsys.mq._message import HEADER_ERROR, RawDelivery
from distsys.mq._nats_ledger import Admission, Key
from distsys.mq._nats_pull import Puller, PullTrouble
from distsys.mq._nats_wire import UNAVAILABLE, decode_headers, parse_ack_reply

if TYPE_CHECKING:
    from distsys.mq._nats import NATSBroker
    from distsys.mq._nats_conn import Connection

__all__ = ["ACK", "NATSFetcher", "Token", "nak_payload"]

log = logging.getLogger("distsys.mq")

ACK: Final = b"+ACK"
NAK: Final = b"-NAK"
OUTAGE_PAUSE: Final = 1.0  # seconds between attempts while the server cannot be reached
ACK_DELAY: Final = 0.002
"""Seconds an ack may wait to be sent with others (they go out at the next fetch at the
latest): one write for a prefetch's worth of acks instead of one each."""
ACK_BATCH: Final = 256  # acks waiting that are sent at once
LINGER_SHARE: Final = 0.1
"""A pull request lingers at most this share of ack_wait: a message that comes late in
it has its deadline counted from the request's start, so this much of ack_wait may be
lost to caution (an ack then refused as stale, and the message handled again)."""
SHORTEST_LINGER: Final = 0.05


class Token:
    """What settling one delivery takes: its ack subject, local deadline, message key."""

    __slots__ = ("deadline", "key", "reply")

    def __init__(self, reply: str, deadline: float, key: Key) -> None:
        self.reply = reply
        self.deadline = deadline
        self.key = key


def nak_payload(delay: float) -> bytes:
    """The nak that asks for redelivery after ``delay`` seconds (JetStream counts in ns)."""
    if delay <= 0:
        return NAK
    return b'-NAK {"delay":%d}' % int(delay * 1e9)


class NATSFetcher:
    """One consumer of a group: pulls from the durable consumer named after the group.

    Safe within one event loop (its subscription fetches from one task at a time).
    """

    def __init__(self, broker: NATSBroker, subscription: Subscription) -> None:
        self._broker = broker
        self._topic = subscription.topic
        self._group = subscription.group
        self._wanted_ack_wait = subscription.ack_wait
        self._ack_wait = subscription.ack_wait
        self._stream = broker.names.stream(subscription.topic)
        self._ledger = broker.ledger(subscription.topic, subscription.group)
        self._puller: Puller | None = None
        self._conn: Connection | None = None
        self._closed = False
        self._mover = False
        self._outage = False
        self._acks: builtins.list[str] = []
        self._ack_timer: asyncio.TimerHandle | None = None
        self._ack_senders: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        """Create the stream and the group's consumer if needed, and start pulling.

        Raises:
            BackendUnavailableError: the server cannot be reached.
        """
        broker = self._broker
        conn = await broker.connection()
        try:
            await self._setup(conn)
        except (*UNAVAILABLE, PullTrouble) as exc:
            raise broker.unavailable(exc, f"subscribing to {self._topic}") from None
        broker.acquire_mover(self._topic)
        self._mover = True

    async def _setup(self, conn: Connection) -> None:
        broker = self._broker
        await broker.layout.stream(conn, self._topic)
        self._ack_wait = await broker.layout.group(
            conn, self._topic, self._group, self._wanted_ack_wait
        )
        if self._puller is not None:
            await self._puller.close()
            self._puller = None
        puller = Puller(conn.nc, self._stream, self._group, broker.clock)
        await puller.start()
        self._puller, self._conn = puller, conn

    async def fetch(self, max_messages: int, timeout: float) -> builtins.list[RawDelivery]:
        """Return deliveries; during an outage, wait and return none (the caller retries)."""
        if self._closed:
            return []
        try:
            if self._acks:
                await self._send_acks()
            conn = await self._broker.connection()
            if conn is not self._conn or self._puller is None:
                await self._setup(conn)
            assert self._puller is not None
            linger = max(self._ack_wait * LINGER_SHARE, SHORTEST_LINGER)
            pulled = await self._puller.fetch(max_messages, timeout, linger)
        except PullTrouble as trouble:
            log.info("%s/%s: %s; checking the consumer", self._topic, self._group, trouble)
            self._conn = None  # set up again: creates the consumer if it was deleted
            await asyncio.sleep(min(timeout, OUTAGE_PAUSE))
            return []
        except (BackendUnavailableError, *UNAVAILABLE) as exc:
            if self._closed:
                return []
            if not self._outage:
                self._outage = True
                log.warning("%s/%s: %s; retrying", self._topic, self._group, exc)
            await asyncio.sleep(min(timeout, OUTAGE_PAUSE))
            return []
        if self._outage:
            self._outage = False
            log.warning("%s/%s: consuming again", self._topic, self._group)
        deliveries = []
        ledger, now = self._ledger, self._broker.clock.now()
        for msg, sent_at in pulled:
            attempt, seq, stored_ns = parse_ack_reply(msg.reply)
            key, deadline = (seq, stored_ns), sent_at + self._ack_wait
            admission = ledger.admit(key, deadline, now)
            if admission is Admission.HAND_OUT:
                deliveries.append(self._delivery(msg, attempt, key, deadline))
            elif admission is Admission.ACK_AGAIN:
                self._queue_acks([msg.reply])
                log.debug("%s/%s: %s delivered again after its ack", self._topic, self._group, seq)
        return deliveries

    def _delivery(self, msg: Msg, attempt: int, key: Key, deadline: float) -> RawDelivery:
        seq, stored_ns = key
        decoded = decode_headers(msg.headers)
        headers = decoded.headers
        if attempt > 1:
            error = self._ledger.error(key)
            if error is not None:
                headers.setdefault(HEADER_ERROR, error)
        return RawDelivery(
            id=decoded.id or str(seq),
            topic=self._topic,
            payload=msg.data,
            headers=headers,
            key=decoded.key,
            attempt=attempt,
            published_at=decoded.published_at or stored_ns / 1e9,
            token=Token(msg.reply, deadline, key),
        )

    async def ack(self, deliveries: Sequence[RawDelivery]) -> builtins.list[bool]:
        """Ack each delivery whose local deadline has not passed; False for the others.

        Unless acks are confirmed, they are queued and written together within
        ``ACK_DELAY`` (or before the next pull request), as one write.
        """
        broker, ledger = self._broker, self._ledger
        now = broker.clock.now()
        results = []
        replies = []
        for raw in deliveries:
            token: Token = raw.token
            if now >= token.deadline:
                results.append(False)
                continue
            results.append(True)
            replies.append(token.reply)
            ledger.acked(token.key)
        if not replies:
            return results
        if broker.settings.confirm_acks:
            await self._send(replies, ACK)
            return results
        if self._queue_acks(replies):
            await self._send_acks()
        return results

    def _queue_acks(self, replies: builtins.list[str]) -> bool:
        """Queue acks to be sent within ACK_DELAY; True if enough wait to send them now."""
        self._acks += replies
        if len(self._acks) >= ACK_BATCH:
            return True
        if self._ack_timer is None:
            loop = asyncio.get_running_loop()
            self._ack_timer = loop.call_later(ACK_DELAY, self._send_acks_soon)
        return False

    def _send_acks_soon(self) -> None:
        self._ack_timer = None
        if self._acks:
            sender = asyncio.ensure_future(self._send_acks_logged())
            self._ack_senders.add(sender)
            sender.add_done_callback(self._ack_senders.discard)

    async def _send_acks_logged(self) -> None:
        try:
            await self._send_acks()
        except BackendUnavailableError as exc:
            log.warning(
                "%s/%s: acks not sent (redelivered later): %s", self._topic, self._group, exc
            )

    async def _send_acks(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        replies, self._acks = self._acks, []
        if replies:
            await self._send(replies, ACK)

    async def nack(self, delivery: RawDelivery, delay: float) -> bool:
        """Nak the delivery (with a delay) unless its local deadline has passed."""
        broker = self._broker
        token: Token = delivery.token
        now = broker.clock.now()
        if now >= token.deadline:
            return False
        await self._send([token.reply], nak_payload(delay))
        error = delivery.headers.get(HEADER_ERROR)
        self._ledger.nacked(token.key, error, now + delay if delay > 0 else None)
        return True

    async def _send(self, replies: builtins.list[str], payload: bytes) -> None:
        broker = self._broker
        conn = await broker.connection()
        try:
            if broker.settings.confirm_acks:
                timeout = broker.settings.timeout
                await asyncio.gather(
                    *(conn.nc.request(reply, payload, timeout=timeout) for reply in replies)
                )
            else:
                publish = conn.nc.publish
                for reply in replies:
                    await publish(reply, payload)
        except UNAVAILABLE as exc:
            raise broker.unavailable(exc, f"acking on {self._topic}") from None

    async def close(self) -> None:
        """Stop pulling; flush the acks sent without waiting."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(BackendUnavailableError):
            await self._send_acks()
        puller, self._puller = self._puller, None
        if puller is not None:
            await puller.close()
            if not puller.nc.is_closed:
                with contextlib.suppress(*UNAVAILABLE):
                    await puller.nc.flush(timeout=1)
        if self._mover:
            self._mover = False
            await self._broker.release_mover(self._topic)
