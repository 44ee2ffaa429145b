"""The scheme table: lazy imports, unknown schemes, missing client libraries."""

from __future__ import annotations

import pytest

from distsys.backends import KV_SCHEMES, Implementation, MemoryKV, SchemeTable, open_kv
from distsys.errors import MissingDependencyError, UnknownSchemeError


def test_an_unknown_scheme_names_the_known_ones_and_the_closest() -> None:
    with pytest.raises(UnknownSchemeError) as info:
        open_kv("rediss://localhost")
    err = info.value
    assert err.scheme == "rediss"
    assert err.suggestion == "redis"
    assert err.known == ["etcd", "memory", "redis", "sqlite"]
    assert "did you mean redis://" in str(err)
    assert "etcd://, memory://, redis://, sqlite://" in str(err)


def test_no_suggestion_when_nothing_is_close() -> None:
    with pytest.raises(UnknownSchemeError) as info:
        open_kv("zookeeper://h:2181")
    assert info.value.suggestion is None


def test_a_missing_client_library_names_the_extra() -> None:
    table = SchemeTable(
        "kv", {"fancy": Implementation("distsys.backends._memory:MemoryKV", "no_such_lib", "fancy")}
    )
    with pytest.raises(MissingDependencyError, match=r"pip install 'distsys\[fancy\]'") as info:
        table.resolve("fancy://host")
    assert info.value.extra == "fancy"
    assert isinstance(info.value, ImportError)


def test_resolve_returns_the_parsed_url_and_the_class() -> None:
    url, cls = KV_SCHEMES.resolve("memory://")
    assert url.scheme == "memory"
    assert cls is MemoryKV
    assert "memory" in repr(KV_SCHEMES)
