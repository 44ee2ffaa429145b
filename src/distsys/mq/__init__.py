"""A durable, at-least-once message queue with consumer groups and dead letters.

``open_broker(url)`` opens a :class:`Broker` on ``sqlite:///path.db`` (the default: one
machine, several processes), ``redis://host:6379/0`` (Redis Streams), ``nats://host:4222``
(NATS JetStream) or ``memory://`` (one process). ``publish`` stores a message;
``subscribe(topic, group)`` yields :class:`Delivery` objects to ``ack()`` or ``nack()``.
A message not acked within ``ack_wait`` is delivered again; after ``max_deliveries`` it
moves to the topic's dead-letter topic (``<topic>-dead``).
"""

from typing import Any

from distsys.backends import BackendURL as _BackendURL
from distsys.backends import Implementation as _Implementation
from distsys.backends import SchemeTable as _SchemeTable
from distsys.mq._broker import (
    Broker,
    BrokerBase,
    BrokerCounters,
    BrokerStatistics,
    Delivery,
    Fetcher,
    Subscription,
    SubscriptionStatistics,
)
from distsys.mq._consumer import Consumer, ConsumerStatistics, RedeliveryBackoff
from distsys.mq._idempotency import (
    Claim,
    ClaimStatus,
    Deduplicator,
    DeduplicatorStatistics,
    DuplicateInProgressError,
    default_key,
    idempotent,
)
from distsys.mq._memory import MemoryBroker
from distsys.mq._message import (
    DEAD_LETTER_SUFFIX,
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
    dead_letter_topic,
)
from distsys.mq._producer import Producer, ProducerStatistics

__all__ = [
    "DEAD_LETTER_SUFFIX",
    "HEADER_ATTEMPTS",
    "HEADER_DEADLINE",
    "HEADER_DEAD_REASON",
    "HEADER_ERROR",
    "HEADER_GROUP",
    "HEADER_REPLAY_GROUP",
    "HEADER_TOPIC",
    "MQ_SCHEMES",
    "Broker",
    "BrokerBase",
    "BrokerCounters",
    "BrokerStatistics",
    "Claim",
    "ClaimStatus",
    "Consumer",
    "ConsumerStatistics",
    "Deduplicator",
    "DeduplicatorStatistics",
    "Delivery",
    "DuplicateInProgressError",
    "Depth",
    "Fetcher",
    "MemoryBroker",
    "Outgoing",
    "Producer",
    "ProducerStatistics",
    "RawDelivery",
    "RedeliveryBackoff",
    "Subscription",
    "SubscriptionStatistics",
    "dead_letter_topic",
    "default_key",
    "idempotent",
    "open_broker",
]

MQ_SCHEMES = _SchemeTable(
    "mq",
    {
        "memory": _Implementation("distsys.mq._memory:MemoryBroker"),
        "sqlite": _Implementation("distsys.mq._sqlite:SQLiteBroker"),
        "redis": _Implementation("distsys.mq._redis:RedisBroker", "redis", "redis"),
        "nats": _Implementation("distsys.mq._nats:NATSBroker", "nats", "nats"),
    },
)
"""The brokers by scheme."""


def open_broker(url: str | _BackendURL = "sqlite:///.distsys/mq.db", **options: Any) -> Broker:
    """Open the broker at ``url``; close it with ``await broker.aclose()`` (or ``async with``).

    Args:
        url: ``sqlite:///path.db`` (default ``sqlite:///.distsys/mq.db``),
            ``redis://host:6379/0``, ``nats://host:4222`` or ``memory://``.
        **options: passed to the backend (for example ``clock=``).

    Raises:
        UnknownSchemeError: the scheme is not one of those.
        MissingDependencyError: the client library is not installed (names the extra).
        InvalidArgumentError: the URL is malformed.
    """
    parsed, cls = MQ_SCHEMES.resolve(url)
    broker: Broker = cls(parsed, **options)
    return broker
