"""parse_url: one parser for every backend URL."""

from __future__ import annotations

import pytest

from distsys.backends import parse_url
from distsys.errors import ArgumentTypeError, InvalidArgumentError


def test_server_urls() -> None:
    url = parse_url("redis://user:s3cret@cache.local:6380/2?timeout=5")
    assert (url.scheme, url.host, url.port, url.path) == ("redis", "cache.local", 6380, "2")
    assert (url.username, url.password) == ("user", "s3cret")
    assert url.query["timeout"] == "5"
    assert "s3cret" not in str(url)
    assert "s3cret" not in repr(url)
    assert "***" in str(url)


def test_defaults_fill_missing_host_and_port() -> None:
    assert parse_url("etcd://").address(2379) == ("127.0.0.1", 2379)
    assert parse_url("nats://10.0.0.5").address(4222) == ("10.0.0.5", 4222)
    assert parse_url("redis://[::1]:6379").address(1) == ("::1", 6379)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("sqlite:///.distsys/registry.db", ".distsys/registry.db"),
        ("sqlite:////var/lib/distsys/q.db", "/var/lib/distsys/q.db"),
        ("sqlite:///my%20file.db", "my file.db"),
    ],
)
def test_sqlite_paths_follow_sqlalchemy(raw: str, path: str) -> None:
    url = parse_url(raw)
    assert (url.scheme, url.host, url.path) == ("sqlite", None, path)


def test_scheme_is_case_insensitive_and_memory_needs_nothing() -> None:
    assert parse_url("MEMORY://").scheme == "memory"


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ("localhost:6379", "no scheme"),
        ("redis://host:0", "1..65535"),
        ("redis://host:70000", "1..65535"),
        ("redis://host:abc", "1..65535"),
        ("redis://host:", "1..65535"),
        ("sqlite://", "no database file"),
        ("sqlite:///", "no database file"),
        ("sqlite://host/file.db", "three slashes"),
        ("1redis://x", "scheme"),
    ],
)
def test_malformed_urls_are_refused_naming_the_field(raw: str, detail: str) -> None:
    with pytest.raises(InvalidArgumentError, match=detail) as info:
        parse_url(raw)
    assert info.value.field == "url"


def test_a_non_string_is_refused() -> None:
    with pytest.raises(ArgumentTypeError, match="url"):
        parse_url(None)  # type: ignore[arg-type]
