"""Effectively-once handling on an at-least-once queue: remember which messages were handled.

A message may be delivered more than once (a consumer died before its ack, an ack came
too late, a relay published twice). :class:`Deduplicator` remembers the keys of handled
messages for a ``window`` of time so the duplicates can be skipped. Each key moves
through three states::

    absent ──claim()──▶ claimed ──done()──▶ done ──(window passes)──▶ absent
                          │  ▲
          release() on    │  │  a claim that is never finished (the handler's process
          failure, or the ▼  │  died) expires after claim_ttl, so a redelivery can try again
          claim expires   absent

The claim is what makes it safe across processes: on a KV store it is one
``compare_and_set(key, ..., version=0)``, so of two consumers that race for the same key
exactly one wins. The other sees "done" (skip it, ack it) or "claimed" (someone is on
it now: :class:`DuplicateInProgressError`, so the delivery is nacked and comes back
later, instead of being acked and lost should the claimant die).

Guarantees, honestly: if the handler's side effects commit in the same transaction as
the "done" mark, or are themselves idempotent, the result is effectively-once. Otherwise
there is a window — after the side effects, before the mark is written — in which a
crash leads to the side effects being applied again once the claim expires: still
at-least-once, but only for crashes inside that window.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Protocol

from distsys.backends import KV
from distsys.cache import LRUCache
from distsys.clock import Clock, MonotonicClock
from distsys.errors import ArgumentTypeError, DistsysError, InvalidArgumentError, LeaseExpiredError
from distsys.mq._broker import Delivery

__all__ = [
    "Claim",
    "ClaimStatus",
    "Deduplicator",
    "DeduplicatorStatistics",
    "DuplicateInProgressError",
    "default_key",
    "idempotent",
]

log = logging.getLogger("distsys.mq")

DEFAULT_WINDOW: Final = 3600.0
DEFAULT_CLAIM_TTL: Final = 30.0
DEFAULT_MAXSIZE: Final = 100_000
DEFAULT_PREFIX: Final = "distsys/dedup/"
LEASE_SLACK: Final = 0.1  # keys live between ttl and ttl * (1 + slack): leases are shared

_DONE: Final = b"done"
_RELEASED: Final = b"released"
_CLAIMED: Final = b"claimed"
_ATTEMPTS: Final = 4  # rounds of a compare-and-set race before giving up

Handler = Callable[[Delivery], Awaitable[None]]


class DuplicateInProgressError(DistsysError):
    """Another handler holds the claim on this message right now: try again later.

    Do not ack the delivery (the claimant may still die); nack it so it comes back after
    ``retry_after`` seconds — :class:`~distsys.mq.Consumer` does that by itself.

    Attributes:
        key: the deduplication key.
        retry_after: seconds until the claim expires at the latest, or None if unknown.
    """

    def __init__(self, key: str, retry_after: float | None) -> None:
        self.key = key
        self.retry_after = retry_after
        hint = f"; its claim expires within {retry_after:.1f}s" if retry_after is not None else ""
        super().__init__(f"message {key!r} is being handled elsewhere{hint}")


class ClaimStatus(enum.Enum):
    """What :meth:`Deduplicator.claim` found."""

    FIRST = "first"
    """Nobody handled it: it is yours to handle; then call ``done()`` or ``release()``."""
    DONE = "done"
    """It was handled within the window: skip it (and ack it)."""
    BUSY = "busy"
    """Another handler holds the claim now: nack it and try again later."""


@dataclass(frozen=True, slots=True)
class DeduplicatorStatistics:
    """Counters of a :class:`Deduplicator`.

    Attributes:
        first: claims won (messages to handle).
        duplicates: claims that found the message already handled (skipped).
        busy: claims that found another handler on it.
        completed: messages marked done.
        released: claims given up after a failure, so a redelivery may try again.
        overlaps: marks that found their claim had expired meanwhile (the message may
            have been handled twice: the handler took longer than ``claim_ttl``).
    """

    first: int
    duplicates: int
    busy: int
    completed: int
    released: int
    overlaps: int


def default_key(delivery: Delivery) -> str:
    """Return ``group/topic/id``: each consumer group handles each message once.

    A message republished under a new id (a relay that crashed after publishing, say)
    is a different message to this key; give such messages a business id in a header
    and use ``key=lambda d: d.headers["event-id"]``.
    """
    return f"{delivery.group}/{delivery.topic}/{delivery.id}"


# ------------------------------------------------------------------------- stores


@dataclass(frozen=True, slots=True)
class _Found:
    status: ClaimStatus
    version: int = 0  # FIRST: what done() and release() compare against
    retry_after: float | None = None  # BUSY: when the other claim expires at the latest


class _Store(Protocol):
    async def claim(self, key: str, ttl: float) -> _Found: ...

    async def finish(self, key: str, version: int, window: float) -> bool: ...

    async def release(self, key: str, version: int) -> None: ...


class _MemoryStore:
    """States in an LRU cache with per-item TTLs: one process, bounded memory."""

    def __init__(self, maxsize: int, clock: Clock) -> None:
        # key -> (state, version, claim expiry)
        self._cache: LRUCache[str, tuple[bytes, int, float]] = LRUCache(maxsize, clock=clock)
        self._clock = clock
        self._versions = 0

    async def claim(self, key: str, ttl: float) -> _Found:
        state = self._cache.get(key)
        if state is not None and state[0] == _DONE:
            return _Found(ClaimStatus.DONE)
        if state is not None and state[0] == _CLAIMED:
            return _Found(ClaimStatus.BUSY, retry_after=max(state[2] - self._clock.now(), 0.0))
        self._versions += 1
        self._cache.put(key, (_CLAIMED, self._versions, self._clock.now() + ttl), ttl=ttl)
        return _Found(ClaimStatus.FIRST, self._versions)

    async def finish(self, key: str, version: int, window: float) -> bool:
        state = self._cache.peek(key)
        self._cache.put(key, (_DONE, 0, 0.0), ttl=window)
        return state is not None and state[1] == version

    async def release(self, key: str, version: int) -> None:
        state = self._cache.peek(key)
        if state is not None and state[0] == _CLAIMED and state[1] == version:
            del self._cache[key]


class _LeasePool:
    """One lease shared by the keys written within a tenth of its TTL.

    Granting a lease per key would double the round trips; sharing one means a key
    lives between ``ttl`` and ``ttl * (1 + LEASE_SLACK)`` seconds after it was written.
    """

    def __init__(self, kv: KV, ttl: float, clock: Clock) -> None:
        self._kv = kv
        self._ttl = ttl
        self._clock = clock
        self._lease: int | None = None
        self._renew_at = 0.0

    async def get(self) -> int:
        now = self._clock.now()
        if self._lease is None or now >= self._renew_at:
            self._lease = await self._kv.grant(self._ttl * (1 + LEASE_SLACK))
            self._renew_at = now + self._ttl * LEASE_SLACK
        return self._lease

    def discard(self, lease: int) -> None:
        if self._lease == lease:
            self._lease = None


class _KVStore:
    """States as KV keys under shared leases; claims are atomic compare-and-sets."""

    def __init__(self, kv: KV, prefix: str, claim_ttl: float, window: float, clock: Clock) -> None:
        self._kv = kv
        self.url = kv.url
        self._prefix = prefix
        self._clock = clock
        self._claims = _LeasePool(kv, claim_ttl, clock)
        self._done = _LeasePool(kv, window, clock)

    async def _write(self, pool: _LeasePool, key: str, value: bytes, version: int) -> int | None:
        """Compare-and-set under ``pool``'s lease; the new version, or None if it lost."""
        for _ in range(2):
            lease = await pool.get()
            try:
                entry = await self._kv.compare_and_set(key, value, version=version, lease=lease)
            except LeaseExpiredError:
                pool.discard(lease)  # expired early (a clock that jumped): take a new one
                continue
            return None if entry is None else entry.version
        raise DistsysError(f"the leases of {self._kv.url} keep expiring as soon as granted")

    async def claim(self, key: str, ttl: float) -> _Found:
        full = self._prefix + key
        expires = self._clock.now() + ttl
        mine = b"%s %s %.6f" % (_CLAIMED, uuid.uuid4().hex.encode(), expires)
        version = 0
        for _ in range(_ATTEMPTS):
            won = await self._write(self._claims, full, mine, version)
            if won is not None:
                return _Found(ClaimStatus.FIRST, won)
            current = await self._kv.get(full)
            if current is None:
                version = 0  # the other claim expired a moment ago
            elif current.value == _DONE:
                return _Found(ClaimStatus.DONE)
            elif current.value == _RELEASED:
                version = current.version
            else:
                return _Found(ClaimStatus.BUSY, retry_after=self._remaining(current.value, ttl))
        return _Found(ClaimStatus.BUSY, retry_after=None)

    def _remaining(self, value: bytes, ttl: float) -> float | None:
        try:
            expires = float(value.rsplit(b" ", 1)[1])
        except (IndexError, ValueError):
            return None
        # Another process's clock may read another scale (another machine): clamp.
        return min(max(expires - self._clock.now(), 0.0), ttl * (1 + LEASE_SLACK))

    async def finish(self, key: str, version: int, window: float) -> bool:
        full = self._prefix + key
        expected = version
        for _ in range(_ATTEMPTS):
            if await self._write(self._done, full, _DONE, expected) is not None:
                return expected == version
            current = await self._kv.get(full)
            if current is not None and current.value == _DONE:
                return False
            # Our claim expired: record the work anyway, over whatever is there now.
            expected = 0 if current is None else current.version
        raise DistsysError(f"could not mark {key!r} done in {self._kv.url}: too much contention")

    async def release(self, key: str, version: int) -> None:
        await self._write(self._claims, self._prefix + key, _RELEASED, version)


