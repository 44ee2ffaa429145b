"""cached(): memoisation of functions and coroutine functions, TTLs, jitter, bad input."""

from __future__ import annotations

import inspect
import math
import random
from typing import Any

import pytest

from distsys.cache import LRUCache, ThreadSafeLRUCache, cached
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.testing import ManualClock


class Uniforms:
    """An rng= stand-in that returns the given draws in turn."""

    def __init__(self, *draws: float) -> None:
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0)


@pytest.fixture(params=[LRUCache, ThreadSafeLRUCache])
def cache_class(request: pytest.FixtureRequest) -> type[LRUCache[Any, Any]]:
    return request.param  # type: ignore[no-any-return]


def test_results_are_cached_per_arguments(cache_class: type[LRUCache[Any, Any]]) -> None:
    calls = []

    @cached(cache_class(10))
    def add(a: int, b: int = 0) -> int:
        calls.append((a, b))
        return a + b

    assert add(1, 2) == 3
    assert add(1, 2) == 3
    assert add(1, b=2) == 3  # spelled differently: a different key, like lru_cache
    assert add(b=2, a=1) == 3
    assert add(a=1, b=2) == 3  # keyword order does not matter
    assert calls == [(1, 2), (1, 2), (1, 2)]
    stats = add.cache.statistics()
    assert (stats.hits, stats.misses, stats.size) == (2, 3, 3)


def test_the_wrapper_looks_like_the_function() -> None:
    def area(r: float) -> float:
        """Return the area of a circle."""
        return math.pi * r * r

    cache = LRUCache[Any, Any](4)
    wrapped = cached(cache)(area)
    assert wrapped.__wrapped__ is area
    assert wrapped.__name__ == "area"
    assert wrapped.__doc__ == "Return the area of a circle."
    assert wrapped.cache is cache
    assert wrapped.statistics().calls == 0
    assert inspect.signature(wrapped) == inspect.signature(area)


def test_a_custom_key_function() -> None:
    calls = []

    @cached(LRUCache(10), key=lambda user, request_id: user)
    def profile(user: str, request_id: int) -> str:
        calls.append(request_id)
        return f"profile of {user}"

    assert profile("ada", 1) == profile("ada", 2) == "profile of ada"
    assert calls == [1]
    assert profile.cache.peek("ada") == "profile of ada"


def test_methods_are_cached_per_instance() -> None:
    class Circle:
        def __init__(self, r: float) -> None:
            self.r = r

        @cached(LRUCache(10))
        def area(self, scale: float = 1.0) -> float:
            return math.pi * self.r * self.r * scale

    a, b = Circle(1), Circle(2)
    assert a.area() == math.pi
    assert b.area() == 4 * math.pi
    assert Circle.area.cache.statistics().size == 2


def test_none_results_are_cached_too() -> None:
    calls = []

    @cached(LRUCache(10))
    def nothing(n: int) -> None:
        calls.append(n)

    nothing(1)
    nothing(1)
    assert calls == [1]


async def test_coroutine_functions_cache_results_not_coroutines() -> None:
    calls = []

    @cached(LRUCache(10))
    async def double(n: int) -> int:
        calls.append(n)
        return 2 * n

    assert inspect.iscoroutinefunction(double)
    assert await double(21) == 42
    assert await double(21) == 42
    assert calls == [21]
    assert double.cache.peek((21,)) == 42


async def test_a_thread_safe_cache_serves_coroutines_too() -> None:
    @cached(ThreadSafeLRUCache(10), key=lambda n: n)
    async def double(n: int) -> int:
        return 2 * n

    assert [await double(n) for n in (1, 1, 2)] == [2, 2, 4]
    assert double.cache.statistics().hits == 1


def test_exceptions_are_not_cached(cache_class: type[LRUCache[Any, Any]]) -> None:
    attempts = []

    @cached(cache_class(10))
    def flaky(n: int) -> int:
        attempts.append(n)
        if len(attempts) == 1:
            raise ConnectionError("try again")
        return n

    with pytest.raises(ConnectionError):
        flaky(5)
    assert flaky(5) == 5
    assert flaky(5) == 5
    assert attempts == [5, 5]


