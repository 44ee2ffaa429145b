"""Messages, deliveries and queue depth: the records of the message queue."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from distsys.errors import ArgumentTypeError, InvalidArgumentError

__all__ = [
    "DEAD_LETTER_SUFFIX",
    "HEADER_ATTEMPTS",
    "HEADER_DEAD_REASON",
    "HEADER_DEADLINE",
    "HEADER_ERROR",
    "HEADER_GROUP",
    "HEADER_REPLAY_GROUP",
    "HEADER_TOPIC",
    "Depth",
    "Outgoing",
    "RawDelivery",
    "check_delay",
    "check_name",
    "dead_letter_topic",
]

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
NAME_ACCEPTED: Final = "1-100 characters of A-Z a-z 0-9 _ -, starting with a letter or digit"

HEADER_DEADLINE: Final = "x-distsys-deadline"
"""Unix time (seconds) after which the message is not worth handling any more."""
HEADER_DEAD_REASON: Final = "x-distsys-dead-reason"
"""On a dead letter: why it died ("max deliveries", "expired", "rejected")."""
HEADER_ATTEMPTS: Final = "x-distsys-attempts"
"""On a dead letter: how many deliveries it had."""
HEADER_ERROR: Final = "x-distsys-error"
"""On a dead letter: the last error its handler reported."""
HEADER_TOPIC: Final = "x-distsys-topic"
"""On a dead letter: the topic it was published to."""
HEADER_GROUP: Final = "x-distsys-group"
"""On a dead letter: the consumer group that gave up on it."""
HEADER_REPLAY_GROUP: Final = "x-distsys-replay-group"
"""On a replayed message: the only group that should handle it; others skip it."""

DEAD_LETTER_SUFFIX: Final = "-dead"


def dead_letter_topic(topic: str) -> str:
    """Return the dead-letter topic of ``topic`` (``orders`` -> ``orders-dead``)."""
    return f"{topic}{DEAD_LETTER_SUFFIX}"


def check_name(field: str, value: object) -> str:
    """Return ``value`` if it is a valid topic or group name, else raise naming ``field``."""
    if not isinstance(value, str):
        raise ArgumentTypeError(field, value, NAME_ACCEPTED)
    if not _NAME.fullmatch(value):
        raise InvalidArgumentError(field, value, NAME_ACCEPTED)
    return value


def check_delay(field: str, value: object) -> float:
    """Return ``value`` as seconds if it is None, 0 or a positive finite number."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentTypeError(field, value, "None or a number of seconds >= 0")
    if not (value >= 0 and math.isfinite(value)):
        raise InvalidArgumentError(field, value, "None or a finite number of seconds >= 0")
    return float(value)


def check_headers(headers: object) -> dict[str, str]:
    """Return a copy of ``headers`` if it maps str to str."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in headers.items()
    ):
        raise ArgumentTypeError("headers", headers, "None or a mapping of non-empty str to str")
    return dict(headers)


def check_payload(payload: object) -> bytes:
    """Return ``payload`` as bytes; text and objects must be encoded by the caller."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray | memoryview):
        return bytes(payload)
    raise ArgumentTypeError("payload", payload, "bytes (encode text or objects first)")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message on its way to the broker (what a backend's publish hook receives).

    Attributes:
        payload: the body.
        headers: string headers (``x-distsys-*`` are reserved).
        key: an optional partition/ordering key, carried with the message.
        delay: seconds before the message may be delivered (0: at once).
    """

    payload: bytes
    headers: dict[str, str] = field(default_factory=dict)
    key: str | None = None
    delay: float = 0.0


@dataclass(slots=True)
class RawDelivery:
    """A message as a backend hands it to a subscription.

    Owned by that subscription (its event loop); not shared between threads.

    Attributes:
        id: the broker's id for the message (unique within the topic).
        topic: the topic.
        payload: the body.
        headers: string headers.
        key: the partition key, or None.
        attempt: 1 on first delivery to the group, one more on each redelivery.
        published_at: Unix time of publication.
        token: whatever the backend needs to ack or nack this delivery.
    """

    id: str
    topic: str
    payload: bytes
    headers: dict[str, str]
    key: str | None
    attempt: int
    published_at: float
    token: Any = None


@dataclass(frozen=True, slots=True)
class Depth:
    """How much work waits in a topic for one consumer group.

    Attributes:
        waiting: messages ready to be delivered to the group (not in flight).
        in_flight: messages delivered and neither acked nor redelivered yet.
        delayed: messages published with a delay (or nacked with one) not yet due.
    """

    waiting: int
    in_flight: int
    delayed: int = 0

    @property
    def total(self) -> int:
        """Everything the group has not acked yet."""
        return self.waiting + self.in_flight + self.delayed