# --------------------------------------------------------------------- the helper


class Claim:
    """The outcome of :meth:`Deduplicator.claim`: handle the message, or skip it.

    Finished once, from the event loop of the deduplicator that made it.

    With ``status`` FIRST, handle the message, then call :meth:`done` (or
    :meth:`release` if handling failed, so that a redelivery may try again). The other
    statuses need nothing further.

    Attributes:
        key: the deduplication key.
        status: FIRST, DONE or BUSY.
        retry_after: for BUSY, seconds until the other claim expires at the latest.
    """

    __slots__ = ("_dedup", "_settled", "_version", "key", "retry_after", "status")

    def __init__(self, dedup: Deduplicator, key: str, found: _Found) -> None:
        self._dedup = dedup
        self._version = found.version
        self._settled = found.status is not ClaimStatus.FIRST
        self.key = key
        self.status = found.status
        self.retry_after = found.retry_after

    @property
    def first(self) -> bool:
        """Whether the message is yours to handle."""
        return self.status is ClaimStatus.FIRST

    async def done(self) -> None:
        """Mark the message handled: duplicates within the window are skipped."""
        if self._settled:
            return
        self._settled = True
        dedup = self._dedup
        if not await dedup._store.finish(self.key, self._version, dedup.window):
            dedup._counts["overlaps"] += 1
            log.warning("the claim on %r expired before the handler finished", self.key)
        dedup._counts["completed"] += 1

    async def release(self) -> None:
        """Give the claim up (handling failed): a redelivery may handle it at once."""
        if self._settled:
            return
        self._settled = True
        await self._dedup._store.release(self.key, self._version)
        self._dedup._counts["released"] += 1

    def __repr__(self) -> str:
        return f"<Claim {self.key!r} {self.status.value}>"