# -- time to live ----------------------------------------------------------------------


def test_ttl_expires_results(cache_class: type[LRUCache[Any, Any]]) -> None:
    clock = ManualClock()
    calls = []

    @cached(cache_class(10, clock=clock), ttl=5)
    def now_plus(n: int) -> float:
        calls.append(n)
        return clock.now() + n

    assert now_plus(1) == 1.0
    clock.advance(4.9)
    assert now_plus(1) == 1.0
    clock.advance(0.1)
    assert now_plus(1) == 6.0
    assert calls == [1, 1]
    stats = now_plus.cache.statistics()
    assert (stats.hits, stats.misses, stats.expirations) == (1, 2, 1)


def test_the_caches_own_ttl_applies_by_default(cache_class: type[LRUCache[Any, Any]]) -> None:
    clock = ManualClock()

    @cached(cache_class(10, ttl=2, clock=clock))
    def stamp(n: int) -> float:
        return clock.now()

    assert stamp(1) == 0.0
    clock.advance(1)
    assert stamp(1) == 0.0
    clock.advance(1)
    assert stamp(1) == 2.0


def test_a_ttl_equal_to_the_caches_is_the_same_thing() -> None:
    clock = ManualClock()
    cache = LRUCache[Any, Any](10, ttl=2, clock=clock)
    stamp = cached(cache, ttl=2)(clock.now)
    assert stamp() == 0.0
    clock.advance(2)
    assert stamp() == 2.0


@pytest.mark.parametrize(("draw", "lifetime"), [(0.0, 9.0), (0.5, 10.0), (0.75, 10.5)])
def test_jitter_spreads_each_ttl_uniformly(draw: float, lifetime: float) -> None:
    clock = ManualClock()
    calls = []

    @cached(LRUCache(10, clock=clock), ttl=10, jitter=0.1, rng=Uniforms(draw))  # type: ignore[arg-type]
    def load(key: str) -> str:
        calls.append(key)
        return key

    load("a")
    clock.advance(lifetime - 0.001)
    load("a")
    assert len(calls) == 1
    clock.advance(0.001)
    with pytest.raises(IndexError):  # expired exactly then: it runs again and draws again
        load("a")


def test_jitter_uses_the_caches_ttl_when_none_is_given() -> None:
    clock = ManualClock()

    @cached(LRUCache(100, ttl=100, clock=clock), jitter=0.5, rng=random.Random(7))
    def load(key: int) -> int:
        return key

    for key in range(50):
        load(key)
    clock.advance(49.999)  # every TTL is within 100 ± 50%
    assert all((key,) in load.cache for key in range(50))
    clock.advance(50.001)
    alive = sum((key,) in load.cache for key in range(50))
    assert 10 < alive < 40  # spread out: about half are past 100 s
    clock.advance(50)
    assert not any((key,) in load.cache for key in range(50))


def test_an_infinite_ttl_keeps_a_plain_cache_plain() -> None:
    clock = ManualClock()
    cache = LRUCache[Any, Any](10, clock=clock)
    stamp = cached(cache, ttl=math.inf)(clock.now)
    assert stamp() == 0.0
    clock.advance(1e9)
    assert stamp() == 0.0
    assert not cache._timed


def test_a_ttl_on_a_plain_cache_makes_it_timed() -> None:
    clock = ManualClock()
    cache = LRUCache[Any, Any](10, clock=clock)
    cache.put("other", 1)

    @cached(cache, ttl=1)
    def load(key: int) -> int:
        return key

    load(1)
    clock.advance(1)
    assert cache.items() == [("other", 1)]


# -- weights ---------------------------------------------------------------------------


def test_a_result_heavier_than_the_cache_is_returned_but_not_kept() -> None:
    calls = []

    @cached(LRUCache(4, getsizeof=len))
    def text(n: int) -> str:
        calls.append(n)
        return "x" * n

    assert text(10) == "x" * 10
    assert text(10) == "x" * 10
    assert calls == [10, 10]
    assert text(2) == text(2) == "xx"
    assert calls == [10, 10, 2]


