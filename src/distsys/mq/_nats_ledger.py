"""What one process knows of a consumer group's messages that JetStream does not keep.

Pure bookkeeping, no I/O.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from typing import Final

__all__ = ["Admission", "Key", "Ledger"]

Key = tuple[int, int]
"""A message's identity: (stream sequence, stored-at in ns). The time tells apart the
messages of a stream deleted and created again, whose sequences start over."""

ACKED_KEPT: Final = 4096
"""Messages acked here that are remembered, per group."""
ERRORS_KEPT: Final = 4096
"""Errors given by nacks that are remembered, per group."""
PRUNE_ABOVE: Final = 8192
"""Deliveries in hand above which the expired ones are forgotten."""


class Admission(enum.Enum):
    """What to do with a delivery."""

    HAND_OUT = "hand out"
    DROP = "drop"  # a duplicate of a delivery in hand: that one will settle it
    ACK_AGAIN = "ack again"  # a duplicate of a message acked here: ack it, drop it


class Ledger:
    """One process's view of one group's messages.

    - In hand: messages delivered here and not yet settled, with their local
      deadlines. A second delivery of one of them before that deadline is a duplicate —
      nats-server before 2.10.14 can deliver a message again with its delivery count set
      back to 1 when it failed to deliver another (nats-server#5305) — and is dropped:
      the delivery in hand settles the message.
    - Acked: the last ``ACKED_KEPT`` messages acked here. A delivery of one of them (the
      same bug, or an ack lost with a connection) is acked again and dropped: its
      handling is done.
    - Errors: the error each nack gave, for the dead letter if a later delivery times out.
    - Delays: when the messages nacked here with a delay fall due (``depth`` counts them
      as delayed rather than in flight).

    Safe within one event loop.
    """

    def __init__(self) -> None:
        self._in_hand: dict[Key, float] = {}
        self._acked: OrderedDict[Key, None] = OrderedDict()
        self._errors: OrderedDict[Key, str] = OrderedDict()
        self._delays: dict[Key, float] = {}
        self._prune_at = PRUNE_ABOVE

    def admit(self, key: Key, deadline: float, now: float) -> Admission:
        """Decide about a delivery of ``key`` whose local deadline is ``deadline``."""
        if key in self._acked:
            return Admission.ACK_AGAIN
        held = self._in_hand.get(key)
        if held is not None and held > now:
            return Admission.DROP
        in_hand = self._in_hand
        if len(in_hand) > self._prune_at:  # deliveries abandoned by closed subscriptions
            for old in [k for k, until in in_hand.items() if until <= now]:
                del in_hand[old]
            self._prune_at = max(PRUNE_ABOVE, 2 * len(in_hand))
        in_hand[key] = deadline
        self._delays.pop(key, None)
        return Admission.HAND_OUT

    def acked(self, key: Key) -> None:
        """Record that ``key`` was acked here."""
        self._in_hand.pop(key, None)
        self._errors.pop(key, None)
        acked = self._acked
        acked[key] = None
        if len(acked) > ACKED_KEPT:
            acked.popitem(last=False)

    def nacked(self, key: Key, error: str | None, due: float | None) -> None:
        """Record a nack of ``key``: the error it gave, and when it falls due if delayed."""
        self._in_hand.pop(key, None)
        if error is not None:
            self._errors[key] = error
            self._errors.move_to_end(key)
            if len(self._errors) > ERRORS_KEPT:
                self._errors.popitem(last=False)
        if due is not None:
            self._delays[key] = due

    def error(self, key: Key) -> str | None:
        """The error a nack of ``key`` gave here, if any."""
        return self._errors.get(key)

    def delayed(self, now: float) -> int:
        """Messages nacked here with a delay that is still running."""
        delays = self._delays
        for key in [k for k, due in delays.items() if due <= now]:
            del delays[key]
        return len(delays)
