"""``cached``: memoise a function or coroutine function in an LRUCache, with single flight.

A hit costs the key (the positional arguments tuple itself when there are no keyword
arguments) and a cache lookup. With a plain :class:`LRUCache` the wrapper is built by
the cache's hot paths: a C callable that answers a hit with no Python frame
(:mod:`distsys.cache._native`), or a closure with ``get``'s hit path inline
(:mod:`distsys.cache._hot`); any other cache class is asked through its own ``get``. A
miss goes to the function's :class:`~distsys.cache._flight.FlightGroup`,
which makes concurrent misses for one key share one run of the function. The one case
that cannot have concurrent misses — a plain function over a plain LRUCache, which
serves one thread — skips the flight table and just runs the function.
"""

from __future__ import annotations

import functools
import inspect
import math
import random
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Final, ParamSpec, Protocol, TypeVar, cast

from distsys.cache._flight import FlightGroup, FlightStatistics, Store
from distsys.cache._keys import KWARGS_MARK, hashkey, name_unhashable_argument
from distsys.cache._lru import MISSING, LRUCache
from distsys.cache._validate import check_jitter, check_ttl
from distsys.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["CachedFunction", "cached"]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
_NEVER: Final = math.inf


class CachedFunction(Protocol[P, R_co]):
    """What :func:`cached` returns: the function, memoised, with its cache attached.

    Call it exactly like the original (a coroutine function stays one). ``cache`` is the
    :class:`LRUCache` holding its results (hits and misses: ``cache.statistics()``;
    forget everything: ``cache.clear()``), ``statistics()`` describes its single flights,
    and ``__wrapped__`` is the original function. As safe to share as its cache: one
    thread or event loop with an :class:`LRUCache`, any with a
    :class:`ThreadSafeLRUCache` (see :func:`cached`).
    """

    @property
    def cache(self) -> LRUCache[Any, Any]:
        """The cache holding the function's results."""
        ...

    @property
    def __wrapped__(self) -> Callable[P, R_co]:
        """The original function."""
        ...

    def statistics(self) -> FlightStatistics:
        """Return a snapshot of the function's single-flight group."""
        ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Return the cached result for these arguments, computing it on a miss."""
        ...


def _is_async_callable(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - objects with an async __call__
    )


def _make_store(
    cache: LRUCache[Any, Any], ttl: float | None, jitter: float, rng: random.Random
) -> Store:
    put = cache.put
    if ttl == (cache.ttl if cache.ttl is not None else _NEVER):
        ttl = None  # the cache's own TTL: keeps a plain cache plain, a timed one inline
    if not jitter and cache.getsizeof is None:
        return put if ttl is None else functools.partial(put, ttl=ttl)
    base = ttl if ttl is not None else cache.ttl
    uniform = rng.random

    def store(key: Hashable, value: Any) -> None:
        item_ttl = ttl
        if jitter and base is not None:
            item_ttl = base * (1.0 + jitter * (2.0 * uniform() - 1.0))
        try:
            put(key, value, item_ttl)
        except InvalidArgumentError as exc:
            if exc.field != "getsizeof(value)":
                raise  # a value heavier than the whole cache is returned, just not kept

    return store


def _unhashable_key(key: Any) -> None:
    try:
        hash(key)
    except TypeError as exc:
        raise ArgumentTypeError(
            "key", key, f"a key function that returns a hashable value ({exc})"
        ) from None


def cached(
    cache: LRUCache[Any, Any],
    *,
    key: Callable[..., Hashable] = hashkey,
    ttl: float | None = None,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """Memoise a function or a coroutine function in ``cache``.

    Results are cached; for a coroutine function, the awaited result (never a
    coroutine object). Concurrent misses for one key — from threads, tasks, or tasks on
    different event loops — run the function once and share its outcome (single
    flight). An exception is not cached and reaches every caller of that flight. If the
    caller running the flight is cancelled (or interrupted), only it sees the
    cancellation: one of the callers waiting for it runs the function anew. A value the
    cache refuses as heavier than its ``maxsize`` is returned but not kept.

    The cache's concurrency contract is the function's: with an :class:`LRUCache`, call
    it from one thread, or from the tasks of one event loop (their concurrent misses
    share flights); with a :class:`ThreadSafeLRUCache`, from any threads and event
    loops. A cache shared by several functions needs ``key=`` functions that keep their
    keys apart.

    Args:
        cache: where results live; its ``maxsize``, ``ttl`` and ``on_evict`` apply.
        key: builds the cache key from the call's arguments (default :func:`hashkey`,
            which needs every argument hashable).
        ttl: time to live of each result in seconds; None uses the cache's ``ttl``.
        jitter: spread each result's TTL uniformly within ``±jitter`` of it (``0.05``:
            ±5%), so keys cached together do not all expire together. Needs a TTL.
        rng: the random source for ``jitter`` (default: a new ``random.Random()``).

    Raises:
        ArgumentTypeError: ``cache`` is not an LRUCache, ``key`` is not callable, or the
            decorated object is not callable; calling the function with an unhashable
            argument names that argument.
        InvalidArgumentError: ``ttl`` is not > 0, or ``jitter`` is outside [0, 1) or is
            set without any TTL.
    """
    if not isinstance(cache, LRUCache):
        raise ArgumentTypeError("cache", cache, "an LRUCache or a ThreadSafeLRUCache")
    if not callable(key):
        raise ArgumentTypeError("key", key, "a function (*args, **kwargs) -> hashable key")
    lifetime = check_ttl("ttl", ttl)
    spread = check_jitter(jitter)
    if spread and (lifetime if lifetime is not None else cache.ttl) in (None, _NEVER):
        raise InvalidArgumentError(
            "jitter", jitter, "0 when there is no TTL to spread: set ttl= here or on the cache"
        )
    if rng is not None and not callable(getattr(rng, "random", None)):
        raise ArgumentTypeError("rng", rng, "None or a random.Random")
    store = _make_store(cache, lifetime, spread, rng if rng is not None else random.Random())

    def decorate(fn: Callable[P, R]) -> CachedFunction[P, R]:
        if not callable(fn):
            raise ArgumentTypeError("fn", fn, "a function or coroutine function")
        flights = FlightGroup()
        wrapper = _wrap(fn, cache, key, store, flights)
        functools.update_wrapper(wrapper, fn)  # first, so fn's __dict__ cannot hide ours
        vars(wrapper).update(cache=cache, statistics=flights.statistics)
        return cast(CachedFunction[P, R], wrapper)

    return decorate


def _wrap(
    fn: Callable[..., Any],
    cache: LRUCache[Any, Any],
    make_key: Callable[..., Hashable],
    store: Store,
    flights: FlightGroup,
) -> Callable[..., Any]:
    call = flights.call
    get = cache.get
    # Only another thread can land a flight between a miss and the flight table: look
    # again before running the function only when threads may share the cache.
    shared = type(cache) is not LRUCache
    lookup = cache.peek if shared else None
    custom_key = make_key is not hashkey

    def key_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        if custom_key:
            return make_key(*args, **kwargs)
        return (*args, KWARGS_MARK, *sorted(kwargs.items()))

    def explain(key: Hashable, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if custom_key:
            _unhashable_key(key)
        else:
            name_unhashable_argument(fn, args, kwargs)

    if _is_async_callable(fn):
        acall = flights.acall
        afn = cast(Callable[..., Awaitable[Any]], fn)

        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            key = key_of(args, kwargs) if kwargs or custom_key else args
            try:
                value = get(key, MISSING)
            except TypeError:
                explain(key, args, kwargs)
                raise
            if value is not MISSING:
                return value
            return await acall(key, afn, args, kwargs, lookup, store)

        return async_wrapper

    if shared:  # a subclass may guard get() (ThreadSafeLRUCache): go through it

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = key_of(args, kwargs) if kwargs or custom_key else args
            try:
                value = get(key, MISSING)
            except TypeError:
                explain(key, args, kwargs)
                raise
            if value is not MISSING:
                return value
            return call(key, fn, args, kwargs, lookup, store)

        return wrapper

    # A plain LRUCache serves one thread: its hot paths build the wrapper, with get()'s
    # hit path inline (in C when the extension is built); a miss cannot have company, so
    # it needs no flight.
    return cache._hot.memoize(key_of, custom_key, flights.alone(fn, store), explain)
