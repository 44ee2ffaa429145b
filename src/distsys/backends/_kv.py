"""The key-value-with-leases interface that registries and other coordination code use.

It is the small part of etcd's API that service discovery needs, and each backend maps
it onto what its technology does natively: etcd leases and watches; Redis keys with
TTLs and a change channel; a SQLite file with an expiry column and a change log; a dict
in memory. Code written against :class:`KV` runs on any of them.
"""

from __future__ import annotations

import builtins
import enum
import math
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Protocol, Self, runtime_checkable

from distsys.backends._url import BackendURL
from distsys.errors import ArgumentTypeError, BackendUnavailableError, InvalidArgumentError

__all__ = ["KV", "EventType", "KVBase", "KVEntry", "KVEvent"]

_KEY_ACCEPTED: Final = "a non-empty str of encodable characters (no NUL, no lone surrogates)"


class EventType(enum.Enum):
    """What a :class:`KVEvent` reports."""

    RESET = "reset"
    """Replace your whole view with ``event.snapshot`` (first event, or after a gap)."""
    PUT = "put"
    """``event.entry`` was created or updated."""
    DELETE = "delete"
    """``event.key`` was deleted, or its lease expired or was revoked."""


@dataclass(frozen=True, slots=True)
class KVEntry:
    """One key's current state.

    Attributes:
        key: the key.
        value: the value.
        version: 1 when the key was created, one more on each later put; it restarts at 1
            after a delete. :meth:`KV.compare_and_set` compares it.
        lease: the lease the key is attached to, or None.
    """

    key: str
    value: bytes
    version: int
    lease: int | None = None


@dataclass(frozen=True, slots=True)
class KVEvent:
    """A change seen by :meth:`KV.watch`.

    Attributes:
        type: RESET, PUT or DELETE.
        key: the key that changed ("" for RESET).
        entry: for PUT, the key's new state.
        snapshot: for RESET, every entry under the watched prefix, sorted by key.
    """

    type: EventType
    key: str = ""
    entry: KVEntry | None = None
    snapshot: tuple[KVEntry, ...] = ()


@runtime_checkable
class KV(Protocol):
    """A key-value store with leases, compare-and-set and prefix watches (async).

    Semantics every backend guarantees (the contract suite in :mod:`distsys.testing`
    checks them):

    - ``put`` / ``get`` / ``delete`` / ``list(prefix)`` behave like a dict of str to
      bytes; ``list`` is sorted by key.
    - ``compare_and_set(key, value, version=v)`` writes only if the key's current version
      is ``v`` (0: only if the key does not exist) and returns the new entry, else None.
    - ``grant(ttl)`` creates a lease; keys put with ``lease=`` are deleted when it expires
      (``ttl`` seconds after the last ``keep_alive``) or is revoked.
    - ``watch(prefix)`` first yields a RESET snapshot of the prefix, then PUT and DELETE
      events in the order they happened; if the backend may have missed events (a
      reconnect, a slow consumer), it yields a new RESET snapshot instead of a gap.
    - Writing under a lease that has expired raises :class:`LeaseExpiredError`.
    - A server that cannot be reached, or a closed client, raises
      :class:`BackendUnavailableError`.
    """

    url: BackendURL

    async def ping(self) -> None:
        """Check that the backend answers."""
        ...

    async def get(self, key: str) -> KVEntry | None:
        """Return ``key``'s entry, or None."""
        ...

    async def list(self, prefix: str) -> builtins.list[KVEntry]:
        """Return every entry whose key starts with ``prefix``, sorted by key."""
        ...

    async def put(self, key: str, value: bytes, *, lease: int | None = None) -> KVEntry:
        """Create or replace ``key``; attach it to ``lease`` (or to none)."""
        ...

    async def compare_and_set(
        self, key: str, value: bytes, *, version: int, lease: int | None = None
    ) -> KVEntry | None:
        """Write only if ``key``'s version is ``version`` (0: absent); None if not."""
        ...

    async def delete(self, key: str) -> bool:
        """Delete ``key``; True if it existed."""
        ...

    async def grant(self, ttl: float) -> int:
        """Create a lease that expires ``ttl`` seconds from now; return its id."""
        ...

    async def keep_alive(self, lease: int) -> bool:
        """Restart ``lease``'s TTL; False if it has expired or was revoked."""
        ...

    async def revoke(self, lease: int) -> bool:
        """End ``lease`` now, deleting its keys; False if it was already gone."""
        ...

    def watch(self, prefix: str) -> AsyncGenerator[KVEvent, None]:
        """Yield a RESET snapshot of ``prefix``, then its changes as they happen."""
        ...

    async def aclose(self) -> None:
        """Release connections and end every watch; idempotent."""
        ...


def check_key(key: object, field: str = "key") -> str:
    """Return ``key`` if it is a valid key, else raise naming ``field``."""
    if not isinstance(key, str):
        raise ArgumentTypeError(field, key, _KEY_ACCEPTED)
    if not key or "\0" in key:
        raise InvalidArgumentError(field, key, _KEY_ACCEPTED)
    try:  # surrogateescape: a server's non-UTF-8 key, listed, can be named again
        key.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise InvalidArgumentError(field, key, _KEY_ACCEPTED) from None
    return key


