"""The orders service: places an order by reserving its lines in the inventory service.

It finds the inventory through the registry (no address is configured anywhere) and
calls it with the request's Context, so the caller's deadline and request id travel on:
``X-Request-Timeout-Ms`` with what is left of the budget, ``X-Request-ID`` unchanged.

Serve it on its own with (the same registry as the inventory)::

    DISTSYS_REGISTRY_URL=sqlite:///.distsys/registry.db \\
        distsys service run --app-dir examples/orders_inventory --factory orders:from_environment
"""

from __future__ import annotations

import itertools
import os
from typing import Annotated

import msgspec

from distsys.errors import DeadlineExceededError
from distsys.registry import Registry, open_registry
from distsys.service import HTTPError, Request, Service, ServiceClient


class Line(msgspec.Struct, forbid_unknown_fields=True):
    sku: str
    quantity: Annotated[int, msgspec.Meta(gt=0)]


class Order(msgspec.Struct, forbid_unknown_fields=True):
    customer: str
    lines: list[Line]


class Reservation(msgspec.Struct):
    reservation: int
    order: str
    lines: list[Line]
    request_id: str


class Placed(msgspec.Struct):
    order: str
    customer: str
    reservation: int
    lines: list[Line]
    inventory_saw_request_id: str


def create(registry: Registry) -> Service:
    """Return an orders service that finds the inventory service in ``registry``."""
    svc = Service("orders", "1.0")
    # Resolves "inventory" through the registry, balances over its instances with a
    # breaker each, and forwards the request's remaining budget and request id.
    inventory = ServiceClient("inventory", registry)
    numbers = itertools.count(1)
    placed: dict[str, Placed] = {}

    @svc.post("/orders", status=201)
    async def place(order: Order, request: Request) -> Placed:
        number = f"o-{next(numbers)}"
        reply = await inventory.post(
            "/reservations",
            json={"order": number, "lines": order.lines},
            ctx=request.ctx,  # the deadline and request id go with the call
        )
        if reply.status == 409:
            raise HTTPError(409, reply.json()["error"])
        if reply.status == 504:
            raise DeadlineExceededError()  # the budget ran out downstream: 504 here too
        if reply.status != 201:
            raise HTTPError(502, f"inventory answered {reply.status}")
        reservation = reply.json(Reservation)
        result = Placed(
            number, order.customer, reservation.reservation, order.lines, reservation.request_id
        )
        placed[number] = result
        return result

    @svc.get("/orders/{number}")
    async def get_order(number: str) -> Placed:
        if number not in placed:
            raise HTTPError(404, f"no order {number}")
        return placed[number]

    @svc.on_shutdown
    async def close_client() -> None:
        await inventory.aclose()

    return svc


def from_environment() -> Service:
    """Return the service on the registry named by ``$DISTSYS_REGISTRY_URL`` (for the CLI)."""
    return create(open_registry(os.environ.get("DISTSYS_REGISTRY_URL", "memory://")))
