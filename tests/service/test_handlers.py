"""Handlers over real sockets: routing, typed parameters, JSON bodies and their errors."""

from __future__ import annotations

import enum
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest

from distsys.context import Context
from distsys.errors import InvalidArgumentError
from distsys.service import HTTPError, Request, Response, Service, request_id_of
from tests.service.wire import Connection, request, serving


class Line(msgspec.Struct):
    sku: str
    quantity: int


class Order(msgspec.Struct):
    customer: str
    lines: list[Line]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


def build() -> Service:
    svc = Service("orders", "1.2.0", max_body_size=1000)

    @svc.get("/hello")
    async def hello() -> dict[str, str]:
        return {"message": "hello"}

    @svc.get("/orders/{id:int}")
    async def get_order(id: int) -> dict[str, object]:
        return {"id": id, "type": type(id).__name__}

    @svc.get("/by-annotation/{n}")
    async def by_annotation(n: int) -> dict[str, int]:
        return {"n": n}

    @svc.get("/users/{uid:uuid}")
    async def get_user(uid: uuid.UUID) -> dict[str, str]:
        return {"uid": str(uid)}

    @svc.get("/colors/{color}")
    async def get_color(color: Color) -> dict[str, str]:
        return {"color": color.value}

    @svc.post("/orders", status=201)
    async def create(order: Order, request: Request, ctx: Context) -> dict[str, object]:
        return {
            "customer": order.customer,
            "units": sum(line.quantity for line in order.lines),
            "same_id": request_id_of(ctx) == request.request_id,
        }

    @svc.put("/orders/{id:int}")
    async def replace(id: int, order: Order) -> Order:
        return order

    @svc.delete("/orders/{id:int}")
    async def remove(id: int) -> None:
        return None

    @svc.patch("/orders/{id:int}")
    async def touch(id: int, note: dict[str, str] | None = None) -> dict[str, object]:
        return {"id": id, "note": note}

    @svc.get("/search")
    async def search(q: str, limit: int = 10, exact: bool = False) -> dict[str, object]:
        return {"q": q, "limit": limit, "exact": exact}

    @svc.get("/echo")
    async def echo(request: Request) -> dict[str, object]:
        return {
            "method": request.method,
            "path": request.path,
            "agent": request.headers.get("User-Agent"),
            "query": request.query,
            "tags": request.query_list("tag"),
        }

    @svc.get("/text")
    async def text() -> Response:
        return Response("plain words", 202, headers={"X-Extra": "yes"})

    @svc.get("/teapot")
    async def teapot() -> dict[str, str]:
        raise HTTPError(418, "short and stout", headers={"Retry-After": "3"})

    @svc.get("/bug")
    async def bug() -> dict[str, str]:
        raise RuntimeError("a bug in the handler")

    @svc.get("/unencodable")
    async def unencodable() -> object:
        return object()

    @svc.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    return svc


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async with serving(build()) as bound:
        yield bound


async def test_static_and_typed_routes(port: int) -> None:
    hello = await request(port, "GET", "/hello")
    assert hello.status == 200
    assert hello.headers["content-type"] == "application/json"
    assert hello.json() == {"message": "hello"}
    assert (await request(port, "GET", "/orders/42")).json() == {"id": 42, "type": "int"}
    uid = uuid.uuid4()
    assert (await request(port, "GET", f"/users/{uid}")).json() == {"uid": str(uid)}


async def test_a_template_converter_mismatch_is_404(port: int) -> None:
    reply = await request(port, "GET", "/orders/abc")
    assert reply.status == 404
    assert reply.json()["error"] == "no route for /orders/abc"


async def test_an_annotation_mismatch_is_400_naming_the_parameter(port: int) -> None:
    assert (await request(port, "GET", "/by-annotation/7")).json() == {"n": 7}
    reply = await request(port, "GET", "/by-annotation/seven")
    assert reply.status == 400
    assert reply.json()["field"] == "n"
    assert "path parameter 'n'" in reply.json()["error"]
    assert (await request(port, "GET", "/colors/red")).json() == {"color": "red"}
    assert (await request(port, "GET", "/colors/green")).json()["field"] == "color"


async def test_query_parameters_are_typed_with_defaults(port: int) -> None:
    reply = await request(port, "GET", "/search?q=shoes&limit=3&exact=true")
    assert reply.json() == {"q": "shoes", "limit": 3, "exact": True}
    assert (await request(port, "GET", "/search?q=x")).json() == {
        "q": "x",
        "limit": 10,
        "exact": False,
    }
    missing = await request(port, "GET", "/search")
    assert missing.status == 400
    assert missing.json()["field"] == "q"
    bad = await request(port, "GET", "/search?q=x&limit=many")
    assert bad.status == 400
    assert bad.json()["field"] == "limit"


async def test_a_typed_body_is_decoded_and_the_status_is_the_routes(port: int) -> None:
    order = {"customer": "ada", "lines": [{"sku": "a", "quantity": 2}, {"sku": "b", "quantity": 3}]}
    reply = await request(port, "POST", "/orders", json_body=order)
    assert reply.status == 201
    assert reply.json() == {"customer": "ada", "units": 5, "same_id": True}
    put = await request(port, "PUT", "/orders/1", json_body=order)
    assert put.json() == order  # a Struct goes back out as JSON


async def test_a_body_that_fails_validation_is_400_naming_the_field(port: int) -> None:
    wrong_type = {"customer": "ada", "lines": [{"sku": "a", "quantity": "two"}]}
    reply = await request(port, "POST", "/orders", json_body=wrong_type)
    assert reply.status == 400
    assert reply.json()["field"] == "lines[0].quantity"
    assert "Expected `int`, got `str`" in reply.json()["error"]
    missing = await request(
        port, "POST", "/orders", json_body={"customer": "ada", "lines": [{"sku": "a"}]}
    )
    assert missing.status == 400
    assert missing.json()["field"] == "lines[0].quantity"
    assert "missing required field" in missing.json()["error"]


