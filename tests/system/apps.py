"""Services the system tests run as processes of their own with ``distsys service run``.

``svc`` (the service ``catalog``) is what the gateway routes to; ``front`` (a factory,
the service ``front``) calls the catalog through the registry with ``ServiceClient``,
for the two-hop deadline test. Work announces itself on stdout, which the tests read
from the process's log: ``work started GET <request id> budget=<ms>``, then ``work
done ...`` or ``work cancelled ...``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import msgspec

from distsys.errors import DeadlineExceededError
from distsys.service import HTTPError, Request, Service, ServiceClient

svc = Service("catalog", "1.0")


class Work(msgspec.Struct, forbid_unknown_fields=True):
    ms: int


class Echo(msgspec.Struct, forbid_unknown_fields=True):
    message: str


def _say(what: str, request: Request) -> None:
    budget = request.headers.get("X-Request-Timeout-Ms", "none")
    print(f"{what} {request.method} {request.request_id} budget={budget}", flush=True)


async def _work(ms: int, request: Request) -> dict[str, Any]:
    _say("work started", request)
    try:
        await asyncio.sleep(ms / 1000)
    except asyncio.CancelledError:
        _say("work cancelled", request)
        raise
    _say("work done", request)
    return {"done": ms, "served_by": svc.instance_id}


@svc.get("/items/{id:int}")
async def get_item(id: int) -> dict[str, Any]:
    return {"item": id, "served_by": svc.instance_id}


@svc.get("/slow")
async def slow_get(ms: int, request: Request) -> dict[str, Any]:
    return await _work(ms, request)


@svc.post("/slow")
async def slow_post(work: Work, request: Request) -> dict[str, Any]:
    return await _work(work.ms, request)


@svc.post("/echo")
async def echo(body: Echo) -> Echo:
    return body


def front() -> Service:
    """Return the ``front`` service: ``GET /chain?ms=N`` calls the catalog's ``/slow``."""
    made = Service("front", "1.0")
    catalog = ServiceClient("catalog", registry=os.environ["DISTSYS_REGISTRY_URL"])
    made.on_shutdown(catalog.aclose)

    @made.get("/chain")
    async def chain(ms: int, request: Request) -> Any:
        _say("chain started", request)
        try:
            reply = await catalog.get(f"/slow?ms={ms}", ctx=request.ctx)
        except asyncio.CancelledError:
            _say("chain cancelled", request)
            raise
        if reply.status == 504:
            raise DeadlineExceededError()
        if reply.status != 200:
            raise HTTPError(502, f"catalog answered {reply.status}")
        return reply.json()

    return made
