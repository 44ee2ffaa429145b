"""Wrapping existing ASGI apps: Starlette and FastAPI get the whole envelope."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import pytest

# Starlette is not a dependency of distsys (the bench extra installs it).
pytest.importorskip("starlette")

from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route

from distsys.context import Context
from distsys.registry import open_registry
from distsys.service import Service, State, context_of, request_id_of
from tests.service.wire import WAIT, request, serving


def starlette_app(events: list[str]) -> Starlette:
    async def item(request: StarletteRequest) -> JSONResponse:
        ctx = context_of(request)
        assert isinstance(ctx, Context)
        return JSONResponse(
            {
                "id": int(request.path_params["id"]),
                "request_id": request_id_of(request),
                "header": request.headers.get("x-request-id"),
                "same_in_context": request_id_of(ctx) == request_id_of(request),
                "remaining": ctx.remaining(),
            }
        )

    async def hang(request: StarletteRequest) -> JSONResponse:
        await asyncio.Event().wait()  # never set: only the deadline ends this
        return JSONResponse({})

    async def boom(request: StarletteRequest) -> JSONResponse:
        raise RuntimeError("starlette handler bug")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("app startup")
        yield
        events.append("app shutdown")

    return Starlette(
        routes=[
            Route("/items/{id:int}", item),
            Route("/hang", hang),
            Route("/boom", boom),
        ],
        lifespan=lifespan,
    )


async def test_a_wrapped_starlette_app_gets_health_metrics_and_request_ids() -> None:
    events: list[str] = []
    svc = Service.wrap(starlette_app(events), name="catalog", version="5.0")
    async with serving(svc) as port:
        assert events == ["app startup"]
        reply = await request(port, "GET", "/items/7")
        assert reply.status == 200
        body = reply.json()
        generated = reply.headers["x-request-id"]
        assert body["id"] == 7
        assert body["request_id"] == generated
        assert body["header"] == generated  # the app sees it as a request header too
        assert body["same_in_context"] is True
        assert body["remaining"] is None
        echoed = await request(port, "GET", "/items/8", headers={"X-Request-ID": "abc-123"})
        assert echoed.headers["x-request-id"] == "abc-123"
        assert echoed.json()["request_id"] == "abc-123"
        assert (await request(port, "GET", "/healthz")).json() == {
            "status": "ok",
            "state": "running",
        }
        assert (await request(port, "GET", "/readyz")).status == 200
        missing = await request(port, "GET", "/nothing")
        assert missing.status == 404  # the app's own 404
        assert "x-request-id" in missing.headers
        text = (await request(port, "GET", "/metrics")).body.decode()
        assert 'http_requests_total{method="GET",route="/items/{id:int}",status="200"} 2.0' in text
        assert 'http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    assert events == ["app startup", "app shutdown"]
    assert svc.state is State.TERMINATED


async def test_a_wrapped_app_is_cut_off_at_its_deadline() -> None:
    svc = Service.wrap(starlette_app([]), name="catalog")
    async with serving(svc) as port:
        reply = await request(port, "GET", "/hang", headers={"X-Request-Timeout-Ms": "50"})
        assert reply.status == 504
        assert reply.json()["error"] == "deadline exceeded"
        within = await request(port, "GET", "/items/1", headers={"X-Request-Timeout-Ms": "60000"})
        assert 0 < within.json()["remaining"] <= 60
        bad = await request(port, "GET", "/items/1", headers={"X-Request-Timeout-Ms": "soon"})
        assert bad.status == 400
        assert bad.json()["field"] == "X-Request-Timeout-Ms"
        text = (await request(port, "GET", "/metrics")).body.decode()
        assert 'route="/hang",status="504"' in text


async def test_an_error_in_a_wrapped_app_is_its_own_500(caplog: pytest.LogCaptureFixture) -> None:
    svc = Service.wrap(starlette_app([]), name="catalog")
    async with serving(svc) as port:
        reply = await request(port, "GET", "/boom")
        assert reply.status == 500
        assert "x-request-id" in reply.headers
    assert "starlette handler bug" in caplog.text


async def test_a_plain_asgi_function_is_wrapped_too() -> None:
    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"  # it does not speak lifespan: tolerated
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["distsys.request_id"].encode()})

    svc = Service.wrap(app, name="bare")
    registry = open_registry("memory://")
    async with serving(svc, registry=registry) as port:
        reply = await request(port, "GET", "/anything", headers={"X-Request-ID": "r1"})
        assert reply.body == b"r1"
        assert reply.headers["x-request-id"] == "r1"
        assert len(await registry.instances("bare")) == 1
    await registry.aclose()


def test_a_wrapping_service_takes_no_routes_of_its_own() -> None:
    svc = Service.wrap(starlette_app([]), name="catalog")
    with pytest.raises(ValueError, match="wrapped app"):
        svc.get("/extra")


@pytest.mark.skipif(importlib.util.find_spec("fastapi") is None, reason="fastapi is not installed")
async def test_a_wrapped_fastapi_app_gets_the_envelope() -> None:
    from fastapi import FastAPI

    started: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started.append("fastapi startup")
        yield

    api = FastAPI(lifespan=lifespan)

    @api.get("/users/{user_id}")
    async def user(user_id: int, request: StarletteRequest) -> dict[str, object]:
        return {"user_id": user_id, "request_id": request_id_of(request)}

    @api.get("/hang")
    async def hang() -> dict[str, str]:
        await asyncio.Event().wait()
        return {}

    svc = Service.wrap(api, name="users", version="1.0")
    async with serving(svc) as port:
        assert started == ["fastapi startup"]
        reply = await request(port, "GET", "/users/3", headers={"X-Request-ID": "fa-1"})
        assert reply.json() == {"user_id": 3, "request_id": "fa-1"}
        assert reply.headers["x-request-id"] == "fa-1"
        invalid = await request(port, "GET", "/users/abc")
        assert invalid.status == 422  # FastAPI's own validation answer, untouched
        timed_out = await request(port, "GET", "/hang", headers={"X-Request-Timeout-Ms": "50"})
        assert timed_out.status == 504
        assert (await request(port, "GET", "/healthz")).status == 200
        text = (await request(port, "GET", "/metrics")).body.decode()
        assert 'http_requests_total{method="GET",route="/users/{user_id}",status="200"} 1.0' in text
        assert 'http_requests_total{method="GET",route="/users/{user_id}",status="422"} 1.0' in text
    assert svc.state is State.TERMINATED


async def test_a_service_run_by_another_asgi_server_follows_the_lifespan() -> None:
    """Under a server that is not serve() (plain uvicorn, hypercorn), lifespan drives it."""
    svc = Service("plain")
    sent: list[str] = []
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def send(message: dict[str, str]) -> None:
        sent.append(message["type"])

    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(svc({"type": "lifespan", "state": {}}, inbox.get, send))  # type: ignore[arg-type]
    await asyncio.wait_for(svc.lifecycle.wait_for(State.RUNNING), WAIT)
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, WAIT)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert svc.state is State.TERMINATED
