"""The inventory service: stock levels, and reservations that take all lines or none.

Serve it on its own with::

    distsys service run --app-dir examples/orders_inventory inventory:svc \\
        --registry sqlite:///.distsys/registry.db
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Annotated

import msgspec

from distsys.service import HTTPError, Request, Service

SLOW_SKUS = frozenset({"piano"})  # looked up in a slow warehouse system: takes 0.5 s


class Line(msgspec.Struct, forbid_unknown_fields=True):
    sku: str
    quantity: Annotated[int, msgspec.Meta(gt=0)]


class ReservationRequest(msgspec.Struct, forbid_unknown_fields=True):
    order: str
    lines: list[Line]


class Reservation(msgspec.Struct):
    reservation: int
    order: str
    lines: list[Line]
    request_id: str  # the id of the request that made it: forwarded by the orders service


class Stock(msgspec.Struct):
    sku: str
    available: int


def create(stock: dict[str, int]) -> Service:
    """Return an inventory service over its own copy of ``stock``."""
    svc = Service("inventory", "1.0")
    levels = dict(stock)
    numbers = itertools.count(1)

    @svc.get("/stock/{sku}")
    async def get_stock(sku: str) -> Stock:
        if sku not in levels:
            raise HTTPError(404, f"unknown sku {sku!r}")
        return Stock(sku, levels[sku])

    @svc.post("/reservations", status=201)
    async def reserve(body: ReservationRequest, request: Request) -> Reservation:
        if any(line.sku in SLOW_SKUS for line in body.lines):
            await asyncio.sleep(0.5)  # cancelled here if the caller's budget runs out first
        for line in body.lines:  # check every line before taking any: all or nothing
            available = levels.get(line.sku, 0)
            if available < line.quantity:
                raise HTTPError(
                    409, f"not enough {line.sku} ({available} left, {line.quantity} asked)"
                )
        for line in body.lines:
            levels[line.sku] -= line.quantity
        return Reservation(next(numbers), body.order, body.lines, request.request_id)

    return svc


svc = create({"apple": 10, "pear": 2, "piano": 1})
