"""HTTPClient: URLs, one pool per upstream, statistics, closing."""

from __future__ import annotations

import pytest

from distsys.errors import ArgumentTypeError, DistsysError, InvalidArgumentError
from distsys.http import HTTPClient, split_url
from tests.http.server import TestServer


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("http://example.com", ("example.com", 80, "/")),
        ("http://example.com/", ("example.com", 80, "/")),
        ("HTTP://example.com:8080/a/b?c=d#frag", ("example.com", 8080, "/a/b?c=d")),
        ("http://127.0.0.1:9?x=1", ("127.0.0.1", 9, "/?x=1")),
        ("http://[::1]:8080/p", ("::1", 8080, "/p")),
        ("http://[::1]/p", ("::1", 80, "/p")),
    ],
)
def test_split_url(url: str, parts: tuple[str, int, str]) -> None:
    assert split_url(url) == parts


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/",
        "ftp://example.com/",
        "example.com/path",
        "http:///path",
        "http://user:pw@example.com/",
        "http://example.com:/",
        "http://example.com:99999/",
        "http://example.com:8o/",
        "http://[::1]x/",
    ],
)
def test_split_url_refuses(url: str) -> None:
    with pytest.raises(InvalidArgumentError, match="url"):
        split_url(url)


def test_split_url_wants_a_str() -> None:
    with pytest.raises(ArgumentTypeError):
        split_url(b"http://x/")  # type: ignore[arg-type]


async def test_requests_by_url_and_by_parts_share_a_pool(server: TestServer) -> None:
    async with HTTPClient() as client:
        first = await client.request("GET", f"http://127.0.0.1:{server.port}/hello")
        assert await first.read() == b"hello from test"
        second = await client.request("GET", ("127.0.0.1", server.port, "/echo"))
        assert second.status == 200
        await second.read()
        assert client.pool("127.0.0.1", server.port) is client.pool("127.0.0.1", server.port)
        stats = client.statistics()
        assert (stats.connections, stats.requests, len(stats.pools)) == (1, 2, 1)
        assert stats.pools[0].reused == 1
        assert server.requests[0].headers["host"] == f"127.0.0.1:{server.port}"


async def test_one_pool_per_upstream() -> None:
    async with TestServer(name="a") as a, TestServer(name="b") as b, HTTPClient() as client:
        for server in (a, b, a):
            response = await client.request("GET", ("127.0.0.1", server.port, "/hello"))
            assert await response.read() == f"hello from {server.name}".encode()
        stats = client.statistics()
        assert {p.address: p.requests for p in stats.pools} == {a.address: 2, b.address: 1}
        assert stats.requests == 3


async def test_limits_apply_to_every_pool_and_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="max_idle"):
        HTTPClient(max_idle=-1)
    client = HTTPClient(max_connections=3)
    assert client.pool("127.0.0.1", 1)._max_connections == 3
    await client.aclose()
    assert client.closed
    with pytest.raises(DistsysError, match="closed"):
        client.pool("127.0.0.1", 2)
    assert "HTTPClient" in repr(client)
