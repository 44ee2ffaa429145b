"""The router: static and parameterised templates, converters, priorities, 404 vs 405."""

from __future__ import annotations

import re
import uuid

import pytest

from distsys.errors import InvalidArgumentError
from distsys.service._router import MethodNotAllowed, Router, parse_template


def router(*routes: tuple[str, str]) -> Router[str]:
    table: Router[str] = Router()
    for method, path in routes:
        table.add(method, parse_template(path), f"{method} {path}")
    return table


def test_static_paths_match_exactly() -> None:
    table = router(("GET", "/"), ("GET", "/orders"), ("GET", "/orders/new"))
    assert table.match("GET", "/") == ("GET /", {})
    assert table.match("GET", "/orders") == ("GET /orders", {})
    assert table.match("GET", "/orders/new") == ("GET /orders/new", {})
    assert table.match("GET", "/orders/") is None  # no silent trailing-slash matching
    assert table.match("GET", "/order") is None


def test_parameters_are_converted() -> None:
    table = router(
        ("GET", "/orders/{id:int}"),
        ("GET", "/prices/{amount:float}"),
        ("GET", "/users/{uid:uuid}"),
        ("GET", "/tags/{tag}"),
        ("GET", "/files/{rest:path}"),
    )
    assert table.match("GET", "/orders/42") == ("GET /orders/{id:int}", {"id": 42})
    assert table.match("GET", "/prices/9.5") == ("GET /prices/{amount:float}", {"amount": 9.5})
    uid = uuid.uuid4()
    assert table.match("GET", f"/users/{uid}") == ("GET /users/{uid:uuid}", {"uid": uid})
    assert table.match("GET", "/tags/blue") == ("GET /tags/{tag}", {"tag": "blue"})
    assert table.match("GET", "/files/a/b/c.txt") == (
        "GET /files/{rest:path}",
        {"rest": "a/b/c.txt"},
    )


@pytest.mark.parametrize(
    "path",
    ["/orders/abc", "/orders/-1", "/orders/+1", "/orders/1_0", "/orders/\uff14\uff12", "/orders/"],
)
def test_a_converter_that_does_not_match_means_no_route(path: str) -> None:
    assert router(("GET", "/orders/{id:int}")).match("GET", path) is None


def test_typed_parameters_win_over_str_and_literals_over_both() -> None:
    table = router(
        ("GET", "/items/{name}"),
        ("GET", "/items/{id:int}"),
        ("GET", "/items/special"),
    )
    assert table.match("GET", "/items/7") == ("GET /items/{id:int}", {"id": 7})
    assert table.match("GET", "/items/seven") == ("GET /items/{name}", {"name": "seven"})
    assert table.match("GET", "/items/special") == ("GET /items/special", {})


def test_matching_backtracks_when_a_branch_dead_ends() -> None:
    table = router(("GET", "/a/{x}/b"), ("GET", "/a/c/d"))
    assert table.match("GET", "/a/c/b") == ("GET /a/{x}/b", {"x": "c"})
    assert table.match("GET", "/a/c/d") == ("GET /a/c/d", {})


def test_a_known_path_with_another_method_is_405_with_the_allowed_methods() -> None:
    table = router(("GET", "/orders/{id:int}"), ("DELETE", "/orders/{id:int}"), ("POST", "/orders"))
    with pytest.raises(MethodNotAllowed) as caught:
        table.match("PUT", "/orders/4")
    assert caught.value.allowed == {"GET", "DELETE"}
    with pytest.raises(MethodNotAllowed) as caught:
        table.match("GET", "/orders")
    assert caught.value.allowed == {"POST"}
    assert table.match("PUT", "/nothing") is None


def test_the_method_is_looked_for_across_static_and_parameterised_routes() -> None:
    table = router(("GET", "/orders/new"), ("DELETE", "/orders/{name}"))
    assert table.match("DELETE", "/orders/new") == ("DELETE /orders/{name}", {"name": "new"})


@pytest.mark.parametrize(
    ("template", "complaint"),
    [
        ("orders", "starting with '/'"),
        ("/orders/{id:number}", "unknown converter"),
        ("/orders/id-{id}", "mixes text"),
        ("/a/{x}/{x}", "appears twice"),
        ("/files/{rest:path}/more", "must be the last"),
    ],
)
def test_malformed_templates_are_refused(template: str, complaint: str) -> None:
    with pytest.raises(InvalidArgumentError, match=complaint) as caught:
        parse_template(template)
    assert caught.value.field == "path"


def test_the_same_route_twice_is_refused_even_with_other_parameter_names() -> None:
    table = router(("GET", "/orders/{id:int}"))
    with pytest.raises(InvalidArgumentError, match=re.escape("GET /orders/{id:int}")):
        table.add("GET", parse_template("/orders/{n:int}"), "again")
    table.add("POST", parse_template("/orders/{id:int}"), "another method is fine")
