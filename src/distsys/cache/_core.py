"""The state of an LRUCache, and everything it does off the hot paths.

:class:`LRUCore` holds the data (see :mod:`distsys.cache._lru` for the layout) and does
the bookkeeping the hot paths skip: the general ``put`` with weights, eviction callbacks
and per-item TTLs, making room, dropping expired items, and telling ``on_evict``. The hot
paths (``get``, ``put``, ``cached``'s hit) are closures built for each cache by
:mod:`distsys.cache._hot`; :class:`~distsys.cache.LRUCache` adds the public API on top.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Generic, TypeAlias, TypeVar

from distsys.cache._hot import HotPaths, bind_hot_paths
from distsys.cache._native import bind_native_hot_paths
from distsys.cache._statistics import EvictionReason
from distsys.cache._validate import (
    check_callable,
    check_clock,
    check_hashable,
    check_maxsize,
    check_ttl,
)
from distsys.clock import Clock, MonotonicClock
from distsys.errors import InvalidArgumentError

__all__ = ["GENERAL", "MISSING", "NATIVE", "PLAIN", "TIMED", "Entries", "Event", "LRUCore"]

if TYPE_CHECKING:
    from distsys.cache._clru import LRUMap

NATIVE: type[LRUMap] | None  # the C entries, or None: the pure-Python paths
try:
    from distsys.cache._clru import LRUMap as _LRUMap
except ImportError:  # built without a C compiler
    NATIVE = None
else:
    NATIVE = _LRUMap

K = TypeVar("K")
V = TypeVar("V")

MISSING: Final[Any] = object()  # "no such item": values may be None, so None can't say it
PLAIN: Final = 0  # bare values; no weights, no callback: put runs inline (_hot)
TIMED: Final = 1  # (value, deadline) entries; no weights, no callback: put runs inline (_hot)
GENERAL: Final = 2  # weights or a callback: put goes through LRUCore._put
_NEVER: Final = math.inf
_CAPACITY: Final = EvictionReason.CAPACITY
_EXPIRED: Final = EvictionReason.EXPIRED
_REPLACED: Final = EvictionReason.REPLACED

Event = tuple[Any, Any, EvictionReason]
Entries: TypeAlias = "OrderedDict[Any, Any] | LRUMap"
"""Where the items live: the C map when the extension is built, else an OrderedDict."""


class LRUCore(Generic[K, V]):
    """An LRU cache's state and slow paths; see :class:`~distsys.cache.LRUCache`."""

    __slots__ = (
        "_clock",
        "_data",
        "_evictions",
        "_expirations",
        "_getsizeof",
        "_hot",
        "_lifetime",
        "_lookup",
        "_maxsize",
        "_mode",
        "_now",
        "_on_evict",
        "_timed",
        "_touch",
        "_ttl",
        "_weight",
        "_weights",
    )

    def __init__(
        self,
        maxsize: int,
        *,
        ttl: float | None = None,
        getsizeof: Callable[[V], int] | None = None,
        on_evict: Callable[[K, V, EvictionReason], object] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._maxsize = check_maxsize(maxsize)
        lifetime = check_ttl("ttl", ttl)
        self._ttl = None if lifetime is None or lifetime == _NEVER else lifetime
        self._lifetime = _NEVER if self._ttl is None else self._ttl
        check_callable("getsizeof", getsizeof, "None or a function value -> int >= 0")
        check_callable("on_evict", on_evict, "None or a function (key, value, reason)")
        self._getsizeof = getsizeof
        self._on_evict = on_evict
        self._clock = check_clock(clock)
        # time.monotonic itself saves a Python call per TTL check on the default clock.
        self._now: Callable[[], float] = (
            time.monotonic if type(self._clock) is MonotonicClock else self._clock.now
        )
        native = NATIVE
        # V, or (V, deadline) when timed; least recently used first.
        self._data: Entries = native(self._maxsize, MISSING) if native else OrderedDict()
        self._lookup: Callable[[K, Any], Any] = self._data.get
        self._touch: Callable[[K], None] = self._data.move_to_end
        self._weights: dict[K, int] | None = {} if getsizeof is not None else None
        self._weight = 0
        self._timed = self._ttl is not None
        self._mode = self._base_mode()
        # The slow paths' counts; the hot paths count in their own cells (counts()).
        self._evictions = self._expirations = 0
        data = self._data
        self._hot: HotPaths = (
            bind_hot_paths(self, MISSING)
            if isinstance(data, OrderedDict)
            else bind_native_hot_paths(self, data, MISSING)
        )

    def _set_timed(self, timed: bool) -> None:
        """Record whether entries are ``(value, deadline)`` pairs, here and in ``_hot``."""
        self._timed = timed
        self._mode = self._base_mode()
        self._hot.set_timed(timed)

    def _base_mode(self) -> int:
        if self._weights is not None or self._on_evict is not None:
            return GENERAL
        return TIMED if self._timed else PLAIN

    def _item_ttl(self, ttl: float) -> float:
        lifetime = check_ttl("ttl", ttl)
        assert lifetime is not None
        return lifetime

    def _time_entries(self) -> None:
        """Switch a plain cache to ``(value, deadline)`` entries, for a per-item TTL."""
        data = self._data
        for key, value in list(data.items()):
            data[key] = (value, _NEVER)  # an existing key keeps its place
        self._set_timed(True)

    def _put(self, key: K, value: V, ttl: float | None = None) -> None:
        lifetime = self._lifetime if ttl is None else self._item_ttl(ttl)
        weights = self._weights
        weight = self._weigh(value) if weights is not None else 1  # may refuse: no change yet
        data = self._data
        try:
            old = data.get(key, MISSING)
        except TypeError:
            check_hashable(key)
            raise
        if ttl is not None and not self._timed:
            self._time_entries()
            if old is not MISSING:
                old = (old, _NEVER)
        timed = self._timed
        now = self._now() if timed else 0.0
        events: list[Event] | None = [] if self._on_evict is not None else None
        if old is not MISSING:
            self._touch(key)
            reason = _REPLACED
            if timed:
                old, deadline = old
                if deadline <= now:
                    self._expirations += 1
                    reason = _EXPIRED
            if weights is not None:
                self._weight -= weights[key]
            if events is not None:
                events.append((key, old, reason))
        data[key] = (value, now + lifetime) if timed else value
        if weights is not None:
            weights[key] = weight
            self._weight += weight
        if (self._weight if weights is not None else len(data)) > self._maxsize:
            self._make_room(now, events)
        if events:
            self._notify(events)

    def _weigh(self, value: V) -> int:
        assert self._getsizeof is not None
        weight = self._getsizeof(value)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise InvalidArgumentError(
                "getsizeof",
                self._getsizeof,
                "a function returning an int >= 0",
                detail=f"it returned {weight!r}",
            )
        if weight > self._maxsize:
            raise InvalidArgumentError(
                "getsizeof(value)",
                weight,
                f"a weight <= maxsize={self._maxsize}",
                detail="a value heavier than the whole cache is refused",
            )
        return weight

    def _make_room(self, now: float, events: list[Event] | None) -> None:
        data = self._data
        weights = self._weights
        timed = self._timed
        # The item just stored is the most recent and fits alone: the loop stops before it.
        while (self._weight if weights is not None else len(data)) > self._maxsize:
            key, value = data.popitem(False)
            reason = _CAPACITY
            if timed:
                value, deadline = value
                if deadline <= now:
                    reason = _EXPIRED
            if weights is not None:
                self._weight -= weights.pop(key)
            if reason is _EXPIRED:
                self._expirations += 1
            else:
                self._evictions += 1
            if events is not None:
                events.append((key, value, reason))

    def _drop_expired(self, key: K) -> None:
        value = self._remove(key)
        self._expirations += 1
        if self._on_evict is not None:
            self._on_evict(key, value, _EXPIRED)

    def _remove(self, key: K) -> V:
        value = self._data.pop(key)
        if self._weights is not None:
            self._weight -= self._weights.pop(key)
        return value[0] if self._timed else value  # type: ignore[no-any-return]

    def _notify(self, events: list[Event]) -> None:
        callback = self._on_evict
        assert callback is not None
        first: Exception | None = None
        for key, value, reason in events:
            try:
                callback(key, value, reason)
            except Exception as exc:  # the others still hear about theirs
                if first is None:
                    first = exc
        if first is not None:
            raise first
