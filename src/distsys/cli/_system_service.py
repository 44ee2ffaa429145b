"""The service ``distsys demo system`` runs replicas of: a small, stateless catalog.

Each replica runs in a process of its own (``distsys service run
distsys.cli._system_service:svc --registry URL``) and answers ``GET /items/{id}`` with
the item and its own instance id, so an answer shows which replica served it.
"""

from __future__ import annotations

import msgspec

from distsys.service import Service

__all__ = ["Item", "svc"]

svc = Service("catalog", "1.0")


class Item(msgspec.Struct):
    """A catalog item, and the replica that served it."""

    id: int
    name: str
    price: float
    served_by: str


@svc.get("/items/{id:int}")
async def get_item(id: int) -> Item:
    return Item(id, f"item {id}", round(1 + (id % 97) * 0.25, 2), svc.instance_id)
