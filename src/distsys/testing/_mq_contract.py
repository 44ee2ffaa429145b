"""The contract every message broker passes, as a reusable test class."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

from distsys.context import background, with_timeout
from distsys.errors import ArgumentTypeError, BackendUnavailableError, InvalidArgumentError
from distsys.mq import (
    HEADER_ATTEMPTS,
    HEADER_DEAD_REASON,
    HEADER_ERROR,
    HEADER_GROUP,
    HEADER_REPLAY_GROUP,
    HEADER_TOPIC,
    Broker,
    Delivery,
    Outgoing,
    Subscription,
    dead_letter_topic,
)

__all__ = ["BrokerContract"]

ARRIVAL_TIMEOUT = 15.0  # a safety net for a broken backend; messages normally arrive at once


async def _raises(error: type[BaseException], operation: Awaitable[Any]) -> BaseException:
    try:
        await operation
    except error as exc:
        return exc
    raise AssertionError(f"expected {error.__name__}")


class BrokerContract:
    """The semantics of :class:`distsys.mq.Broker`, checked against one backend.

    Subclass it as ``class TestMyBroker(BrokerContract)`` and implement
    :meth:`open_broker` and :meth:`elapse`. Every test uses fresh random topic names, so
    the suite can run against a shared server.

    Attributes:
        ack_wait: the ack deadline the tests use (servers may need more than a fraction
            of a second).
        quiet: how long "nothing more arrives" is watched for; much less than ack_wait.
    """

    ack_wait: float = 2.0
    quiet: float = 0.3

    async def open_broker(self) -> Broker:
        """Return an open broker of the backend under test."""
        raise NotImplementedError

    async def elapse(self, broker: Broker, seconds: float) -> None:
        """Make ``seconds`` pass for the broker's deadlines (advance a clock, or wait)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers

    @asynccontextmanager
    async def broker(self) -> AsyncIterator[tuple[Broker, str]]:
        broker = await self.open_broker()
        try:
            yield broker, f"t{uuid.uuid4().hex[:16]}"
        finally:
            await broker.aclose()

    def sub(self, broker: Broker, topic: str, group: str, **options: Any) -> Subscription:
        options.setdefault("ack_wait", self.ack_wait)
        return broker.subscribe(topic, group, **options)

    async def arrive(self, sub: Subscription) -> Delivery:
        """The next delivery, which must come (a hang fails instead)."""
        async with asyncio.timeout(ARRIVAL_TIMEOUT):
            delivery = await sub.receive()
        assert delivery is not None
        return delivery

    async def nothing_more(self, broker: Broker, sub: Subscription) -> None:
        """Assert no delivery comes within ``quiet`` seconds."""
        waiting = asyncio.ensure_future(sub.receive(timeout=self.quiet))
        for _ in range(5):
            await asyncio.sleep(0)
        await self.elapse(broker, self.quiet)
        async with asyncio.timeout(ARRIVAL_TIMEOUT):
            got = await waiting
        assert got is None, f"unexpected delivery {got!r}"

    # ---------------------------------------------------------- publish, receive

    async def test_publish_receive_ack(self) -> None:
        async with self.broker() as (broker, topic):
            message_id = await broker.publish(
                topic, b"\x00payload\xff", headers={"trace": "abc"}, key="customer-7"
            )
            async with self.sub(broker, topic, "workers") as sub:
                got = await self.arrive(sub)
                assert (got.id, got.topic, got.payload) == (message_id, topic, b"\x00payload\xff")
                assert got.headers["trace"] == "abc"
                assert (got.key, got.attempt, got.group) == ("customer-7", 1, "workers")
                assert await got.ack() is True
                await self.nothing_more(broker, sub)
                depth = await broker.depth(topic, "workers")
                assert (depth.waiting, depth.in_flight, depth.delayed) == (0, 0, 0)

    async def test_a_batch_arrives_in_order(self) -> None:
        async with self.broker() as (broker, topic):
            ids = await broker.publish_batch(
                topic,
                [b"m0", Outgoing(b"m1", {"h": "1"}), *[f"m{i}".encode() for i in range(2, 50)]],
            )
            assert len(ids) == len(set(ids)) == 50
            async with self.sub(broker, topic, "g", prefetch=7) as sub:
                got = [await self.arrive(sub) for _ in range(50)]
                assert [d.payload for d in got] == [f"m{i}".encode() for i in range(50)]
                assert [d.id for d in got] == ids
                assert got[1].headers["h"] == "1"
                assert all(await asyncio.gather(*(d.ack() for d in got)))

    async def test_every_group_sees_every_message_and_consumers_share_a_group(self) -> None:
        async with self.broker() as (broker, topic):
            await broker.create_group(topic, "b")  # b's consumer starts after a has done all
            await broker.create_group(topic, "b")  # idempotent
            await broker.publish_batch(topic, [f"{i}".encode() for i in range(20)])
            a1, a2 = (
                self.sub(broker, topic, "a", prefetch=1),
                self.sub(broker, topic, "a", prefetch=1),
            )
            b = self.sub(broker, topic, "b")
            seen_a: list[bytes] = []
            for _ in range(10):
                for sub in (a1, a2):
                    delivery = await self.arrive(sub)
                    seen_a.append(delivery.payload)
                    await delivery.ack()
            seen_b = []
            for _ in range(20):
                delivery = await self.arrive(b)
                seen_b.append(delivery.payload)
                await delivery.ack()
            expected = sorted(f"{i}".encode() for i in range(20))
            assert sorted(seen_a) == expected  # each once, split between the two
            assert sorted(seen_b) == expected
            for sub in (a1, a2, b):
                await sub.aclose()

    async def test_a_group_that_joins_late_gets_what_was_published_before(self) -> None:
        async with self.broker() as (broker, topic):
            await broker.publish(topic, b"early")
            assert (await broker.depth(topic, "late")).waiting == 1
            async with self.sub(broker, topic, "late") as sub:
                delivery = await self.arrive(sub)
                assert delivery.payload == b"early"
                await delivery.ack()

    # ------------------------------------------------------------- redelivery

    async def test_an_unacked_message_is_redelivered_after_ack_wait(self) -> None:
        async with self.broker() as (broker, topic):
            await broker.publish(topic, b"work")
            first = self.sub(broker, topic, "g")
            stuck = await self.arrive(first)  # this consumer "hangs" on it
            depth = await broker.depth(topic, "g")
            assert (depth.waiting, depth.in_flight) == (0, 1)
            await self.elapse(broker, self.ack_wait + 0.5)
            second = self.sub(broker, topic, "g")
            again = await self.arrive(second)
            assert (again.payload, again.attempt) == (b"work", 2)
            assert await stuck.ack() is False  # too late: it was redelivered
            assert await again.ack() is True
            await self.nothing_more(broker, second)
            await first.aclose()
            await second.aclose()

    async def test_nack_redelivers_and_nack_with_delay_waits(self) -> None:
        async with self.broker() as (broker, topic):
            await broker.publish(topic, b"retry me")
            async with self.sub(broker, topic, "g") as sub:
                first = await self.arrive(sub)
                assert await first.nack() is True
                second = await self.arrive(sub)
                assert second.attempt == 2
                assert await second.nack(delay=self.ack_wait / 2) is True
                assert (await broker.depth(topic, "g")).delayed == 1
                await self.nothing_more(broker, sub)
                await self.elapse(broker, self.ack_wait / 2)
                third = await self.arrive(sub)
                assert third.attempt == 3
                await third.ack()

    async def test_a_poison_message_is_dead_lettered_and_the_rest_flow_on(self) -> None:
        async with self.broker() as (broker, topic):
            await broker.publish_batch(topic, [b"poison", b"fine"])
            async with self.sub(broker, topic, "g", max_deliveries=3, prefetch=1) as sub:
                handled = []
                for _ in range(4):
                    delivery = await self.arrive(sub)
                    if delivery.payload == b"poison":
                        await delivery.nack(
                            error=f"ValueError: bad record (try {delivery.attempt})"
                        )
                    else:
                        handled.append(delivery.payload)
                        await delivery.ack()
                assert handled == [b"fine"]
                await self.nothing_more(broker, sub)
                assert sub.statistics().dead_lettered == 1
            async with self.sub(broker, dead_letter_topic(topic), "ops") as dead:
                letter = await self.arrive(dead)
                assert letter.payload == b"poison"
                assert letter.headers[HEADER_DEAD_REASON] == "max deliveries"
                assert letter.headers[HEADER_ATTEMPTS] == "3"
                assert letter.headers[HEADER_ERROR] == "ValueError: bad record (try 3)"
                assert (letter.headers[HEADER_TOPIC], letter.headers[HEADER_GROUP]) == (topic, "g")
                await letter.ack()

    async def test_a_message_whose_consumers_keep_dying_is_dead_lettered(self) -> None:
        async with self.broker() as (broker, topic):
            await broker.publish(topic, b"crashes its handler")
            for attempt in (1, 2):
                sub = self.sub(broker, topic, "g", max_deliveries=2)
                delivery = await self.arrive(sub)
                assert delivery.attempt == attempt
                await sub.aclose()  # the consumer dies without acking
                await self.elapse(broker, self.ack_wait + 0.5)
            async with self.sub(broker, topic, "g", max_deliveries=2) as sub:
                await self.nothing_more(broker, sub)  # the third delivery went to the dead
            async with self.sub(broker, dead_letter_topic(topic), "ops") as dead:
                letter = await self.arrive(dead)
                assert letter.headers[HEADER_DEAD_REASON] == "max deliveries"
                await letter.ack()

    # --------------------------------------------------------- delays, deadlines

    async def test_a_delayed_message_waits(self) -> None:
        async with self.broker() as (broker, topic):
            await broker.publish(topic, b"later", delay=self.ack_wait / 2)
            await broker.publish(topic, b"now")
            async with self.sub(broker, topic, "g") as sub:
                now = await self.arrive(sub)
                assert now.payload == b"now"
                await now.ack()
                assert (await broker.depth(topic, "g")).delayed == 1
                await self.nothing_more(broker, sub)
                await self.elapse(broker, self.ack_wait / 2)
                later = await self.arrive(sub)
                assert later.payload == b"later"
                await later.ack()

    async def test_work_whose_deadline_passed_is_dead_lettered_not_handled(self) -> None:
        async with self.broker() as (broker, topic):
            expired, _ = with_timeout(background(), 0)
            await broker.publish(topic, b"too late", ctx=expired)
            live, cancel = with_timeout(background(), 3600)
            await broker.publish(topic, b"in time", ctx=live)
            cancel()
            async with self.sub(broker, topic, "g") as sub:
                delivery = await self.arrive(sub)
                assert delivery.payload == b"in time"
                await delivery.ack()
                assert sub.statistics().expired == 1
            async with self.sub(broker, dead_letter_topic(topic), "ops") as dead:
                letter = await self.arrive(dead)
                assert (letter.payload, letter.headers[HEADER_DEAD_REASON]) == (
                    b"too late",
                    "expired",
                )
                await letter.ack()

    async def test_a_replay_is_handled_only_by_its_group(self) -> None:
        async with self.broker() as (broker, topic):
            await broker.create_group(topic, "billing")
            await broker.publish(topic, b"again", headers={HEADER_REPLAY_GROUP: "billing"})
            await broker.publish(topic, b"normal")
            async with self.sub(broker, topic, "audit") as audit:
                delivery = await self.arrive(audit)
                assert delivery.payload == b"normal"
                await delivery.ack()
                assert audit.statistics().skipped_replays == 1
            async with self.sub(broker, topic, "billing") as billing:
                got = [await self.arrive(billing) for _ in range(2)]
                assert [d.payload for d in got] == [b"again", b"normal"]
                for d in got:
                    await d.ack()

    # ---------------------------------------------------------------- bad input

    async def test_bad_input_is_refused_naming_the_argument(self) -> None:
        async with self.broker() as (broker, topic):
            for operation, error, field in [
                (broker.publish("", b"x"), InvalidArgumentError, "topic"),
                (broker.publish("has space", b"x"), InvalidArgumentError, "topic"),
                (broker.publish(topic, "text"), ArgumentTypeError, "payload"),  # type: ignore[arg-type]
                (broker.publish(topic, b"x", delay=-1), InvalidArgumentError, "delay"),
                (broker.publish(topic, b"x", headers={"a": 1}), ArgumentTypeError, "headers"),  # type: ignore[dict-item]
                (broker.publish(topic, b"x", key=""), ArgumentTypeError, "key"),
                (broker.depth(topic, ""), InvalidArgumentError, "group"),
            ]:
                exc = await _raises(error, operation)
                assert getattr(exc, "field", None) == field, exc
            for options, field in [
                ({"max_deliveries": 0}, "max_deliveries"),
                ({"ack_wait": 0}, "ack_wait"),
                ({"prefetch": 0}, "prefetch"),
            ]:
                refused = None
                try:
                    broker.subscribe(topic, "g", **options)
                except InvalidArgumentError as exc:
                    refused = exc.field
                assert refused == field, f"{options} gave {refused!r}"
            assert (await broker.depth(topic, "g")).waiting == 0  # nothing was stored

    async def test_a_delivery_is_settled_once(self) -> None:
        async with self.broker() as (broker, topic):
            await broker.publish(topic, b"x")
            async with self.sub(broker, topic, "g") as sub:
                delivery = await self.arrive(sub)
                assert await delivery.ack()
                await _raises(InvalidArgumentError, delivery.ack())
                await _raises(InvalidArgumentError, delivery.nack())

    async def test_a_closed_broker_refuses_work(self) -> None:
        broker = await self.open_broker()
        await broker.aclose()
        await broker.aclose()  # idempotent
        await _raises(BackendUnavailableError, broker.publish("t", b"x"))
