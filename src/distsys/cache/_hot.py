"""An LRUCache's hot paths — ``get``, ``put`` and ``cached``'s hit — in pure Python.

These closures run when the C extension (``_clru.c``, :mod:`distsys.cache._native`) is
not built; they are the reference the C paths follow, and ``tests/cache`` runs on both.

Why closures
------------
Each cache gets a ``get`` and a ``put`` made for its configuration when it is built, as
closures over the pieces they use (the ``OrderedDict``'s bound ``get``,
``move_to_end`` and ``popitem``, ``maxsize``, the clock). CPython reads a closure
variable (``LOAD_DEREF``) faster than an attribute of ``self``, and calls a plain
function faster than a bound method; :class:`~distsys.cache.LRUCache` stores the two
closures as instance attributes, which shadow its methods. On the benchmark trace this
ran 12-15% faster than the same code as methods.

The counters bumped on every operation (hits, misses, and the evictions and expirations
of the inline puts) are cells of these closures too: incrementing a cell is the cheapest
counter CPython offers. The slow paths stay methods of :class:`LRUCore` and count on the
core; ``statistics()`` adds the two (``counts()``).

Which shapes
------------
* ``get``: one for caches whose every entry is ``(value, deadline)`` (a ``ttl``), one
  for the others, which checks a ``timed`` cell because a per-item TTL turns a plain
  cache's entries into pairs (``LRUCore._time_entries``) and ``clear`` turns them back.
* ``put``: inline for bare values and for pairs; a cache with weights or ``on_evict``
  uses ``LRUCore._put``.
* ``memoize``: ``cached``'s wrapper over a plain :class:`LRUCache`, with ``get``'s hit
  path inline, so a hit runs one Python frame and counts in the same cells.

Every shape must behave exactly like the others; ``tests/cache/test_lru_model.py``
checks each against one reference model. A pre-bound ``cache.get`` stays valid across
a switch between bare values and pairs: the switch flips the cell, not the function.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, NamedTuple

from distsys.cache._validate import check_hashable

if TYPE_CHECKING:
    from distsys.cache._core import LRUCore

__all__ = ["HotPaths", "bind_hot_paths"]

KeyOf = Callable[[tuple[Any, ...], dict[str, Any]], Hashable]
Miss = Callable[[Hashable, tuple[Any, ...], dict[str, Any]], Any]
Explain = Callable[[Hashable, tuple[Any, ...], dict[str, Any]], None]


class HotPaths(NamedTuple):
    """One cache's fast paths, and access to the counters they keep."""

    get: Callable[..., Any]
    """``get(key, default=None)``."""
    put: Callable[..., None]
    """``put(key, value, ttl=None)``."""
    memoize: Callable[[KeyOf, bool, Miss, Explain], Callable[..., Any]]
    """``memoize(key_of, custom, miss, explain)``: ``cached``'s wrapper."""
    counts: Callable[[], tuple[int, int, int, int]]
    """``counts()``: the cells' hits, misses, evictions and expirations."""
    set_timed: Callable[[bool], None]
    """``set_timed(flag)``: tell the closures whether entries are ``(value, deadline)``."""


def bind_hot_paths(core: LRUCore[Any, Any], missing: Any) -> HotPaths:
    """Build ``core``'s hot paths; ``missing`` is the "no such item" sentinel."""
    data = core._data
    lookup = data.get
    touch = data.move_to_end
    popitem = data.popitem
    maxsize = core._maxsize
    now = core._now
    lifetime = core._lifetime
    item_ttl = core._item_ttl
    drop_expired = core._drop_expired
    time_entries = core._time_entries
    always_timed = core._ttl is not None
    timed = core._timed
    hits = misses = evictions = expirations = 0

    def get_either(key: Any, default: Any = None) -> Any:
        nonlocal hits, misses
        try:
            value = lookup(key, missing)
        except TypeError:
            check_hashable(key)
            raise
        if value is missing:
            misses += 1
            return default
        if timed:
            if value[1] <= now():
                misses += 1
                drop_expired(key)
                return default
            value = value[0]
        touch(key)
        hits += 1
        return value

    def get_timed(key: Any, default: Any = None) -> Any:
        nonlocal hits, misses
        try:
            entry = lookup(key, missing)
        except TypeError:
            check_hashable(key)
            raise
        if entry is missing:
            misses += 1
            return default
        if entry[1] <= now():
            misses += 1
            drop_expired(key)
            return default
        touch(key)
        hits += 1
        return entry[0]

    def put_bare(key: Any, value: Any, ttl: float | None = None) -> None:
        nonlocal evictions
        if ttl is None and not timed:
            try:
                if key in data:
                    touch(key)
            except TypeError:
                check_hashable(key)
                raise
            data[key] = value
            if len(data) > maxsize:
                popitem(False)
                evictions += 1
            return
        if not timed:  # the first per-item TTL: entries become (value, deadline) pairs
            item_ttl(ttl)  # type: ignore[arg-type]  # refuse a bad ttl before any change
            time_entries()
        put_pair(key, value, ttl)

    def put_pair(key: Any, value: Any, ttl: float | None = None) -> None:
        nonlocal evictions, expirations
        t = now()
        deadline = t + (lifetime if ttl is None else item_ttl(ttl))
        try:
            old = lookup(key, missing)
        except TypeError:
            check_hashable(key)
            raise
        if old is not missing:
            touch(key)
            if old[1] <= t:
                expirations += 1
        data[key] = (value, deadline)
        if len(data) > maxsize:
            if popitem(False)[1][1] <= t:
                expirations += 1
            else:
                evictions += 1

    def memoize(key_of: KeyOf, custom: bool, miss: Miss, explain: Explain) -> Callable[..., Any]:
        def missed(key: Hashable, entry: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            nonlocal hits, misses
            if entry is missing:
                misses += 1
            elif entry[1] > now():  # a live (value, deadline) pair
                touch(key)
                hits += 1
                return entry[0]
            else:
                misses += 1
                drop_expired(key)
            return miss(key, args, kwargs)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal hits
            key = key_of(args, kwargs) if kwargs or custom else args
            try:
                value = lookup(key, missing)
            except TypeError:
                explain(key, args, kwargs)
                raise
            if value is not missing and not timed:
                touch(key)
                hits += 1
                return value
            return missed(key, value, args, kwargs)

        def timed_wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal hits
            key = key_of(args, kwargs) if kwargs or custom else args
            try:
                entry = lookup(key, missing)
            except TypeError:
                explain(key, args, kwargs)
                raise
            if entry is not missing and entry[1] > now():
                touch(key)
                hits += 1
                return entry[0]
            return missed(key, entry, args, kwargs)

        return timed_wrapper if always_timed else wrapper

    def counts() -> tuple[int, int, int, int]:
        return hits, misses, evictions, expirations

    def set_timed(flag: bool) -> None:
        nonlocal timed
        timed = flag

    if core._weights is not None or core._on_evict is not None:
        put: Callable[..., None] = core._put  # weights or callback: the general path
    else:
        put = put_pair if always_timed else put_bare
    get = get_timed if always_timed else get_either
    return HotPaths(get, put, memoize, counts, set_timed)
