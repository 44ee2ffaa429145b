"""Headers: a case-insensitive view of a message's raw ``(name, value)`` byte pairs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TypeAlias, overload

__all__ = ["HeaderInput", "Headers"]


def _key(name: str | bytes) -> bytes:
    return (name.encode("latin-1") if isinstance(name, str) else name).lower()


class Headers:
    """The headers of a message: the raw pairs, looked up without regard to case.

    The pairs are kept as received, in order, duplicates included, as ``bytes``; lookups
    lower-case both sides and decode values as Latin-1 (the HTTP/1.1 wire charset).
    A message has few headers, so a lookup is a short scan: nothing is indexed up front,
    which keeps a response that nobody inspects free of that cost.

    Not thread-safe (nothing in a message is); the view never changes after parsing.

    Attributes:
        raw: the ``(name, value)`` pairs as received.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]] | None = None) -> None:
        self.raw: list[tuple[bytes, bytes]] = [] if raw is None else raw

    @overload
    def get(self, name: str | bytes) -> str | None: ...

    @overload
    def get(self, name: str | bytes, default: str) -> str: ...

    def get(self, name: str | bytes, default: str | None = None) -> str | None:
        """Return the first value of ``name`` (any case), or ``default``."""
        key = _key(name)
        for raw_name, value in self.raw:
            if len(raw_name) == len(key) and raw_name.lower() == key:
                return value.decode("latin-1")
        return default

    def get_all(self, name: str | bytes) -> list[str]:
        """Return every value of ``name`` (any case), in order."""
        key = _key(name)
        return [v.decode("latin-1") for n, v in self.raw if len(n) == len(key) and n.lower() == key]

    def __getitem__(self, name: str | bytes) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str | bytes):
            return False
        return self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for name, value in self.raw:
            yield name.decode("latin-1"), value.decode("latin-1")

    def __len__(self) -> int:
        return len(self.raw)

    def items(self) -> list[tuple[str, str]]:
        """Return the pairs decoded as str, in order, duplicates included."""
        return list(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return [(n.lower(), v) for n, v in self.raw] == [(n.lower(), v) for n, v in other.raw]
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable raw list

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


HeaderInput: TypeAlias = (
    Headers | Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]] | None
)
"""What a request accepts as headers: a mapping, pairs of str or bytes, or a Headers."""
