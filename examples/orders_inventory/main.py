"""Two services that find each other through a registry: orders calls inventory.

Run: ``python examples/orders_inventory/main.py``

Both services run in this process on free ports and register in one in-memory registry;
the orders service finds the inventory there. A client then places three orders: one
that succeeds (its request id travels from the client through orders to inventory), one
the inventory refuses (409), and one whose 100 ms budget runs out while the inventory
consults a slow warehouse (504: the budget travelled with the call, and the work was
cancelled at the deadline on both services). Finally both services drain and stop.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inventory
import orders

from distsys.http import HTTPClient
from distsys.registry import open_registry
from distsys.service import Service, State


async def start(svc: Service, registry: Any) -> asyncio.Task[None]:
    task = asyncio.create_task(svc.serve("127.0.0.1", 0, registry=registry, drain_timeout=5))
    await asyncio.wait_for(svc.lifecycle.wait_for(State.RUNNING), 10)
    return task


async def main() -> None:
    registry = open_registry("memory://")
    stock = inventory.create({"apple": 10, "pear": 2, "piano": 1})
    shop = orders.create(registry)
    tasks = [await start(stock, registry), await start(shop, registry)]
    print(f"inventory serving on {stock.url}, orders on {shop.url} (registry memory://)")
    assert shop.address is not None
    host, port = shop.address

    async with HTTPClient() as client:
        pool = client.pool(host, port)

        async def place(order: dict[str, Any], **headers: str) -> tuple[int, dict[str, Any]]:
            body = json.dumps(order).encode()
            reply = await pool.request(
                "POST", "/orders", {"Content-Type": "application/json", **headers}, body
            )
            return reply.status, json.loads(await reply.read())

        basket = [{"sku": "apple", "quantity": 3}, {"sku": "pear", "quantity": 1}]
        status, placed = await place(
            {"customer": "ada", "lines": basket}, **{"X-Request-ID": "demo-1"}
        )
        lines = ", ".join(f"{line['sku']} x{line['quantity']}" for line in placed["lines"])
        seen = "yes" if placed["inventory_saw_request_id"] == "demo-1" else "no"
        print(f"order {placed['order']} for ada: {status}, reserved {lines} "
              f"(request id demo-1 seen by inventory: {seen})")  # fmt: skip

        status, refused = await place(
            {"customer": "bob", "lines": [{"sku": "pear", "quantity": 5}]}
        )
        print(f"order for bob: {status} {refused['error']}")

        status, late = await place(
            {"customer": "cy", "lines": [{"sku": "piano", "quantity": 1}]},
            **{"X-Request-Timeout-Ms": "100"},
        )
        print(f"order for cy with a 100 ms budget for a slow item: {status} {late['error']}")

        levels = []
        for sku in ("apple", "pear", "piano"):
            reply = await client.request("GET", f"{stock.url}/stock/{sku}")
            levels.append(f"{sku} {json.loads(await reply.read())['available']}")
        print(f"stock now: {', '.join(levels)}")

    shop.stop()
    stock.stop()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    print(f"stopped: orders {shop.state.value}, inventory {stock.state.value}")
    print(f"registered now: {await registry.services()}")
    await registry.aclose()


if __name__ == "__main__":
    asyncio.run(main())