async def test_malformed_json_is_400(port: int) -> None:
    reply = await request(port, "POST", "/orders", body=b'{"customer": "ada", ')
    assert reply.status == 400
    assert reply.json()["error"].startswith("malformed JSON")
    empty = await request(port, "POST", "/orders", body=b"")
    assert empty.status == 400
    assert empty.json()["error"] == "a JSON request body is required"


async def test_an_optional_body_may_be_left_out(port: int) -> None:
    assert (await request(port, "PATCH", "/orders/3")).json() == {"id": 3, "note": None}
    with_note = await request(port, "PATCH", "/orders/3", json_body={"why": "late"})
    assert with_note.json() == {"id": 3, "note": {"why": "late"}}


async def test_unknown_route_is_404_json_and_wrong_method_is_405(port: int) -> None:
    missing = await request(port, "GET", "/nowhere")
    assert missing.status == 404
    assert missing.headers["content-type"] == "application/json"
    body = missing.json()
    assert body["status"] == 404
    assert body["request_id"] == missing.headers["x-request-id"]
    wrong = await request(port, "POST", "/hello")
    assert wrong.status == 405
    assert wrong.headers["allow"] == "GET, HEAD"
    assert wrong.json()["allowed"] == ["GET", "HEAD"]


async def test_head_answers_like_get_without_a_body(port: int) -> None:
    conn = await Connection.open(port)
    try:
        reply = await conn.request("HEAD", "/hello")
        assert reply.status == 200
        assert reply.body == b""
        assert (await conn.request("GET", "/hello")).json() == {"message": "hello"}  # still in sync
    finally:
        await conn.close()


async def test_returning_none_is_204_and_a_response_is_sent_as_is(port: int) -> None:
    deleted = await request(port, "DELETE", "/orders/9")
    assert deleted.status == 204
    assert deleted.body == b""
    text = await request(port, "GET", "/text")
    assert text.status == 202
    assert text.body == b"plain words"
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    assert text.headers["x-extra"] == "yes"
    assert "x-request-id" in text.headers


async def test_http_error_and_unexpected_exceptions_become_json_errors(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    teapot = await request(port, "GET", "/teapot")
    assert teapot.status == 418
    assert teapot.json()["error"] == "short and stout"
    assert teapot.headers["retry-after"] == "3"
    bug = await request(port, "GET", "/bug", headers={"X-Request-ID": "trace-me"})
    assert bug.status == 500
    assert bug.json() == {"error": "internal server error", "status": 500, "request_id": "trace-me"}
    assert "a bug in the handler" not in bug.body.decode()  # no internals leak
    assert "trace-me GET /bug failed" in caplog.text  # the log line carries the request id
    assert (await request(port, "GET", "/unencodable")).status == 500


async def test_the_request_gives_headers_query_and_body(port: int) -> None:
    reply = await request(port, "GET", "/echo?tag=a&tag=b&x=1", headers={"User-Agent": "tests"})
    assert reply.json() == {
        "method": "GET",
        "path": "/echo",
        "agent": "tests",
        "query": {"tag": "a", "x": "1"},
        "tags": ["a", "b"],
    }
    assert (await request(port, "POST", "/raw", body=b"x" * 1000)).json() == {"size": 1000}


async def test_a_body_over_the_limit_is_413(port: int) -> None:
    reply = await request(port, "POST", "/raw", body=b"x" * 1001)
    assert reply.status == 413


async def test_keep_alive_connections_serve_many_requests(port: int) -> None:
    conn = await Connection.open(port)
    try:
        for n in range(20):
            assert (await conn.request("GET", f"/orders/{n}")).json()["id"] == n
    finally:
        await conn.close()


def test_handlers_must_be_async_and_fully_fillable() -> None:
    svc = Service("orders")
    with pytest.raises(TypeError, match="async def"):

        @svc.get("/sync")  # type: ignore[type-var]
        def sync() -> None:
            return None

    with pytest.raises(InvalidArgumentError, match="lacks id"):

        @svc.get("/orders/{id:int}")
        async def forgot() -> None:
            return None

    with pytest.raises(InvalidArgumentError, match="one body parameter"):

        @svc.post("/two")
        async def two(a: Order, b: Line) -> None:
            return None

    with pytest.raises(InvalidArgumentError, match="annotation"):

        @svc.get("/bare")
        async def bare(thing) -> None:  # type: ignore[no-untyped-def]
            return None

    with pytest.raises(InvalidArgumentError, match="answers it itself"):
        svc.get("/metrics")
    with pytest.raises(InvalidArgumentError, match="methods"):
        svc.route("/x", methods=["BREW"])
    with pytest.raises(InvalidArgumentError, match="status"):
        svc.get("/x", status=500)


def test_service_options_are_validated() -> None:
    with pytest.raises(InvalidArgumentError, match="name"):
        Service("no spaces please")
    with pytest.raises(InvalidArgumentError, match="ttl"):
        Service("orders", ttl=0)
    with pytest.raises(InvalidArgumentError, match="max_body_size"):
        Service("orders", max_body_size=-1)
    with pytest.raises(InvalidArgumentError, match="buckets"):
        Service("orders", buckets=[0.1, 0.05])
    with pytest.raises(InvalidArgumentError, match="weight"):
        Service("orders", weight=0)
    with pytest.raises(TypeError, match="metadata"):
        Service("orders", metadata={"replicas": 3})  # type: ignore[dict-item]
