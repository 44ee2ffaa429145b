"""Byte sizes written for people: ``"256MB"``, ``"1.5GiB"``, ``"4096"``."""

from __future__ import annotations

import re
from typing import Final

from distsys.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["format_size", "parse_size"]

_UNITS: Final = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_PATTERN: Final = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)
ACCEPTED: Final = "a positive number of bytes: an int, or a str such as '256MB' or '1.5GiB'"


def parse_size(value: int | str, field: str = "size") -> int:
    """Return the bytes ``value`` stands for (units are powers of 1024: ``1KB`` is 1024).

    Raises:
        ArgumentTypeError: ``value`` is neither an int nor a str.
        InvalidArgumentError: it is not a positive size.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ArgumentTypeError(field, value, ACCEPTED)
    if isinstance(value, int):
        size = value
    else:
        found = _PATTERN.fullmatch(value)
        if found is None:
            raise InvalidArgumentError(field, value, ACCEPTED)
        number, unit = found.groups()
        size = int(float(number) * _UNITS[unit.lower()])
    if size < 1:
        raise InvalidArgumentError(field, value, ACCEPTED)
    return size


def format_size(size: float) -> str:
    """Return ``size`` bytes for people: ``"12.3 MB"`` (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover
