"""What a registry stores: one running instance of a service."""

from __future__ import annotations

import enum
import re
from typing import Any, Final

import msgspec

from distsys.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["Instance", "Status", "decode_instance", "encode_instance"]

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_NAME_ACCEPTED: Final = "1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"


class Status(enum.Enum):
    """An instance's own view of whether it takes traffic."""

    UP = "UP"
    """Serving: balancers may pick it."""
    DRAINING = "DRAINING"
    """Finishing in-flight work before it stops: balancers skip it."""
    DOWN = "DOWN"
    """Stopped (deregistering): balancers skip it."""


class Instance(msgspec.Struct, frozen=True):
    """One running instance of a service, as registered.

    Attributes:
        service: the service name (a key segment: letters, digits, ``._-``).
        id: the instance id, unique within the service (same characters).
        host: where it listens.
        port: its port, 1..65535.
        metadata: free-form string pairs (version, protocol ...).
        weight: relative share of traffic for weighted balancers, an int >= 1.
        zone: its zone or rack ("" if none), for zone-aware callers.
        status: UP, DRAINING or DOWN.

    Raises:
        InvalidArgumentError / ArgumentTypeError: a field is invalid (the message names it).
    """

    service: str
    id: str
    host: str
    port: int
    metadata: dict[str, str] = {}
    weight: int = 1
    zone: str = ""
    status: Status = Status.UP

    def __post_init__(self) -> None:
        for field in ("service", "id"):
            value = getattr(self, field)
            if not isinstance(value, str):
                raise ArgumentTypeError(field, value, _NAME_ACCEPTED)
            if not _NAME.fullmatch(value):
                raise InvalidArgumentError(field, value, _NAME_ACCEPTED)
        if not isinstance(self.host, str) or not self.host or len(self.host) > 255:
            raise InvalidArgumentError("host", self.host, "a non-empty host name or address")
        _check_int("port", self.port, 1, 65535)
        _check_int("weight", self.weight, 1, 1_000_000)
        if not isinstance(self.zone, str):
            raise ArgumentTypeError("zone", self.zone, "a str")
        if not isinstance(self.status, Status):
            raise ArgumentTypeError("status", self.status, "a Status (UP, DRAINING, DOWN)")
        if not isinstance(self.metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.metadata.items()
        ):
            raise ArgumentTypeError("metadata", self.metadata, "a dict of str to str")

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def available(self) -> bool:
        """Whether balancers may pick it (its status is UP)."""
        return self.status is Status.UP

    def with_status(self, status: Status) -> Instance:
        """Return a copy with another status."""
        return msgspec.structs.replace(self, status=status)


def _check_int(field: str, value: Any, low: int, high: int) -> None:
    accepted = f"an int in {low}..{high}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(field, value, accepted)
    if not low <= value <= high:
        raise InvalidArgumentError(field, value, accepted)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Instance)


def encode_instance(instance: Instance) -> bytes:
    """Return the JSON a registry stores for ``instance``."""
    return _encoder.encode(instance)


def decode_instance(data: bytes) -> Instance:
    """Parse what a registry stored.

    Raises:
        msgspec.DecodeError / msgspec.ValidationError: not an instance record.
    """
    return _decoder.decode(data)