def test_a_broken_getsizeof_is_reported() -> None:
    @cached(LRUCache(4, getsizeof=lambda value: -1))
    def text(n: int) -> str:
        return "x" * n

    with pytest.raises(InvalidArgumentError) as info:
        text(1)
    assert info.value.field == "getsizeof"


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"cache": {}}, ArgumentTypeError, "cache"),
        ({"key": "name"}, ArgumentTypeError, "key"),
        ({"key": None}, ArgumentTypeError, "key"),
        ({"ttl": 0}, InvalidArgumentError, "ttl"),
        ({"ttl": -5}, InvalidArgumentError, "ttl"),
        ({"ttl": "5"}, ArgumentTypeError, "ttl"),
        ({"ttl": 5, "jitter": 1.0}, InvalidArgumentError, "jitter"),
        ({"ttl": 5, "jitter": -0.1}, InvalidArgumentError, "jitter"),
        ({"ttl": 5, "jitter": math.nan}, InvalidArgumentError, "jitter"),
        ({"ttl": 5, "jitter": "0.1"}, ArgumentTypeError, "jitter"),
        ({"jitter": 0.1}, InvalidArgumentError, "jitter"),  # no TTL to spread
        ({"ttl": math.inf, "jitter": 0.1}, InvalidArgumentError, "jitter"),
        ({"ttl": 5, "jitter": 0.1, "rng": 42}, ArgumentTypeError, "rng"),
    ],
)
def test_bad_arguments_fail_at_decoration_naming_the_field(
    kwargs: dict[str, Any], error: type[Exception], field: str
) -> None:
    kwargs = dict(kwargs)  # the parameters are shared by every run of this test
    cache = kwargs.pop("cache", LRUCache(4))
    with pytest.raises(error) as info:
        cached(cache, **kwargs)
    assert type(info.value) is error
    assert info.value.field == field  # type: ignore[attr-defined]
    assert "expected" in str(info.value)


def test_decorating_something_not_callable_fails() -> None:
    with pytest.raises(ArgumentTypeError) as info:
        cached(LRUCache(4))(42)  # type: ignore[arg-type]
    assert info.value.field == "fn"


@pytest.mark.parametrize("cache_class", [LRUCache, ThreadSafeLRUCache])
@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda f: f([1, 2]), "items[0]"),
        (lambda f: f(1, {2}), "items[1]"),
        (lambda f: f(1, flag={}), "flag"),
        (lambda f: f((1, [2])), "items[0]"),
    ],
)
def test_an_unhashable_argument_is_named(
    cache_class: type[LRUCache[Any, Any]], call: Any, field: str
) -> None:
    @cached(cache_class(4))
    def count(*items: Any, flag: Any = None) -> int:
        return len(items)

    with pytest.raises(ArgumentTypeError) as info:
        call(count)
    assert isinstance(info.value, TypeError)
    assert info.value.field == field
    assert "key=" in str(info.value)


def test_an_unhashable_argument_is_named_by_its_parameter() -> None:
    @cached(LRUCache(4))
    def total(numbers: list[int], scale: int = 1) -> int:
        return sum(numbers) * scale

    with pytest.raises(ArgumentTypeError, match=r"^numbers=\[1, 2\] is not accepted"):
        total([1, 2])


async def test_an_unhashable_argument_is_named_for_coroutines_too() -> None:
    @cached(LRUCache(4))
    async def total(numbers: list[int]) -> int:
        return sum(numbers)

    with pytest.raises(ArgumentTypeError) as info:
        await total([1, 2])
    assert info.value.field == "numbers"


def test_a_key_function_returning_something_unhashable_is_named() -> None:
    @cached(LRUCache(4), key=lambda numbers: numbers)
    def total(numbers: list[int]) -> int:
        return sum(numbers)

    with pytest.raises(ArgumentTypeError) as info:
        total([1, 2])
    assert info.value.field == "key"
    assert "key function" in str(info.value)
