"""Delayed messages on NATS: a mover that publishes them into their topic when due.

JetStream before 2.12 cannot hold a message back until a given time, and a nak with a
delay in the topic's own consumer would count as a delivery (the attempt number would
grow while the message waits). So a delayed message is published to the topic's
work-queue *delay stream* with an ``x-distsys-not-before`` header, and a mover — one task
per topic in each process that subscribes to it, all sharing the durable consumer
``mover`` — pulls from there. A message not yet due is nakked with the time it has left,
so the server holds it and hands it back when due (no polling); a due one is published to
the topic's stream with ``Nats-Msg-Id`` set, so that a second copy (a mover that died
between publishing and acking) is dropped by JetStream's de-duplication, then acked, which
deletes it from the work queue.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from nats.aio.msg import Msg
from nats.js.errors import NoStreamResponseError

from distsys.errors import BackendUnavailableError
from distsys.mq._nats_consume import ACK, nak_payload
from distsys.mq._nats_layout import MOVER
from distsys.mq._nats_pull import Puller, PullTrouble
from distsys.mq._nats_wire import (
    HEADER_ID,
    HEADER_NOT_BEFORE,
    HEADER_PUBLISHED,
    MSG_ID,
    UNAVAILABLE,
    parse_ack_reply,
)

if TYPE_CHECKING:
    from distsys.mq._nats import NATSBroker
    from distsys.mq._nats_conn import Connection

__all__ = ["Mover"]

log = logging.getLogger("distsys.mq")

BATCH: Final = 256
WAIT: Final = 5.0  # seconds a pull request lingers on the server
PAUSE: Final = 1.0  # seconds between attempts while the server cannot be reached
EARLY: Final = 0.001  # a message due within this is moved now


class Mover:
    """Moves one topic's delayed messages into its stream as they fall due.

    Safe within one event loop. ``users`` counts the subscriptions that keep it running.
    """

    def __init__(self, broker: NATSBroker, topic: str) -> None:
        self._broker = broker
        self._topic = topic
        self.users = 0
        self._task: asyncio.Task[None] | None = None
        self._puller: Puller | None = None
        self._stopping = False

    def start(self) -> None:
        """Start moving (in a task of the running loop)."""
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop moving; a message being moved is moved again by another mover later."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            # Python 3.11's wait_for (inside nats-py requests) can swallow a cancellation
            # that lands as its reply arrives: cancel until the task is really done.
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.5)
            if not task.cancelled() and task.exception() is not None:
                log.debug("mover of %s ended with %r", self._topic, task.exception())
        await self._drop_puller()

    async def _drop_puller(self) -> None:
        puller, self._puller = self._puller, None
        if puller is not None:
            await puller.close()

    async def _run(self) -> None:
        broker = self._broker
        conn: Connection | None = None
        outage = False
        while not self._stopping:
            try:
                current = await broker.connection()
                if self._puller is None or current is not conn:
                    await self._drop_puller()
                    await self._setup(current)
                    conn = current
                assert self._puller is not None
                pulled = await self._puller.fetch(BATCH, WAIT)
                if pulled:
                    await self._move(current, [msg for msg, _ in pulled])
                outage = False
            except NoStreamResponseError:
                log.info("the stream of %s went missing; creating it again", self._topic)
                broker.layout.forget(self._topic)
                await self._drop_puller()
                await asyncio.sleep(PAUSE)
            except PullTrouble as trouble:
                log.info("delayed messages of %s: %s; checking", self._topic, trouble)
                await self._drop_puller()
                await asyncio.sleep(PAUSE)
            except (BackendUnavailableError, *UNAVAILABLE) as exc:
                if not outage:
                    outage = True
                    log.warning("delayed messages of %s: %s; retrying", self._topic, exc)
                await self._drop_puller()
                await asyncio.sleep(PAUSE)
            except Exception:
                log.exception("moving the delayed messages of %s failed", self._topic)
                await self._drop_puller()
                await asyncio.sleep(PAUSE)

    async def _setup(self, conn: Connection) -> None:
        layout, topic = self._broker.layout, self._topic
        await layout.stream(conn, topic)
        await layout.delay_stream(conn, topic)
        stream = await layout.mover(conn, topic)
        puller = Puller(conn.nc, stream, MOVER, self._broker.clock)
        await puller.start()
        self._puller = puller

    async def _move(self, conn: Connection, messages: list[Msg]) -> None:
        broker = self._broker
        now = broker.wall()
        due = []
        for msg in messages:
            headers = msg.headers or {}
            try:
                not_before = float(headers.get(HEADER_NOT_BEFORE, "0"))
            except ValueError:
                not_before = 0.0  # not ours to judge: move it
            if not_before - now > EARLY:
                await conn.nc.publish(msg.reply, nak_payload(not_before - now))
            else:
                due.append(msg)
        if not due:
            return
        subject = broker.names.subject(self._topic)
        futures = []
        try:
            for msg in due:
                _, seq, stored_ns = parse_ack_reply(msg.reply)
                headers = dict(msg.headers or {})
                headers.pop(HEADER_NOT_BEFORE, None)
                headers[HEADER_ID] = headers[MSG_ID] = f"d{seq}"
                headers.setdefault(HEADER_PUBLISHED, f"{stored_ns / 1e9:.6f}")
                futures.append(await conn.js.publish_async(subject, msg.data, headers=headers))
            async with asyncio.timeout(broker.settings.timeout):
                await asyncio.gather(*futures)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        for msg in due:
            await conn.nc.publish(msg.reply, ACK)
        broker.count_moved(len(due))