class _Once:
    """``async with dedup.once(item) as first``: claim, then mark done or release."""

    __slots__ = ("_claim", "_dedup", "_item")

    def __init__(self, dedup: Deduplicator, item: Delivery | str) -> None:
        self._dedup = dedup
        self._item = item
        self._claim: Claim | None = None

    async def __aenter__(self) -> bool:
        claim = self._claim = await self._dedup.claim(self._item)
        if claim.status is ClaimStatus.BUSY:
            raise DuplicateInProgressError(claim.key, claim.retry_after)
        return claim.first

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        claim = self._claim
        assert claim is not None
        if exc_type is None:
            await claim.done()
            return
        try:
            await claim.release()
        except Exception:  # the claim then simply expires; the handler's error matters more
            log.warning("could not release the claim on %r", claim.key, exc_info=True)


class Deduplicator:
    """Remember handled messages for ``window`` seconds, so duplicates can be skipped.

    ::

        dedup = Deduplicator(open_kv("sqlite:///.distsys/dedup.db"), window=3600)

        async def handle(delivery: Delivery) -> None:
            async with dedup.once(delivery) as first:
                if first:
                    await charge(delivery.payload)

    or decorate the handler with ``@idempotent(dedup)``. Without a store the keys live
    in this process's memory (an LRU cache of ``maxsize`` keys: one process only, and
    lost on restart); with a :class:`~distsys.backends.KV` store (``open_kv(url)``)
    they are shared by every process that uses the store, and claims are atomic.

    Safe within one event loop. A store it is given stays the caller's to close.

    Args:
        store: a KV store to keep the keys in, or None for this process's memory.
        window: seconds a handled message is remembered (at least; with a KV store up
            to 10% longer, as keys share leases).
        claim_ttl: seconds a claim holds before it expires, so that a message whose
            handler died can be handled by a redelivery. Make it longer than a handler
            takes; a handler that outlives it may run alongside a second one.
        key: how to name a delivery (default :func:`default_key`: group/topic/id).
        maxsize: keys kept in memory (without a store); the least recently used go first.
        prefix: the key prefix in the KV store.
        clock: time source for claim expiry (default: the monotonic clock).

    Raises:
        InvalidArgumentError: a value is out of range (naming the field).
    """

    def __init__(
        self,
        store: KV | None = None,
        *,
        window: float = DEFAULT_WINDOW,
        claim_ttl: float = DEFAULT_CLAIM_TTL,
        key: Callable[[Delivery], str] = default_key,
        maxsize: int = DEFAULT_MAXSIZE,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock | None = None,
    ) -> None:
        self.window = _check_seconds("window", window)
        self.claim_ttl = _check_seconds("claim_ttl", claim_ttl)
        if not callable(key):
            raise ArgumentTypeError("key", key, "a function(delivery) -> str")
        self._key = key
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise InvalidArgumentError("maxsize", maxsize, "an int >= 1")
        if not isinstance(prefix, str):
            raise ArgumentTypeError("prefix", prefix, "a str")
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self._store: _Store
        if store is None:
            self._store = _MemoryStore(maxsize, self.clock)
        elif isinstance(store, KV):
            self._store = _KVStore(store, prefix, self.claim_ttl, self.window, self.clock)
        else:
            raise ArgumentTypeError("store", store, "None (memory) or a KV store from open_kv()")
        self._counts = dict.fromkeys(DeduplicatorStatistics.__slots__, 0)

    def key(self, item: Delivery | str) -> str:
        """Return the deduplication key of ``item`` (a str is its own key)."""
        if isinstance(item, str):
            name = item
        elif isinstance(item, Delivery):
            name = self._key(item)
        else:
            raise ArgumentTypeError("item", item, "a Delivery or a str key")
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError("key", name, "a non-empty str naming the message")
        return name

    async def claim(self, item: Delivery | str) -> Claim:
        """Claim ``item`` (a delivery or a key) for handling.

        Returns:
            A :class:`Claim`: FIRST (handle it, then ``done()``), DONE (skip it) or BUSY.

        Raises:
            BackendUnavailableError: the store cannot be reached.
        """
        key = self.key(item)
        found = await self._store.claim(key, self.claim_ttl)
        counter = {"first": "first", "done": "duplicates", "busy": "busy"}[found.status.value]
        self._counts[counter] += 1
        return Claim(self, key, found)

    def once(self, item: Delivery | str) -> contextlib.AbstractAsyncContextManager[bool]:
        """Handle ``item`` at most once per window: ``async with dedup.once(d) as first``.

        ``first`` is True if the block should handle it. Leaving the block normally marks
        it done; leaving it with an exception releases the claim (a redelivery will try
        again) and lets the exception through.

        Raises:
            DuplicateInProgressError: another handler holds the claim (on entering).
        """
        return _Once(self, item)

    def statistics(self) -> DeduplicatorStatistics:
        """Return the counters."""
        return DeduplicatorStatistics(**self._counts)

    def __repr__(self) -> str:
        store = self._store
        where = str(store.url) if isinstance(store, _KVStore) else "memory"
        return f"<Deduplicator {where} window={self.window:g}s>"


def idempotent(dedup: Deduplicator) -> Callable[[Handler], Handler]:
    """Decorate an async handler so that it runs at most once per message per window.

    A duplicate returns at once (and the consumer acks it); a message another handler is
    on raises :class:`DuplicateInProgressError` (and the consumer nacks it).
    """
    if not isinstance(dedup, Deduplicator):
        raise ArgumentTypeError("dedup", dedup, "a Deduplicator")

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def once(delivery: Delivery) -> None:
            async with dedup.once(delivery) as first:
                if first:
                    await handler(delivery)

        return once

    return decorate


def _check_seconds(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentTypeError(field, value, "a number of seconds > 0")
    if not (0 < value < float("inf")):
        raise InvalidArgumentError(field, value, "a finite number of seconds > 0")
    return float(value)
