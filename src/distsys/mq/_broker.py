"""The broker interface and what every backend shares: validation, dead letters, deliveries.

A backend implements a small set of hooks (:class:`BrokerBase`'s ``_`` methods and a
:class:`Fetcher` per subscription). Everything with one right answer for all backends —
argument checks, the deadline header, giving up on a message after ``max_deliveries``,
dead-lettering, skipping expired work, replays meant for another group — lives here, so
all backends behave alike.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Protocol, Self, cast

from distsys.backends import BackendURL
from distsys.clock import Clock, MonotonicClock, TimerHandle
from distsys.context import Context
from distsys.errors import ArgumentTypeError, BackendUnavailableError, InvalidArgumentError
from distsys.mq._message import (
    HEADER_ATTEMPTS,
    HEADER_DEAD_REASON,
    HEADER_DEADLINE,
    HEADER_ERROR,
    HEADER_GROUP,
    HEADER_REPLAY_GROUP,
    HEADER_TOPIC,
    Depth,
    Outgoing,
    RawDelivery,
    check_delay,
    check_headers,
    check_name,
    check_payload,
    dead_letter_topic,
)

__all__ = [
    "Broker",
    "BrokerBase",
    "BrokerStatistics",
    "BrokerCounters",
    "Delivery",
    "Fetcher",
    "Subscription",
    "SubscriptionStatistics",
]

log = logging.getLogger("distsys.mq")

DEFAULT_ACK_WAIT = 30.0
DEFAULT_MAX_DELIVERIES = 5
DEFAULT_PREFETCH = 16
ERROR_HEADER_LIMIT = 2000  # characters of a handler's error kept on a dead letter
TOPICS_REMEMBERED = 1024  # valid topic names a broker remembers, so as not to check them again
_INF = math.inf


class Fetcher(Protocol):
    """A backend's side of one subscription (one consumer in a group).

    Used from the subscription's event loop only, one fetch at a time.
    """

    async def fetch(self, max_messages: int, timeout: float, /) -> builtins.list[RawDelivery]:
        """Return 1..max_messages deliveries, waiting up to ``timeout`` seconds for one;
        an empty list when none came. Expired in-flight messages are redelivered here."""
        ...

    async def ack(self, deliveries: Sequence[RawDelivery], /) -> builtins.list[bool]:
        """Acknowledge; for each, False if its ack deadline had passed (redelivered)."""
        ...

    async def nack(self, delivery: RawDelivery, delay: float, /) -> bool:
        """Make the message deliverable again after ``delay`` seconds; False if stale."""
        ...

    async def close(self) -> None:
        """Stop fetching; unacked deliveries are redelivered after their ack deadline."""
        ...


class Broker(Protocol):
    """A durable, at-least-once message queue with consumer groups (async).

    A broker client and its subscriptions belong to the event loop that first uses them;
    from threads, use :class:`Producer`.

    - ``publish`` returns once the message is stored (or raises); it is never silently
      dropped.
    - Every consumer group sees every message; within a group each message goes to one
      consumer at a time. A group starts from the oldest message the topic retains when
      it is created (by :meth:`create_group` or its first consumer).
    - A delivery not acked within ``ack_wait`` seconds is delivered again; after
      ``max_deliveries`` deliveries it moves to the dead-letter topic
      (``<topic>-dead``) with the reason, the attempt count and the last error.
    """

    url: BackendURL

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        delay: float | None = None,
        ctx: Context | None = None,
    ) -> str:
        """Store one message; return its id."""
        ...

    async def publish_batch(
        self,
        topic: str,
        messages: Sequence[bytes | Outgoing],
        *,
        ctx: Context | None = None,
    ) -> builtins.list[str]:
        """Store several messages in one round trip; return their ids in order."""
        ...

    def subscribe(
        self,
        topic: str,
        group: str,
        *,
        ack_wait: float = DEFAULT_ACK_WAIT,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        prefetch: int = DEFAULT_PREFETCH,
    ) -> Subscription:
        """Join ``group`` on ``topic`` as one consumer; iterate it for deliveries."""
        ...

    async def depth(self, topic: str, group: str) -> Depth:
        """Return how many messages wait, are in flight, and are delayed for ``group``."""
        ...

    async def create_group(self, topic: str, group: str) -> None:
        """Declare ``group`` on ``topic`` now (idempotent); see :meth:`BrokerBase.create_group`."""
        ...

    async def ping(self) -> None:
        """Check that the backend answers."""
        ...

    def statistics(self) -> BrokerCounters:
        """Return the client's counters (a :class:`BrokerStatistics`, or a richer record)."""
        ...

    async def aclose(self) -> None:
        """Close connections and subscriptions; idempotent."""
        ...


