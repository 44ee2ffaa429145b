"""Headers: case-insensitive lookups over the raw pairs."""

from __future__ import annotations

import pytest

from distsys.http import Headers


def test_lookups_ignore_case_and_keep_order() -> None:
    headers = Headers(
        [(b"Content-Type", b"text/plain"), (b"Set-Cookie", b"a"), (b"set-cookie", b"b")]
    )
    assert headers.get("content-type") == "text/plain"
    assert headers.get(b"CONTENT-TYPE") == "text/plain"
    assert headers["Content-Type"] == "text/plain"
    assert headers.get_all("SET-COOKIE") == ["a", "b"]
    assert headers.get("missing") is None
    assert headers.get("missing", "default") == "default"
    assert "set-cookie" in headers
    assert "missing" not in headers
    assert 3 not in headers
    assert len(headers) == 3
    assert headers.items() == [
        ("Content-Type", "text/plain"),
        ("Set-Cookie", "a"),
        ("set-cookie", "b"),
    ]
    with pytest.raises(KeyError):
        headers["missing"]


def test_values_are_latin1() -> None:
    headers = Headers([(b"X", "caf\xe9".encode("latin-1"))])
    assert headers["x"] == "café"


def test_equality_ignores_name_case_only() -> None:
    assert Headers([(b"A", b"1")]) == Headers([(b"a", b"1")])
    assert Headers([(b"A", b"1")]) != Headers([(b"A", b"2")])
    assert Headers() == Headers([])
    assert Headers().__eq__(object()) is NotImplemented
    assert "A" in repr(Headers([(b"A", b"1")]))