def check_prefix(prefix: object) -> str:
    """Return ``prefix`` if it is a str without NUL (empty means every key)."""
    if not isinstance(prefix, str):
        raise ArgumentTypeError("prefix", prefix, "a str (empty for every key)")
    if "\0" in prefix:
        raise InvalidArgumentError("prefix", prefix, "a str without NUL characters")
    return prefix


def check_value(value: object) -> bytes:
    """Return ``value`` as bytes, or raise: values are bytes, never str or objects."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise ArgumentTypeError("value", value, "bytes (encode text or objects first)")


def check_ttl(ttl: object) -> float:
    """Return ``ttl`` as a float if it is a finite number of seconds > 0."""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise ArgumentTypeError("ttl", ttl, "a number of seconds > 0")
    if not (ttl > 0 and math.isfinite(ttl)):
        raise InvalidArgumentError("ttl", ttl, "a finite number of seconds > 0")
    return float(ttl)


def check_lease(lease: object, *, optional: bool = True) -> int | None:
    """Return ``lease`` if it is a lease id (an int), or None when allowed."""
    if lease is None and optional:
        return None
    if isinstance(lease, bool) or not isinstance(lease, int):
        raise ArgumentTypeError("lease", lease, "a lease id from grant()")
    return lease


def check_version(version: object) -> int:
    """Return ``version`` if it is an int >= 0."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise ArgumentTypeError("version", version, "an int >= 0 (0: the key must not exist)")
    if version < 0:
        raise InvalidArgumentError("version", version, "an int >= 0 (0: the key must not exist)")
    return version


class KVBase:
    """Shared plumbing for KV backends: argument checks, ``async with``, idempotent close.

    Subclasses implement the ``_``-prefixed hooks; the public methods validate arguments
    first, so every backend refuses bad input with the same errors.
    """

    url: BackendURL

    def __init__(self, url: BackendURL) -> None:
        self.url = url
        self._closed = False

    async def ping(self) -> None:
        """Check that the backend answers (raises BackendUnavailableError if not)."""
        self._check_open()
        await self._ping()

    async def get(self, key: str) -> KVEntry | None:
        """Return ``key``'s entry, or None."""
        self._check_open()
        return await self._get(check_key(key))

    async def list(self, prefix: str) -> builtins.list[KVEntry]:
        """Return every entry whose key starts with ``prefix``, sorted by key."""
        self._check_open()
        return await self._list(check_prefix(prefix))

    async def put(self, key: str, value: bytes, *, lease: int | None = None) -> KVEntry:
        """Create or replace ``key``, attached to ``lease`` (or to none)."""
        self._check_open()
        return await self._put(check_key(key), check_value(value), check_lease(lease))

    async def compare_and_set(
        self, key: str, value: bytes, *, version: int, lease: int | None = None
    ) -> KVEntry | None:
        """Write only if ``key``'s version is ``version`` (0: absent); None if not."""
        self._check_open()
        return await self._compare_and_set(
            check_key(key), check_value(value), check_version(version), check_lease(lease)
        )

    async def delete(self, key: str) -> bool:
        """Delete ``key``; True if it existed."""
        self._check_open()
        return await self._delete(check_key(key))

    async def grant(self, ttl: float) -> int:
        """Create a lease that expires ``ttl`` seconds from now; return its id."""
        self._check_open()
        return await self._grant(check_ttl(ttl))

    async def keep_alive(self, lease: int) -> bool:
        """Restart ``lease``'s TTL; False if it has expired or was revoked."""
        self._check_open()
        return await self._keep_alive(check_lease(lease, optional=False))  # type: ignore[arg-type]

    async def revoke(self, lease: int) -> bool:
        """End ``lease`` now, deleting its keys; False if it was already gone."""
        self._check_open()
        return await self._revoke(check_lease(lease, optional=False))  # type: ignore[arg-type]

    def watch(self, prefix: str) -> AsyncGenerator[KVEvent, None]:
        """Yield a RESET snapshot of ``prefix``, then its changes as they happen."""
        self._check_open()
        return self._watch(check_prefix(prefix))

    async def aclose(self) -> None:
        """Release connections and end every watch; idempotent."""
        if not self._closed:
            self._closed = True
            await self._aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise BackendUnavailableError(str(self.url), "this client has been closed")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    # ------------------------------------------------------------ backend hooks

    async def _ping(self) -> None:
        raise NotImplementedError

    async def _get(self, key: str) -> KVEntry | None:
        raise NotImplementedError

    async def _list(self, prefix: str) -> builtins.list[KVEntry]:
        raise NotImplementedError

    async def _put(self, key: str, value: bytes, lease: int | None) -> KVEntry:
        raise NotImplementedError

    async def _compare_and_set(
        self, key: str, value: bytes, version: int, lease: int | None
    ) -> KVEntry | None:
        raise NotImplementedError

    async def _delete(self, key: str) -> bool:
        raise NotImplementedError

    async def _grant(self, ttl: float) -> int:
        raise NotImplementedError

    async def _keep_alive(self, lease: int) -> bool:
        raise NotImplementedError

    async def _revoke(self, lease: int) -> bool:
        raise NotImplementedError

    def _watch(self, prefix: str) -> AsyncGenerator[KVEvent, None]:
        raise NotImplementedError

    async def _aclose(self) -> None:
        raise NotImplementedError
