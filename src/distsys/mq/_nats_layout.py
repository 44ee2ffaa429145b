"""The streams and consumers a ``nats://`` broker keeps on the server, created on demand.

A topic's stream has limits retention (messages stay until ``max_age``/``max_bytes``,
acked or not, so a group created late starts from everything retained); its delay stream
is a work queue (a message is deleted once moved). A group is a durable pull consumer of
the topic's stream: explicit acks, the group's ack wait, deliver-all, no server-side
delivery limit (``max_deliveries`` is applied by the client) and no cap on unacked
messages (each consumer's prefetch bounds its share).
"""

from __future__ import annotations

import logging
from typing import Final

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from distsys.mq._broker import DEFAULT_ACK_WAIT
from distsys.mq._nats_conn import Connection
from distsys.mq._nats_settings import NATSSettings
from distsys.mq._nats_wire import Names

__all__ = ["MOVER", "MOVER_ACK_WAIT", "Layout"]

log = logging.getLogger("distsys.mq")

STREAM_EXISTS: Final = 10058  # "stream name already in use with a different configuration"
MOVER: Final = "mover"
"""The durable consumer of a delay stream that every process's mover shares."""
MOVER_ACK_WAIT: Final = 10.0  # a mover that dies mid-move: its messages move again after this


class Layout:
    """Creates streams and consumers when first needed; remembers the streams it checked.

    Safe within one event loop.
    """

    def __init__(self, names: Names, settings: NATSSettings) -> None:
        self.names = names
        self._settings = settings
        self._known: set[str] = set()

    def forget(self, topic: str | None = None) -> None:
        """Check ``topic``'s streams (or every stream) again before the next use."""
        if topic is None:
            self._known.clear()
        else:
            self._known.discard(self.names.stream(topic))
            self._known.discard(self.names.delay_stream(topic))

    async def stream(self, conn: Connection, topic: str) -> None:
        """Create ``topic``'s stream unless it exists (an existing one is used as it is)."""
        if self.names.stream(topic) not in self._known:
            await self._add_stream(
                conn,
                StreamConfig(
                    name=self.names.stream(topic),
                    subjects=[self.names.subject(topic)],
                    retention=RetentionPolicy.LIMITS,
                    max_age=self._settings.max_age or None,
                ),
            )

    async def delay_stream(self, conn: Connection, topic: str) -> None:
        """Create ``topic``'s delay stream unless it exists."""
        if self.names.delay_stream(topic) not in self._known:
            await self._add_stream(
                conn,
                StreamConfig(
                    name=self.names.delay_stream(topic),
                    subjects=[self.names.delay_subject(topic)],
                    retention=RetentionPolicy.WORK_QUEUE,
                ),
            )

    async def _add_stream(self, conn: Connection, config: StreamConfig) -> None:
        settings = self._settings
        config.storage = StorageType.FILE if settings.storage == "file" else StorageType.MEMORY
        config.num_replicas = settings.replicas
        config.max_bytes = settings.max_bytes or -1
        config.discard = DiscardPolicy.OLD
        try:
            await conn.js.add_stream(config)
        except BadRequestError as exc:
            if exc.err_code != STREAM_EXISTS:
                raise
            log.debug("stream %s exists with another configuration; using it", config.name)
        assert config.name is not None
        self._known.add(config.name)

    async def group(
        self, conn: Connection, topic: str, group: str, ack_wait: float | None
    ) -> float:
        """Create ``group``'s consumer of ``topic`` unless it exists; give it ``ack_wait``
        unless None (a group's ack wait is the last one asked for).

        Returns:
            The group's ack wait in seconds, as the server has it.
        """
        stream = self.names.stream(topic)
        try:
            info = await conn.js.consumer_info(stream, group)
        except NotFoundError:
            info = None
        if info is not None and (ack_wait is None or info.config.ack_wait == ack_wait):
            return float(info.config.ack_wait or DEFAULT_ACK_WAIT)
        wait = DEFAULT_ACK_WAIT if ack_wait is None else ack_wait
        if info is not None:
            log.info(
                "group %s of %s: ack_wait %ss -> %ss", group, topic, info.config.ack_wait, wait
            )
        info = await conn.js.add_consumer(stream, self._consumer(group, topic, wait, stream))
        return float(info.config.ack_wait or wait)

    async def mover(self, conn: Connection, topic: str) -> str:
        """Create the movers' consumer of ``topic``'s delay stream; return the stream."""
        stream = self.names.delay_stream(topic)
        await conn.js.add_consumer(stream, self._consumer(MOVER, topic, MOVER_ACK_WAIT, stream))
        return stream

    def _consumer(self, name: str, topic: str, ack_wait: float, stream: str) -> ConsumerConfig:
        delayed = stream == self.names.delay_stream(topic)
        return ConsumerConfig(
            durable_name=name,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=-1,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=(self.names.delay_subject if delayed else self.names.subject)(topic),
            max_ack_pending=-1,
        )
