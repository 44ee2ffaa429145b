"""Encoding a request: the head, the framing of its body, and what is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.http import Headers, is_idempotent, prepare


async def stream() -> AsyncIterator[bytes]:
    yield b"x"


def lines(head: bytes) -> list[bytes]:
    assert head.endswith(b"\r\n\r\n")
    return head[:-4].split(b"\r\n")


def test_minimal_get() -> None:
    prepared = prepare("get", "/a?b=1", b"example:8080", None, None)
    assert prepared.head == b"GET /a?b=1 HTTP/1.1\r\nHost: example:8080\r\n\r\n"
    assert prepared.method == b"GET"
    assert prepared.body is None
    assert (prepared.idempotent, prepared.replayable, prepared.is_head) == (True, True, False)


def test_headers_in_every_accepted_form() -> None:
    forms: list[object] = [
        {"A": "1", "B": "2"},
        [("A", "1"), (b"B", b"2")],
        Headers([(b"A", b"1"), (b"B", b"2")]),
    ]
    for form in forms:
        head = prepare("GET", "/", b"h", form, None).head  # type: ignore[arg-type]
        assert lines(head) == [b"GET / HTTP/1.1", b"A: 1", b"B: 2", b"Host: h"]


def test_a_given_host_is_kept() -> None:
    head = prepare("GET", "/", b"h", {"host": "public.example"}, None).head
    assert lines(head) == [b"GET / HTTP/1.1", b"host: public.example"]


def test_bytes_body_gets_its_length_and_caller_framing_is_dropped() -> None:
    headers = {"Content-Length": "99", "Transfer-Encoding": "chunked", "X": "y"}
    prepared = prepare("POST", "/", b"h", headers, b"hello")
    assert lines(prepared.head) == [b"POST / HTTP/1.1", b"X: y", b"Host: h", b"Content-Length: 5"]
    assert prepared.length == 5
    assert not prepared.chunked


def test_empty_body_and_methods_that_expect_one() -> None:
    assert b"Content-Length: 0" in prepare("POST", "/", b"h", None, None).head
    assert b"Content-Length: 0" in prepare("PATCH", "/", b"h", None, b"").head
    assert b"Content-Length" not in prepare("GET", "/", b"h", None, b"").head
    assert b"Content-Length" not in prepare("DELETE", "/", b"h", None, None).head


def test_stream_body_is_chunked_unless_a_length_is_given() -> None:
    chunked = prepare("POST", "/", b"h", None, stream())
    assert chunked.chunked
    assert b"Transfer-Encoding: chunked" in chunked.head
    assert not chunked.replayable
    sized = prepare("POST", "/", b"h", {"content-length": "12"}, stream())
    assert not sized.chunked
    assert sized.length == 12
    assert b"Content-Length: 12" in sized.head


@pytest.mark.parametrize("length", ["-1", "1e3", " ", "0x10"])
def test_stream_body_with_a_bad_length(length: str) -> None:
    with pytest.raises(InvalidArgumentError, match="Content-Length"):
        prepare("POST", "/", b"h", {"content-length": length}, stream())


def test_connection_close_is_noticed() -> None:
    assert prepare("GET", "/", b"h", {"Connection": "Close"}, None).close
    assert not prepare("GET", "/", b"h", {"Connection": "keep-alive"}, None).close


@pytest.mark.parametrize(
    "headers",
    [
        {"X": "a\r\nInjected: yes"},
        {"X\r\nInjected": "yes"},
        {"X": "a\nb"},
        {"X": "a\rb"},
    ],
)
def test_header_injection_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidArgumentError, match="CR or LF"):
        prepare("GET", "/", b"h", headers, None)


@pytest.mark.parametrize("target", ["relative", "/a b", "/a\r\nX: y", ""])
def test_bad_targets_are_refused(target: str) -> None:
    with pytest.raises(InvalidArgumentError):
        prepare("GET", target, b"h", None, None)


def test_asterisk_target_is_accepted() -> None:
    assert prepare("OPTIONS", "*", b"h", None, None).head.startswith(b"OPTIONS * HTTP/1.1")


def test_bad_bodies_and_headers_are_refused() -> None:
    with pytest.raises(ArgumentTypeError, match="body"):
        prepare("POST", "/", b"h", None, "text")  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="headers"):
        prepare("GET", "/", b"h", [("only-a-name",)], None)  # type: ignore[list-item]
    with pytest.raises(ArgumentTypeError, match="headers"):
        prepare("GET", "/", b"h", [("X", 3)], None)  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match="Latin-1"):
        prepare("GET", "/", b"h", {"X": "snow ☃"}, None)


def test_idempotent_methods() -> None:
    for method in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE", b"get"):
        assert is_idempotent(method)
    for method in ("POST", "PATCH", "CONNECT"):
        assert not is_idempotent(method)
    assert not prepare("POST", "/", b"h", None, None).idempotent
    assert prepare("HEAD", "/", b"h", None, None).is_head
