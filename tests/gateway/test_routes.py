"""The route table: longest prefix, path boundaries, hosts, methods; rewriting; keys."""

from __future__ import annotations

from typing import Any

from distsys.gateway import RouteConfig
from distsys.gateway._routes import Route, RouteTable, key_reader, rewrite_target


def table(*routes: dict[str, Any]) -> RouteTable:
    return RouteTable(
        Route(i, RouteConfig(**{"service": "s", **spec})) for i, spec in enumerate(routes)
    )


def name(found: Route | None) -> str | None:
    return None if found is None else found.name


def test_the_longest_prefix_wins() -> None:
    routes = table({"prefix": "/"}, {"prefix": "/api"}, {"prefix": "/api/orders"})
    assert name(routes.match(b"GET", b"/api/orders/7", None)) == "/api/orders"
    assert name(routes.match(b"GET", b"/api/orders", None)) == "/api/orders"
    assert name(routes.match(b"GET", b"/api/cart", None)) == "/api"
    assert name(routes.match(b"GET", b"/api", None)) == "/api"
    assert name(routes.match(b"GET", b"/other", None)) == "/"


def test_a_prefix_matches_whole_segments() -> None:
    routes = table({"prefix": "/api"}, {"prefix": "/static/"})
    assert routes.match(b"GET", b"/apix", None) is None
    assert name(routes.match(b"GET", b"/api/", None)) == "/api"
    assert name(routes.match(b"GET", b"/static/app.js", None)) == "/static/"
    assert routes.match(b"GET", b"/static", None) is None


def test_hosts_and_methods() -> None:
    routes = table(
        {"prefix": "/api", "name": "any"},
        {"prefix": "/api", "name": "admin", "host": "Admin.Example.com"},
        {"prefix": "/w", "name": "writes", "methods": ["post", "PUT"]},
    )
    assert routes.uses_hosts
    assert name(routes.match(b"GET", b"/api/x", b"admin.example.com")) == "admin"
    assert name(routes.match(b"GET", b"/api/x", b"other.example.com")) == "any"
    assert name(routes.match(b"POST", b"/w", None)) == "writes"
    assert routes.match(b"GET", b"/w", None) is None
    assert list(routes.allowed(b"/w/1", None)) == ["POST", "PUT"]
    assert list(routes.allowed(b"/nothing", None)) == []


def test_no_route_means_no_match() -> None:
    assert table().match(b"GET", b"/", None) is None
    assert not table({"prefix": "/"}).uses_hosts


def test_upstream_targets() -> None:
    keep = Route(0, RouteConfig(prefix="/api", service="s"))
    strip = Route(0, RouteConfig(prefix="/api", service="s", strip_prefix=True))
    slash = Route(0, RouteConfig(prefix="/api/", service="s", strip_prefix=True))
    rewrite = Route(0, RouteConfig(prefix="/api/orders", service="s", rewrite="/v1/orders/"))
    assert keep.upstream_target(b"/api/x?q=1", b"/api/x") == b"/api/x?q=1"
    assert strip.upstream_target(b"/api/x?q=1", b"/api/x") == b"/x?q=1"
    assert strip.upstream_target(b"/api?q=1", b"/api") == b"/?q=1"
    assert slash.upstream_target(b"/api/x", b"/api/x") == b"/x"
    assert rewrite.upstream_target(b"/api/orders/7", b"/api/orders/7") == b"/v1/orders/7"
    assert rewrite.upstream_target(b"/api/orders", b"/api/orders") == b"/v1/orders/"
    assert rewrite_target(b"/v1", b"x", b"") == b"/v1/x"


def test_key_readers() -> None:
    fields = [b"Host", b": ", b"h", b"\r\n", b"X-User", b": ", b"ada", b"\r\n"]
    fields += [b"Cookie", b": ", b"theme=dark; session=abc", b"\r\n"]
    assert key_reader("header:x-user")(fields, b"10.0.0.1") == b"ada"
    assert key_reader("header:X-Missing")(fields, b"10.0.0.1") is None
    assert key_reader("cookie:session")(fields, b"10.0.0.1") == b"abc"
    assert key_reader("cookie:none")(fields, b"10.0.0.1") is None
    assert key_reader("ip")(fields, b"10.0.0.1") == b"10.0.0.1"
    assert key_reader("global")(fields, b"10.0.0.1") == b"*"