class Delivery:
    """One delivered message: read it, then ``ack()`` it (or ``nack()`` it).

    Settled from the subscription's event loop, by any of its tasks, once.

    Attributes:
        id, topic, payload, headers, key: the message.
        attempt: 1 on the first delivery to this group, 2 on the first redelivery...
        published_at: Unix time it was published.
        group: the consumer group it was delivered to.
    """

    __slots__ = ("_raw", "_settled", "_subscription", "group")

    def __init__(self, subscription: Subscription, raw: RawDelivery) -> None:
        self._subscription = subscription
        self._raw = raw
        self._settled = False
        self.group = subscription.group

    id = property(lambda self: self._raw.id, doc="The broker's id for the message.")
    topic = property(lambda self: self._raw.topic, doc="The topic.")
    payload = property(lambda self: self._raw.payload, doc="The body.")
    headers = property(lambda self: self._raw.headers, doc="The string headers.")
    key = property(lambda self: self._raw.key, doc="The partition key, or None.")
    attempt = property(lambda self: self._raw.attempt, doc="1 on first delivery.")
    published_at = property(lambda self: self._raw.published_at, doc="Unix time published.")

    @property
    def settled(self) -> bool:
        """Whether ack or nack was called."""
        return self._settled

    async def ack(self) -> bool:
        """Acknowledge the message: it will not be delivered to this group again.

        Returns:
            True if acknowledged; False if its ack deadline had already passed, so the
            broker has delivered it again (another handling of it is under way). Nothing
            is corrupted either way; a False ack is counted in the statistics.
        """
        self._settle()
        subscription = self._subscription
        ok = await subscription._queue_ack(self._raw)
        subscription._counts["acked" if ok else "stale_acks"] += 1
        return ok

    async def nack(self, delay: float | None = None, *, error: str | None = None) -> bool:
        """Hand the message back for redelivery after ``delay`` seconds.

        On its last allowed delivery it goes to the dead-letter topic instead, with
        ``error`` recorded.

        Returns:
            False if the ack deadline had already passed (it was redelivered anyway).
        """
        wait = check_delay("delay", delay)
        self._settle()
        return await self._subscription._nack(self._raw, wait, error)

    def _settle(self) -> None:
        if self._settled:
            raise InvalidArgumentError(
                "delivery", self._raw.id, "a delivery not yet acked or nacked (settle it once)"
            )
        self._settled = True

    def __repr__(self) -> str:
        return f"<Delivery {self.topic}/{self.id} attempt={self.attempt} group={self.group}>"


@dataclass(frozen=True, slots=True)
class SubscriptionStatistics:
    """Counters of one subscription.

    Attributes:
        delivered: deliveries handed to the application.
        acked: acks confirmed.
        stale_acks: acks refused because the ack deadline had passed.
        nacked: messages handed back.
        dead_lettered: messages moved to the dead-letter topic.
        expired: messages dead-lettered because their deadline had passed.
        skipped_replays: replays meant for another group, acked without handling.
    """

    delivered: int
    acked: int
    stale_acks: int
    nacked: int
    dead_lettered: int
    expired: int
    skipped_replays: int


