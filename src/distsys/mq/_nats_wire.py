"""How the NATS broker lays messages onto JetStream: names, headers and ack subjects.

Pure functions, no I/O (and the errors that mean the server did not answer).

Names: topic ``orders`` in namespace ``app`` is the stream ``app_orders``, which captures
the subject ``app.orders``; its delayed messages wait in the work-queue stream
``app-delay_orders`` (subject ``app-delay.orders``). A namespace is letters and digits
only, so the first ``_`` of a stream name always ends its namespace part and no two
(namespace, topic) pairs share a stream.

Headers: NATS headers are HTTP-like lines — names are tokens, values are trimmed and
cannot hold line breaks, and ``Nats-*`` names mean something to the server. A header NATS
would alter or act on travels JSON-encoded inside the one ``x-distsys-headers`` header and
comes back exactly as given; the partition key travels JSON-encoded in ``x-distsys-key``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import nats.errors

from distsys.mq._message import Outgoing

__all__ = [
    "HEADER_ENCODED",
    "HEADER_ID",
    "HEADER_KEY",
    "HEADER_NOT_BEFORE",
    "HEADER_PUBLISHED",
    "MSG_ID",
    "NAMESPACE",
    "NAMESPACE_ACCEPTED",
    "UNAVAILABLE",
    "Decoded",
    "Names",
    "decode_headers",
    "encode_headers",
    "parse_ack_reply",
]

UNAVAILABLE: Final = (nats.errors.Error, OSError)
"""What a failed exchange with the server raises (OSError covers TimeoutError)."""

NAMESPACE: Final = re.compile(r"[A-Za-z0-9]{1,32}")
NAMESPACE_ACCEPTED: Final = "1-32 letters or digits"

HEADER_KEY: Final = "x-distsys-key"
"""The partition key, as a JSON string."""
HEADER_ID: Final = "x-distsys-id"
"""On a message that was delayed: the id it was given when published."""
HEADER_PUBLISHED: Final = "x-distsys-published-at"
"""On a message that was delayed: the Unix time it was published."""
HEADER_NOT_BEFORE: Final = "x-distsys-not-before"
"""On a message in a delay stream: the Unix time it falls due."""
HEADER_ENCODED: Final = "x-distsys-headers"
"""User headers NATS cannot carry verbatim, as a JSON object."""
MSG_ID: Final = "Nats-Msg-Id"
"""JetStream's de-duplication id."""

_PRIVATE: Final = frozenset(
    {HEADER_KEY, HEADER_ID, HEADER_PUBLISHED, HEADER_NOT_BEFORE, HEADER_ENCODED}
)
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True, slots=True)
class Names:
    """The stream and subject names of a namespace's topics."""

    namespace: str

    def stream(self, topic: str) -> str:
        """The stream that holds ``topic``'s messages."""
        return f"{self.namespace}_{topic}"

    def subject(self, topic: str) -> str:
        """The subject ``topic``'s messages are published to."""
        return f"{self.namespace}.{topic}"

    def delay_stream(self, topic: str) -> str:
        """The work-queue stream where ``topic``'s delayed messages wait."""
        return f"{self.namespace}-delay_{topic}"

    def delay_subject(self, topic: str) -> str:
        """The subject of ``topic``'s delayed messages."""
        return f"{self.namespace}-delay.{topic}"

    def owns(self, stream: str) -> bool:
        """Whether ``stream`` is one of this namespace's streams."""
        return stream.startswith((f"{self.namespace}_", f"{self.namespace}-delay_"))


def _is_server_header(name: str) -> bool:
    return name[:5].lower() == "nats-"


def _carried_verbatim(name: str, value: str) -> bool:
    return (
        _TOKEN.fullmatch(name) is not None
        and name not in _PRIVATE
        and not _is_server_header(name)
        and value != ""
        and value.isprintable()
        and value == value.strip()
    )


def encode_headers(out: Outgoing, extra: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """Return the NATS headers for ``out`` (None when it needs none), plus ``extra``."""
    if not out.headers and out.key is None and not extra:
        return None
    headers: dict[str, str] = {}
    odd: dict[str, str] = {}
    for name, value in out.headers.items():
        if _carried_verbatim(name, value):
            headers[name] = value
        else:
            odd[name] = value
    if odd:
        headers[HEADER_ENCODED] = json.dumps(odd)  # ASCII on one line: NATS keeps it as is
    if out.key is not None:
        headers[HEADER_KEY] = json.dumps(out.key)
    if extra:
        headers.update(extra)
    return headers


@dataclass(slots=True)
class Decoded:
    """What a stored message's NATS headers say.

    Attributes:
        headers: the user's (and distsys's public ``x-distsys-*``) headers.
        key: the partition key, or None.
        id: the id given at publication to a message that was delayed, or None.
        published_at: the publication time of a message that was delayed, or None.
        not_before: when a message in a delay stream falls due, or None.
    """

    headers: dict[str, str]
    key: str | None = None
    id: str | None = None
    published_at: float | None = None
    not_before: float | None = None


def _json_str(value: str) -> str | None:
    try:
        decoded = json.loads(value)
    except ValueError:
        return None
    return decoded if isinstance(decoded, str) else None


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def decode_headers(raw: Mapping[str, str] | None) -> Decoded:
    """Split NATS headers into the user's headers and distsys's bookkeeping.

    ``Nats-*`` headers are the server's and are left out; a malformed bookkeeping header
    (written by someone else) is ignored rather than failing the delivery.
    """
    decoded = Decoded({})
    if not raw:
        return decoded
    headers = decoded.headers
    for name, value in raw.items():
        if name not in _PRIVATE:
            if not _is_server_header(name):
                headers[name] = value
        elif name == HEADER_KEY:
            decoded.key = _json_str(value)
        elif name == HEADER_ID:
            decoded.id = value
        elif name == HEADER_PUBLISHED:
            decoded.published_at = _number(value)
        elif name == HEADER_NOT_BEFORE:
            decoded.not_before = _number(value)
        else:
            try:
                odd = json.loads(value)
            except ValueError:
                continue
            if isinstance(odd, dict):
                headers.update({k: v for k, v in odd.items() if isinstance(v, str)})
    return decoded


def parse_ack_reply(reply: str) -> tuple[int, int, int]:
    """Return (deliveries so far, stream sequence, stored-at in ns) from an ack subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``, or the
    form with a domain and an account hash after ``ACK`` (and maybe a trailing token).

    Raises:
        ValueError: ``reply`` is not a JetStream ack subject.
    """
    tokens = reply.split(".")
    if len(tokens) == 9:
        first = 4
    elif len(tokens) >= 11:
        first = 6
    else:
        raise ValueError(f"not a JetStream ack subject: {reply!r}")
    if tokens[0] != "$JS" or tokens[1] != "ACK":
        raise ValueError(f"not a JetStream ack subject: {reply!r}")
    return int(tokens[first]), int(tokens[first + 1]), int(tokens[first + 3])
