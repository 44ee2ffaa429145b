"""``memory://``: a broker in this process's memory, for tests and single-process tools.

Features: everything in :class:`~distsys.mq.Broker` — consumer groups, ack deadlines
and redelivery, delayed publish and nack, dead letters — with ack deadlines and delays
on the injected clock. Nothing survives the process. Connection string: ``memory://``.
Two ``open_broker("memory://")`` calls give two separate brokers: share one by passing it.
Ordering: per topic, in publication order; redeliveries come before new messages. A
message is deleted once every group that exists has acked it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from distsys.backends import BackendURL, parse_url
from distsys.clock import TimerHandle
from distsys.mq._broker import BrokerBase, BrokerStatistics, Subscription
from distsys.mq._message import Depth, Outgoing, RawDelivery

__all__ = ["MemoryBroker"]


@dataclass(slots=True)
class _Stored:
    seq: int
    id: str
    payload: bytes
    headers: dict[str, str]
    key: str | None
    published_at: float
    acked_by: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Lease:
    token: str
    deadline: float


@dataclass(slots=True)
class _Group:
    cursor: int
    ready: list[tuple[float, int]] = field(default_factory=list)  # (due, seq) redeliveries
    inflight: dict[int, _Lease] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Topic:
    log: dict[int, _Stored] = field(default_factory=dict)
    next_seq: int = 1
    delayed: list[tuple[float, int, Outgoing, float, str]] = field(default_factory=list)
    groups: dict[str, _Group] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryBroker(BrokerBase):
    """An in-memory broker. Safe within one event loop.

    Args:
        url: ``memory://`` (optional).
        clock: the clock ack deadlines and delays run on (default: monotonic).
        wall: Unix time source for publication times and deadline checks.
    """

    def __init__(self, url: str | BackendURL = "memory://", **options: object) -> None:
        super().__init__(parse_url(url) if isinstance(url, str) else url, **options)  # type: ignore[arg-type]
        self._topics: dict[str, _Topic] = {}
        self._ids = itertools.count(1)
        self._tiebreak = itertools.count()

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = _Topic()
        return topic

    def _group(self, topic: _Topic, name: str) -> _Group:
        group = topic.groups.get(name)
        if group is None:
            start = min(topic.log, default=topic.next_seq)
            group = topic.groups[name] = _Group(cursor=start)
        return group

    def _append(
        self, topic: _Topic, out: Outgoing, published_at: float, message_id: str | None = None
    ) -> str:
        message_id = message_id or str(next(self._ids))
        seq = topic.next_seq
        topic.next_seq += 1
        # A copy: the headers may be the publisher's own dict (an Outgoing passed as it is).
        headers = dict(out.headers)
        topic.log[seq] = _Stored(seq, message_id, out.payload, headers, out.key, published_at)
        return message_id

    def _promote(self, topic: _Topic, now: float) -> None:
        while topic.delayed and topic.delayed[0][0] <= now:
            _, _, out, published_at, message_id = heapq.heappop(topic.delayed)
            self._append(topic, out, published_at, message_id)

    @staticmethod
    def _notify(topic: _Topic) -> None:
        topic.changed.set()
        topic.changed = asyncio.Event()

    # ------------------------------------------------------------------- hooks

    async def _publish(self, topic_name: str, messages: list[Outgoing]) -> list[str]:
        topic = self._topic(topic_name)
        now, wall = self.clock.now(), self.wall()
        ids = []
        for out in messages:
            if out.delay > 0:
                # The id is fixed now; the sequence number is given when it falls due.
                message_id = str(next(self._ids))
                kept = Outgoing(out.payload, dict(out.headers), out.key, out.delay)
                entry = (now + out.delay, next(self._tiebreak), kept, wall, message_id)
                heapq.heappush(topic.delayed, entry)
                ids.append(message_id)
            else:
                ids.append(self._append(topic, out, wall))
        self._notify(topic)
        return ids

    async def _open_fetcher(self, subscription: Subscription) -> _MemoryFetcher:
        topic = self._topic(subscription.topic)
        self._group(topic, subscription.group)
        return _MemoryFetcher(self, topic, subscription)

    async def _create_group(self, topic_name: str, group_name: str) -> None:
        self._group(self._topic(topic_name), group_name)

    async def _depth(self, topic_name: str, group_name: str) -> Depth:
        topic = self._topic(topic_name)
        now = self.clock.now()
        self._promote(topic, now)
        group = topic.groups.get(group_name)
        if group is None:
            return Depth(waiting=len(topic.log), in_flight=0, delayed=len(topic.delayed))
        in_flight = sum(1 for lease in group.inflight.values() if lease.deadline > now)
        expired = len(group.inflight) - in_flight
        ready_now = sum(1 for due, seq in group.ready if due <= now and seq in topic.log)
        ready_later = sum(1 for due, seq in group.ready if due > now and seq in topic.log)
        fresh = sum(1 for seq in topic.log if seq >= group.cursor)
        return Depth(
            waiting=fresh + ready_now + expired,
            in_flight=in_flight,
            delayed=ready_later + len(topic.delayed),
        )

    def statistics(self) -> BrokerStatistics:
        """Return the broker's counters."""
        return self._counters()

    async def _ping(self) -> None:
        return None

    async def _aclose(self) -> None:
        for topic in self._topics.values():
            self._notify(topic)


