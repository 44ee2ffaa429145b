"""The C entries (``_clru.c``): built, and safe when Python code runs inside them."""

from __future__ import annotations

import gc
import importlib.util
import pickle
import threading
import weakref
from typing import Any

import pytest

from distsys.cache import LRUCache, cached


@cached(LRUCache(8))
def module_level_square(x: int) -> int:
    return x * x


def test_the_c_extension_is_built() -> None:
    # A development install builds it (pyproject's ext-modules); without a C compiler
    # the build goes on and the caches run on OrderedDicts, as the "python" runs test.
    spec = importlib.util.find_spec("distsys.cache._clru")
    assert spec is not None, "reinstall with a C compiler: pip install -e ."


def test_the_cache_runs_on_the_build_under_test(entries_build: str) -> None:
    cache = LRUCache[str, int](2)
    assert (type(cache._data).__name__ == "LRUMap") is (entries_build == "c")


def test_get_and_put_take_their_arguments_by_name() -> None:
    cache = LRUCache[str, int](2)
    cache.put(key="a", value=1)
    cache.put("b", value=2, ttl=None)
    assert cache.get(key="a") == 1
    assert cache.get("zz", default=7) == 7
    with pytest.raises(TypeError):
        cache.get()  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        cache.put("a", 1, None, 4)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        cache.get("a", nope=1)  # type: ignore[call-overload]


class Meddler:
    """A key whose __eq__ changes the cache it is looked up in."""

    def __init__(self, name: str, cache: LRUCache[Any, Any]) -> None:
        self.name = name
        self.cache = cache
        self.armed = False

    def __hash__(self) -> int:
        return 42  # every Meddler collides, so lookups call __eq__

    def __eq__(self, other: object) -> bool:
        if self.armed:
            self.armed = False
            self.cache.clear()
            for i in range(5):
                self.cache.put(("filler", i), i)
        return isinstance(other, Meddler) and other.name == self.name


@pytest.mark.parametrize("op", ["get", "put", "pop", "peek", "contains"])
def test_a_key_that_changes_the_cache_during_a_lookup_cannot_corrupt_it(op: str) -> None:
    cache = LRUCache[Any, Any](3)
    a, b = Meddler("a", cache), Meddler("b", cache)
    cache.put(a, 1)
    cache.put(b, 2)
    b.armed = True
    probe = Meddler("b", cache)
    probe.armed = True
    if op == "get":
        cache.get(probe)
    elif op == "put":
        cache.put(probe, 3)
    elif op == "pop":
        cache.pop(probe, None)
    elif op == "peek":
        cache.peek(probe)
    else:
        _ = probe in cache
    # Whatever the outcome, the cache is a consistent LRU of at most 3 items.
    assert len(cache) <= 3
    keys = list(cache)
    assert len(keys) == len(set(map(id, keys))) == len(cache.items())
    for i in range(10):
        cache.put(("after", i), i)
    assert list(cache) == [("after", 7), ("after", 8), ("after", 9)]
    assert cache.statistics().size == 3


class Haunted:
    """A value whose finalizer puts into the cache that lets it go."""

    def __init__(self, cache: LRUCache[Any, Any], tag: int) -> None:
        self.cache = cache
        self.tag = tag

    def __del__(self) -> None:
        self.cache.put(("ghost", self.tag), self.tag)


def test_finalizers_that_use_the_cache_while_it_evicts_are_safe() -> None:
    cache = LRUCache[Any, Any](4)
    for i in range(50):
        cache.put(i, Haunted(cache, i))
    cache.clear()
    assert len(cache) <= 4
    cache.put("x", 1)
    assert cache.get("x") == 1


def test_a_cycle_through_a_cache_is_collected() -> None:
    class Holder:
        pass

    holder = Holder()
    cache = LRUCache[str, Any](4)
    cache.put("me", holder)
    holder.cache = cache  # type: ignore[attr-defined]  # holder -> cache -> holder
    alive = weakref.ref(holder)
    del holder, cache
    gc.collect()
    assert alive() is None


def test_a_memoised_function_is_collected_with_its_cache() -> None:
    def square(x: int) -> int:
        return x * x

    memo = cached(LRUCache[Any, Any](4))(square)
    memo(3)
    alive = weakref.ref(memo)
    del memo
    gc.collect()
    assert alive() is None


def test_a_memoised_method_binds_like_a_function() -> None:
    class Squarer:
        def __init__(self, offset: int) -> None:
            self.offset = offset

        @cached(LRUCache[Any, Any](8))
        def square(self, x: int) -> int:
            return x * x + self.offset

    one, two = Squarer(1), Squarer(2)
    assert one.square(3) == 10
    assert two.square(3) == 11
    assert Squarer.square(one, 3) == 10
    assert Squarer.square.cache.statistics().hits == 1  # type: ignore[attr-defined]


def test_a_module_level_memoised_function_pickles_by_name() -> None:
    assert module_level_square(4) == 16
    assert pickle.loads(pickle.dumps(module_level_square)) is module_level_square
    assert module_level_square.__name__ == "module_level_square"
    assert "module_level_square" in repr(module_level_square)


def test_threads_hammering_one_plain_cache_never_crash_it() -> None:
    # LRUCache is not thread-safe (counts may be off): but it must stay memory-safe.
    cache = LRUCache[int, int](64)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(20_000):
                key = (i * seed) % 200
                if cache.get(key) is None:
                    cache.put(key, i)
                if i % 97 == 0:
                    cache.pop(key, None)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in (1, 3, 7, 11)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(cache) <= 64
    assert len(list(cache)) == len(cache)


class BadHash:
    """An argument whose hash fails with an error other than TypeError."""

    def __hash__(self) -> int:
        raise ValueError("no hash today")


def test_a_hash_that_fails_otherwise_propagates_untouched() -> None:
    calls: list[object] = []

    @cached(LRUCache[Any, Any](4))
    def remember(x: object) -> object:
        calls.append(x)
        return x

    cache = LRUCache[Any, int](4)
    with pytest.raises(ValueError, match="no hash today"):
        remember(BadHash())
    with pytest.raises(ValueError, match="no hash today"):
        cache.get(BadHash())
    assert calls == []
    assert cache.statistics().misses == 0