class Subscription:
    """One consumer in a group: an async iterator of :class:`Delivery`.

    Fetches up to ``prefetch`` messages at a time, one fetch at a time: concurrent
    ``receive()`` calls (a consumer's handler tasks) share the fetch in flight and the
    buffer it fills, instead of each leasing a batch of its own. Before a message reaches
    the application it is checked: one delivered more than ``max_deliveries`` times (its
    handlers kept crashing or timing out) or whose deadline header has passed goes to
    the dead-letter topic instead. Concurrent acks are written together (group commit).

    Safe within one event loop. Close it (``async with``) to stop; its unacked messages
    are redelivered to the group after their ack deadline.
    """

    def __init__(
        self,
        broker: BrokerBase,
        topic: str,
        group: str,
        *,
        ack_wait: float,
        max_deliveries: int,
        prefetch: int,
    ) -> None:
        self.broker = broker
        self.topic = topic
        self.group = group
        self.ack_wait = ack_wait
        self.max_deliveries = max_deliveries
        self.prefetch = prefetch
        self.consumer = f"{group}-{uuid.uuid4().hex[:12]}"
        self._fetcher: Fetcher | None = None
        self._buffer: deque[RawDelivery] = deque()
        self._fetching = False  # a receive() is fetching; the others join it
        # The receives waiting for the fetch in flight, each with when it gives up (on
        # the clock); one timer, due at the earliest, wakes those whose time has come.
        self._joiners: builtins.list[tuple[float | None, asyncio.Future[None]]] = []
        self._join_timer: TimerHandle | None = None
        self._join_timer_due = math.inf
        self._pending_acks: builtins.list[tuple[RawDelivery, asyncio.Future[bool]]] = []
        # The loop of the last fetch: its deliveries are settled there (asking asyncio
        # for the running loop costs a system call, getpid, per ack).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ack_writers: set[asyncio.Task[None]] = set()
        self._closed = False
        self._counts = dict.fromkeys(SubscriptionStatistics.__slots__, 0)

    async def _ensure_fetcher(self) -> Fetcher:
        if self._fetcher is None:
            self._fetcher = await self.broker._open_fetcher(self)
        return self._fetcher

    async def receive(self, timeout: float | None = None) -> Delivery | None:
        """Return the next delivery, or None if none came within ``timeout`` seconds."""
        buffer = self._buffer
        if buffer and (timeout is None or (type(timeout) is float and 0.0 <= timeout < _INF)):
            # The common case, made cheap: a valid timeout and a delivery waiting.
            raw = buffer.popleft()
            if self._admissible(raw):
                self._counts["delivered"] += 1
                return Delivery(self, raw)
            buffer.appendleft(raw)
        wait = None if timeout is None else check_delay("timeout", timeout)
        give_up: float | None = None  # set when the buffer is first found empty
        clock = self.broker.clock
        while True:
            while buffer:
                raw = buffer.popleft()
                if self._admissible(raw) or await self._admit(raw):
                    self._counts["delivered"] += 1
                    return Delivery(self, raw)
            if self._closed:
                raise BackendUnavailableError(str(self.broker.url), "subscription closed")
            if wait is not None and give_up is None:
                give_up = clock.now() + wait
            if self._fetching:
                await self._join(give_up)
            else:
                await self._fetch(give_up)
            if not self._buffer and give_up is not None and clock.now() >= give_up:
                return None

    async def _fetch(self, give_up: float | None) -> None:
        """Fetch into the buffer, waiting until ``give_up`` (at most a second) for messages."""
        self._fetching = True
        self._loop = asyncio.get_running_loop()
        try:
            await self._acks_written()
            fetcher = await self._ensure_fetcher()
            clock = self.broker.clock
            wait = 1.0 if give_up is None else max(give_up - clock.now(), 0.0)
            self._buffer.extend(await fetcher.fetch(self.prefetch, min(wait, 1.0)))
        finally:
            self._fetching = False
            # Woken now, the joiners take from the buffer on the loop's next turn, in the
            # same turn as this task's caller: their acks then go in one batch with its.
            joiners, self._joiners = self._joiners, []
            self._disarm_join_timer()
            for _, joiner in joiners:
                if not joiner.done():
                    joiner.set_result(None)

    async def _acks_written(self) -> None:
        """Wait for the acks in flight, so that the receives they free join the next fetch.

        Handlers tend to ack and receive again at about the same time; a fetch made before
        their acks are written would leave the messages it got for them in the buffer
        meanwhile (redelivered, should this process die before handing them out). With no
        ack queued or in flight there is nothing to wait for: the fetch goes at once.
        """
        if not (self._pending_acks or self._ack_writers):
            return
        await asyncio.sleep(0)  # acks made on this turn of the loop: their writer starts next
        if not self.broker.fetch_after_acks:
            return
        while self._ack_writers:
            await asyncio.wait(set(self._ack_writers))

    async def _join(self, give_up: float | None) -> None:
        """Wait until the fetch in flight ends, or until ``give_up`` on the broker's clock."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._joiners.append((give_up, waiter))
        if give_up is not None and give_up < self._join_timer_due:
            self._arm_join_timer(give_up)
        await waiter  # a waiter of its own: cancelling it leaves the fetch alone

    def _arm_join_timer(self, due: float) -> None:
        """Wake the joiners whose time has come at ``due`` (one timer for all of them)."""
        self._disarm_join_timer()
        loop = asyncio.get_running_loop()
        thread = threading.get_ident()

        def wake() -> None:  # may run on any thread (a ManualClock's)
            if threading.get_ident() == thread:
                if self._join_timer is timer:
                    self._expire_joiners()
            else:
                with suppress(RuntimeError):  # the loop is closed: nobody waits any more
                    loop.call_soon_threadsafe(wake)

        clock = self.broker.clock
        self._join_timer_due = due
        self._join_timer = timer = clock.call_later(due - clock.now(), wake)

    def _disarm_join_timer(self) -> None:
        if self._join_timer is not None:
            self._join_timer.cancel()
            self._join_timer = None
        self._join_timer_due = math.inf

    def _expire_joiners(self) -> None:
        """Wake the joiners that give up by now; arm the timer for the next one."""
        self._join_timer = None
        self._join_timer_due = math.inf
        now = self.broker.clock.now()
        waiting: builtins.list[tuple[float | None, asyncio.Future[None]]] = []
        due = math.inf
        for give_up, joiner in self._joiners:
            if joiner.done():
                continue  # cancelled
            if give_up is not None and give_up <= now:
                joiner.set_result(None)
                continue
            waiting.append((give_up, joiner))
            if give_up is not None:
                due = min(due, give_up)
        self._joiners = waiting
        if due < math.inf:
            self._arm_join_timer(due)

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self

    async def __anext__(self) -> Delivery:
        if self._closed:
            raise StopAsyncIteration
        delivery = await self.receive()
        assert delivery is not None
        return delivery

    def _admissible(self, raw: RawDelivery) -> bool:
        """Tell at once that the application sees ``raw`` (the common case), or False: ask
        :meth:`_admit`."""
        headers = raw.headers
        return raw.attempt <= self.max_deliveries and (
            not headers or (HEADER_REPLAY_GROUP not in headers and HEADER_DEADLINE not in headers)
        )

    async def _admit(self, raw: RawDelivery) -> bool:
        """Decide whether the application sees ``raw``; dead-letter or skip it if not."""
        headers = raw.headers
        replay_for = headers.get(HEADER_REPLAY_GROUP)
        if replay_for is not None and replay_for != self.group:
            self._counts["skipped_replays"] += 1
            await self._ack(raw, count=False)
            return False
        if raw.attempt > self.max_deliveries:
            await self._dead_letter(raw, "max deliveries", headers.get(HEADER_ERROR))
            return False
        deadline = headers.get(HEADER_DEADLINE)
        if deadline is not None:
            try:
                expired = float(deadline) <= self.broker.wall()
            except ValueError:
                expired = False  # a foreign header: not ours to judge
            if expired:
                self._counts["expired"] += 1
                await self._dead_letter(raw, "expired", None)
                return False
        return True

    async def _dead_letter(self, raw: RawDelivery, reason: str, error: str | None) -> None:
        headers = dict(raw.headers)
        headers.pop(HEADER_REPLAY_GROUP, None)
        headers.pop(HEADER_DEADLINE, None)  # a dead letter is kept for people, whatever its age
        headers.update(
            {
                HEADER_DEAD_REASON: reason,
                HEADER_ATTEMPTS: str(raw.attempt),
                HEADER_TOPIC: raw.topic,
                HEADER_GROUP: self.group,
            }
        )
        if error:
            headers[HEADER_ERROR] = error[:ERROR_HEADER_LIMIT]
        await self.broker._publish(
            dead_letter_topic(raw.topic), [Outgoing(raw.payload, headers, raw.key)]
        )
        self._counts["dead_lettered"] += 1
        self.broker._dead_lettered += 1
        log.warning("dead-lettered %s/%s for %s: %s", raw.topic, raw.id, self.group, reason)
        await self._ack(raw, count=False)

    async def _ack(self, raw: RawDelivery, *, count: bool = True) -> bool:
        ok = await self._queue_ack(raw)
        if count:
            self._counts["acked" if ok else "stale_acks"] += 1
        return ok

    def _queue_ack(self, raw: RawDelivery) -> asyncio.Future[bool]:
        """Queue an ack for the writer; the future tells whether it held (False: stale)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        pending = self._pending_acks
        pending.append((raw, future))
        if len(pending) == 1:
            # The writer's first step runs on the loop's next turn and takes every ack
            # made until then: the acks of this turn's handlers go in one batch.
            writer = loop.create_task(self._write_acks())
            self._ack_writers.add(writer)
            writer.add_done_callback(self._ack_writers.discard)
        return future

    async def _write_acks(self) -> None:
        batch, self._pending_acks = self._pending_acks, []
        try:
            fetcher = await self._ensure_fetcher()
            results = await fetcher.ack([raw for raw, _ in batch])
        except BaseException as exc:
            self._ack_written()
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self._ack_written()
        for (_, future), ok in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(ok)

    def _ack_written(self) -> None:
        """Take the current writer out of those in flight, before it wakes its handlers.

        (Its done callback would do it a turn later: the handlers, woken first, would find
        it still in flight and wait for it before they fetch.)
        """
        writer = asyncio.current_task()
        if writer is not None:
            self._ack_writers.discard(writer)

    async def _nack(self, raw: RawDelivery, delay: float, error: str | None) -> bool:
        if raw.attempt >= self.max_deliveries:
            await self._dead_letter(raw, "max deliveries", error)
            return True
        if error:
            raw.headers[HEADER_ERROR] = error[:ERROR_HEADER_LIMIT]
        fetcher = await self._ensure_fetcher()
        ok = await fetcher.nack(raw, delay)
        self._counts["nacked" if ok else "stale_acks"] += 1
        return ok

    def statistics(self) -> SubscriptionStatistics:
        """Return the subscription's counters."""
        return SubscriptionStatistics(**self._counts)

    async def aclose(self) -> None:
        """Stop consuming; unacked deliveries go back to the group after their deadline."""
        if self._closed:
            return
        self._closed = True
        self._buffer.clear()
        if self._fetcher is not None:
            await self._fetcher.close()
        self.broker._forget(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Subscription {self.topic} group={self.group} consumer={self.consumer}>"


class BrokerCounters(Protocol):
    """What every broker's ``statistics()`` record tells, whatever else it tells.

    memory:// and sqlite:// return a :class:`BrokerStatistics`; a backend may return a
    record of its own instead (redis:// and nats:// do), with at least this field.
    """

    @property
    def subscriptions(self) -> int:
        """Subscriptions open now."""
        ...


@dataclass(frozen=True, slots=True)
class BrokerStatistics:
    """Counters of one broker client.

    Attributes:
        published: messages stored by ``publish`` and ``publish_batch``.
        dead_lettered: messages its subscriptions moved to a dead-letter topic.
        subscriptions: subscriptions open now.
        backend: the backend's own counters (``sqlite://``: ``transactions`` and
            ``writes`` of its group commit; ``inline``, ``worker`` and ``busy``: where
            its SQLite work ran, and how often the event loop found the file locked and
            handed work to the worker; ``checkpoints``).
    """

    published: int
    dead_lettered: int
    subscriptions: int
    backend: Mapping[str, int]


def _check_positive_int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(field, value, "an int >= 1")
    if value < 1:
        raise InvalidArgumentError(field, value, "an int >= 1")
    return value


def _check_ack_wait(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentTypeError("ack_wait", value, "a number of seconds > 0")
    if not (value > 0 and math.isfinite(value)):
        raise InvalidArgumentError("ack_wait", value, "a finite number of seconds > 0")
    return float(value)


class BrokerBase:
    """Shared plumbing for brokers; backends implement the ``_`` hooks.

    Safe within one event loop, as the brokers built on it are.

    Args:
        url: the broker's URL.
        clock: time source for waits (ack deadlines and delays of in-process backends).
        wall: Unix time source for publication times and deadline headers.
    """

    fetch_after_acks: bool = False
    """Whether a subscription's fetch waits for its acks in flight to be written first.

    True where a write and a fetch take about the same short time and a fetch made first
    would lease messages that the acking handlers then wait in the buffer for (SQLite);
    False where both are round trips to a server and are better overlapped.
    """

    def __init__(
        self,
        url: BackendURL,
        *,
        clock: Clock | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.wall = wall
        self._closed = False
        self._subscriptions: set[Subscription] = set()
        self._valid_topics: set[str] = set()  # topic names published to (at most 1024)
        self._published = 0
        self._dead_lettered = 0

    def _check_open(self) -> None:
        if self._closed:
            raise BackendUnavailableError(str(self.url), "this broker client has been closed")

    def _check_topic(self, topic: str) -> None:
        """Check a topic name to publish to (remembering a few valid ones: no regex twice)."""
        if type(topic) is not str or topic not in self._valid_topics:
            check_name("topic", topic)
            if len(self._valid_topics) < TOPICS_REMEMBERED:
                self._valid_topics.add(topic)

    def _outgoing(self, message: bytes | Outgoing, deadline: float | None) -> Outgoing:
        if isinstance(message, Outgoing):
            if deadline is None and _checked(message):
                return message  # valid as it is: no copy (backends do not keep its headers)
            out = Outgoing(
                check_payload(message.payload),
                check_headers(message.headers),
                _check_key(message.key),
                check_delay("delay", message.delay),
            )
        else:
            out = Outgoing(check_payload(message))
        if deadline is not None:
            out.headers.setdefault(HEADER_DEADLINE, f"{deadline:.6f}")
        return out

    def _deadline(self, ctx: Context | None) -> float | None:
        if ctx is None:
            return None
        if not isinstance(ctx, Context):
            raise ArgumentTypeError("ctx", ctx, "None or a distsys Context")
        remaining = ctx.remaining()
        return None if remaining is None else self.wall() + remaining

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        delay: float | None = None,
        ctx: Context | None = None,
    ) -> str:
        """Store one message and return its id.

        Args:
            topic: where to publish.
            payload: the body, bytes.
            headers: string headers (``x-distsys-*`` are reserved).
            key: an optional partition/ordering key carried with the message.
            delay: seconds before it may be delivered.
            ctx: publish under a Context: its deadline travels in the
                ``x-distsys-deadline`` header, and consumers dead-letter the message
                (reason "expired") instead of handling it after the deadline.

        Raises:
            BackendUnavailableError: the broker cannot be reached (nothing was stored).
            InvalidArgumentError / ArgumentTypeError: a bad topic, payload or option.
        """
        self._check_open()
        self._check_topic(topic)
        body = check_payload(payload)
        fields = check_headers(headers)
        name = _check_key(key)
        wait = check_delay("delay", delay)
        if ctx is not None:
            deadline = self._deadline(ctx)
            if deadline is not None:
                fields.setdefault(HEADER_DEADLINE, f"{deadline:.6f}")
        message_id = await self._publish_one(topic, body, fields, name, wait)
        self._published += 1
        return message_id

    async def publish_batch(
        self,
        topic: str,
        messages: Sequence[bytes | Outgoing],
        *,
        ctx: Context | None = None,
    ) -> builtins.list[str]:
        """Store several messages in one round trip (one transaction where the backend
        has them); return their ids in order."""
        self._check_open()
        self._check_topic(topic)
        if isinstance(messages, bytes | str) or not isinstance(messages, Sequence):
            raise ArgumentTypeError("messages", messages, "a sequence of bytes or Outgoing")
        deadline = self._deadline(ctx)
        if not messages:
            return []
        if deadline is None and all(type(m) is bytes for m in messages):
            payloads = cast(builtins.list[bytes], builtins.list(messages))
            ids = await self._publish_payloads(topic, payloads)
        else:
            ids = await self._publish(topic, [self._outgoing(m, deadline) for m in messages])
        self._published += len(ids)
        return ids

    def subscribe(
        self,
        topic: str,
        group: str,
        *,
        ack_wait: float = DEFAULT_ACK_WAIT,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        prefetch: int = DEFAULT_PREFETCH,
    ) -> Subscription:
        """Join ``group`` on ``topic`` as one consumer.

        Args:
            topic: the topic.
            group: the consumer group (created on first use; it starts from the oldest
                message the topic retains).
            ack_wait: seconds a delivery may stay unacked before it is redelivered. It is
                the group's setting: give every consumer of a group the same value.
            max_deliveries: deliveries after which a message goes to the dead-letter topic.
            prefetch: messages fetched at a time.
        """
        self._check_open()
        subscription = Subscription(
            self,
            check_name("topic", topic),
            check_name("group", group),
            ack_wait=_check_ack_wait(ack_wait),
            max_deliveries=_check_positive_int("max_deliveries", max_deliveries),
            prefetch=_check_positive_int("prefetch", prefetch),
        )
        self._subscriptions.add(subscription)
        return subscription

    def _forget(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    async def depth(self, topic: str, group: str) -> Depth:
        """Return how many messages wait, are in flight, and are delayed for ``group``."""
        self._check_open()
        return await self._depth(check_name("topic", topic), check_name("group", group))

    async def create_group(self, topic: str, group: str) -> None:
        """Declare ``group`` on ``topic`` now, starting from the oldest retained message.

        A group otherwise comes into being with its first consumer. Once every existing
        group has acked a message, a backend may delete it (SQLite and memory do), so a
        group whose consumers may start after others have done their work should be
        declared up front — as a deployment declares a queue. Idempotent.
        """
        self._check_open()
        await self._create_group(check_name("topic", topic), check_name("group", group))

    async def ping(self) -> None:
        """Check that the backend answers (raises BackendUnavailableError if not)."""
        self._check_open()
        await self._ping()

    def statistics(self) -> BrokerCounters:
        """Return this client's counters (a :class:`BrokerStatistics` unless overridden)."""
        return self._counters()

    def _counters(self) -> BrokerStatistics:
        """Return the counters every broker keeps, and the backend's own under ``backend``."""
        return BrokerStatistics(
            published=self._published,
            dead_lettered=self._dead_lettered,
            subscriptions=len(self._subscriptions),
            backend=MappingProxyType(self._statistics()),
        )

    async def aclose(self) -> None:
        """Close every subscription and the connections; idempotent."""
        if self._closed:
            return
        for subscription in builtins.list(self._subscriptions):
            await subscription.aclose()
        self._closed = True
        await self._aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    # ------------------------------------------------------------ backend hooks

    async def _publish(self, topic: str, messages: builtins.list[Outgoing]) -> builtins.list[str]:
        raise NotImplementedError

    async def _publish_one(
        self, topic: str, payload: bytes, headers: dict[str, str], key: str | None, delay: float
    ) -> str:
        """Store one checked message; return its id (a backend may take a leaner path)."""
        (message_id,) = await self._publish(topic, [Outgoing(payload, headers, key, delay)])
        return message_id

    async def _publish_payloads(
        self, topic: str, payloads: builtins.list[bytes]
    ) -> builtins.list[str]:
        """Store bare payloads (no headers, key or delay) in one batch; a backend may take
        a leaner path than :meth:`_publish`."""
        return await self._publish(topic, [Outgoing(payload, {}) for payload in payloads])

    async def _open_fetcher(self, subscription: Subscription) -> Fetcher:
        """Return the backend's fetcher for ``subscription`` (its topic, group, consumer,
        ack_wait and max_deliveries are attributes of it)."""
        raise NotImplementedError

    async def _depth(self, topic: str, group: str) -> Depth:
        raise NotImplementedError

    async def _create_group(self, topic: str, group: str) -> None:
        raise NotImplementedError

    async def _ping(self) -> None:
        raise NotImplementedError

    async def _aclose(self) -> None:
        raise NotImplementedError

    def _statistics(self) -> dict[str, int]:
        """Return the backend's own counters (none by default)."""
        return {}


def _check_key(key: object) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key:
        raise ArgumentTypeError("key", key, "None or a non-empty str")
    return key


def _checked(out: Outgoing) -> bool:
    """Tell whether the checks would pass ``out`` unchanged (so it needs no copy)."""
    headers, key, delay = out.headers, out.key, out.delay
    return (
        type(out.payload) is bytes
        and type(headers) is dict
        and (
            not headers or all(type(k) is str and k and type(v) is str for k, v in headers.items())
        )
        and (key is None or (type(key) is str and key != ""))
        and type(delay) is float
        and 0.0 <= delay < math.inf
    )