class _MemoryFetcher:
    def __init__(self, broker: MemoryBroker, topic: _Topic, subscription: Subscription) -> None:
        self._broker = broker
        self._topic = topic
        self._sub = subscription
        self._group = topic.groups[subscription.group]
        self._closed = False

    def _take(self, max_messages: int) -> list[RawDelivery]:
        broker, topic, group = self._broker, self._topic, self._group
        now = broker.clock.now()
        broker._promote(topic, now)
        for seq, lease in list(group.inflight.items()):
            if lease.deadline <= now:  # the consumer did not ack in time: deliver again
                del group.inflight[seq]
                heapq.heappush(group.ready, (lease.deadline, seq))
        chosen: list[int] = []
        while group.ready and group.ready[0][0] <= now and len(chosen) < max_messages:
            _, seq = heapq.heappop(group.ready)
            if seq in topic.log and seq not in group.inflight:
                chosen.append(seq)
        while group.cursor < topic.next_seq and len(chosen) < max_messages:
            seq = group.cursor
            group.cursor += 1
            if seq in topic.log:
                chosen.append(seq)
        deliveries = []
        for seq in chosen:
            stored = topic.log[seq]
            attempt = group.attempts.get(seq, 0) + 1
            group.attempts[seq] = attempt
            token = uuid.uuid4().hex
            group.inflight[seq] = _Lease(token, now + self._sub.ack_wait)
            deliveries.append(
                RawDelivery(
                    id=stored.id,
                    topic=self._sub.topic,
                    payload=stored.payload,
                    headers=dict(stored.headers),
                    key=stored.key,
                    attempt=attempt,
                    published_at=stored.published_at,
                    token=(seq, token),
                )
            )
        return deliveries

    def _next_due(self) -> float | None:
        topic, group = self._topic, self._group
        times = [lease.deadline for lease in group.inflight.values()]
        if group.ready:
            times.append(group.ready[0][0])
        if topic.delayed:
            times.append(topic.delayed[0][0])
        return min(times, default=None)

    async def fetch(self, max_messages: int, timeout: float) -> list[RawDelivery]:
        clock = self._broker.clock
        give_up = clock.now() + timeout
        while not self._closed:
            taken = self._take(max_messages)
            if taken:
                return taken
            now = clock.now()
            if now >= give_up:
                return []
            due = self._next_due()
            wake_at = give_up if due is None else min(give_up, due)
            changed = self._topic.changed
            timer: TimerHandle = clock.call_later(wake_at - now, changed.set)
            try:
                await changed.wait()
            finally:
                timer.cancel()
            if self._topic.changed is changed:
                # The timer set it (a change would have replaced it): the next wait needs
                # an unset event, or it would return at once and spin without yielding.
                self._topic.changed = asyncio.Event()
        return []

    def _settle(self, raw: RawDelivery) -> int | None:
        seq, token = raw.token
        lease = self._group.inflight.get(seq)
        if lease is None or lease.token != token or lease.deadline <= self._broker.clock.now():
            return None  # redelivered (or about to be): this delivery is stale
        del self._group.inflight[seq]
        return int(seq)

    async def ack(self, deliveries: Sequence[RawDelivery]) -> list[bool]:
        results = []
        topic = self._topic
        for raw in deliveries:
            seq = self._settle(raw)
            if seq is None:
                results.append(False)
                continue
            stored = topic.log.get(seq)
            if stored is not None:
                stored.acked_by.add(self._sub.group)
                if stored.acked_by >= topic.groups.keys():
                    del topic.log[seq]  # every group is done with it
                self._group.attempts.pop(seq, None)
            results.append(True)
        return results

    async def nack(self, raw: RawDelivery, delay: float) -> bool:
        seq = self._settle(raw)
        if seq is None:
            return False
        stored = self._topic.log.get(seq)
        if stored is not None:
            stored.headers.update(
                {k: v for k, v in raw.headers.items() if k.startswith("x-distsys-")}
            )
        heapq.heappush(self._group.ready, (self._broker.clock.now() + delay, seq))
        MemoryBroker._notify(self._topic)
        return True

    async def close(self) -> None:
        self._closed = True
        MemoryBroker._notify(self._topic)
