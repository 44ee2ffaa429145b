"""What the ``sqlite://`` broker's event-loop side and its worker thread hand each other.

The broker turns each call into one of these records before it crosses to the worker
thread (:mod:`distsys.mq._sqlite_store` applies them), so the checks and the encoding
happen on the caller's side and the thread gets plain data. The write records are not
frozen (a frozen dataclass costs a microsecond more to build, once per publish); nobody
changes one once built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec

from distsys.mq._message import RawDelivery

__all__ = [
    "AckOp",
    "Claim",
    "NackOp",
    "PublishOp",
    "Row",
    "WriteOp",
    "decode_headers",
    "decode_positions",
    "encode_positions",
    "encode_headers",
]

Row = tuple[bytes, bytes | None, str | None, float]
"""A message to store: payload, encoded headers (None: none), key, delay in seconds."""

_encode_headers: Final = msgspec.json.Encoder().encode
decode_headers: Final = msgspec.json.Decoder(dict[str, str]).decode
"""Read stored headers back."""
decode_positions: Final = msgspec.json.Decoder(list[int]).decode
"""Read a JSON array of positions (from ``json_group_array``)."""
_encode_positions: Final = msgspec.json.Encoder().encode


def encode_positions(positions: Sequence[int]) -> str:
    """Return ``positions`` as a JSON array, the text ``json_each`` reads."""
    return _encode_positions(positions).decode()


def encode_headers(headers: dict[str, str]) -> bytes | None:
    """Return ``headers`` as stored: JSON, or None for none."""
    return _encode_headers(headers) if headers else None


@dataclass(slots=True)
class PublishOp:
    """Store ``rows`` on ``topic``; the result is their ids.

    ``size`` is the bytes of their payloads and headers (what makes a batch heavy).
    """

    topic: str
    rows: list[Row]
    published_at: float
    now: float
    size: int = 0


@dataclass(slots=True)
class AckOp:
    """Acknowledge for group ``grp``: ``leases`` maps (due, token) to positions.

    The result is the set of (token, position) whose lease was gone (stale acks, most
    often none); the others were acknowledged.
    """

    grp: int
    topic: int
    leases: dict[tuple[float, int], list[int]]


@dataclass(slots=True)
class NackOp:
    """Hand one delivery back, deliverable again at ``due``; the result is a bool."""

    grp: int
    topic: str
    position: int
    lease: tuple[float, int]
    now: float
    due: float
    error: str | None


WriteOp = PublishOp | AckOp | NackOp


@dataclass(frozen=True, slots=True)
class Claim:
    """What one fetch got.

    Attributes:
        deliveries: the messages now leased to the caller (redeliveries first).
        next_due: when none came, the earliest time (on the clock) something of this
            group falls due (an ack deadline, a nack's delay, a delayed message), or None.
    """

    deliveries: list[RawDelivery] = field(default_factory=list)
    next_due: float | None = None
