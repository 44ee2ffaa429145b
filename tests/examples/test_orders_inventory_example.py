"""examples/orders_inventory: the inventory service alone, and both services together."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

import distsys.service
from tests.examples.test_examples import EXAMPLES, match, run_example
from tests.service.wire import request, serving

HERE = EXAMPLES / "orders_inventory"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"orders_inventory_{name}", HERE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # msgspec resolves the Structs' annotations through it
    spec.loader.exec_module(module)
    return module


async def test_the_inventory_reserves_all_lines_or_none() -> None:
    inventory = load("inventory")
    svc = inventory.create({"apple": 5, "pear": 1})
    async with serving(svc) as port:
        assert (await request(port, "GET", "/stock/apple")).json() == {
            "sku": "apple",
            "available": 5,
        }
        assert (await request(port, "GET", "/stock/kiwi")).status == 404
        both = {
            "order": "o-1",
            "lines": [{"sku": "apple", "quantity": 2}, {"sku": "pear", "quantity": 2}],
        }
        refused = await request(port, "POST", "/reservations", json_body=both)
        assert refused.status == 409
        assert refused.json()["error"] == "not enough pear (1 left, 2 asked)"
        # nothing was taken: the apples are all still there
        assert (await request(port, "GET", "/stock/apple")).json()["available"] == 5
        ok = {"order": "o-2", "lines": [{"sku": "apple", "quantity": 2}]}
        made = await request(
            port, "POST", "/reservations", json_body=ok, headers={"X-Request-ID": "r-9"}
        )
        assert made.status == 201
        assert made.json() == {
            "reservation": 1,
            "order": "o-2",
            "lines": ok["lines"],
            "request_id": "r-9",
        }
        assert (await request(port, "GET", "/stock/apple")).json()["available"] == 3
        invalid = {"order": "o-3", "lines": [{"sku": "apple", "quantity": 0}]}
        bad = await request(port, "POST", "/reservations", json_body=invalid)
        assert bad.status == 400
        assert bad.json()["field"] == "lines[0].quantity"


@pytest.mark.skipif(
    not hasattr(distsys.service, "ServiceClient"),
    reason="the orders side calls inventory with ServiceClient, not in distsys.service yet",
)
def test_orders_calls_inventory_through_the_registry() -> None:
    out = run_example("orders_inventory/main.py")
    match(r"inventory serving on http://127\.0\.0\.1:\d+, orders on http://127\.0\.0\.1:\d+", out)
    match(r"order o-1 for ada: 201, reserved apple x3, pear x1 ", out)
    match(r"\(request id demo-1 seen by inventory: yes\)", out)
    match(r"order for bob: 409 not enough pear \(1 left, 5 asked\)", out)
    match(r"order for cy with a 100 ms budget for a slow item: 504 deadline exceeded", out)
    match(r"stock now: apple 7, pear 1, piano 1", out)
    match(r"stopped: orders terminated, inventory terminated", out)
    match(r"registered now: \[\]", out)
