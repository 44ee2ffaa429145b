"""A deadline set at the gateway crosses two hops and cancels the downstream work.

client ─▶ gateway ─▶ front ─(ServiceClient)─▶ catalog: the client gives 1.5 s for work
that takes 8 s. Each hop forwards what is left of the budget (less at every hop), the
catalog's work is cancelled at the deadline (it says so in its output), and the client
gets 504 long before the work would have ended.
"""

from __future__ import annotations

import re
import time

from tests.service.wire import request
from tests.system.conftest import System, eventually

FRONT = {"name": "front", "prefix": "/front", "service": "front", "strip_prefix": True,
         "timeout": "20s"}  # fmt: skip
BUDGET_MS = 1500
WORK_MS = 8000


async def test_the_deadline_crosses_two_hops_and_cancels_the_work(system: System) -> None:
    catalog = await system.start_service()
    front = await system.start_service("tests.system.apps:front", "--factory")
    await system.start_gateway(FRONT)
    await system.until_gateway_picks("front", {front.instance_id})

    began = time.monotonic()
    reply = await request(
        system.port,
        "GET",
        f"/front/chain?ms={WORK_MS}",
        headers={"X-Request-Timeout-Ms": str(BUDGET_MS), "X-Request-ID": "deadline-1"},
    )
    waited = time.monotonic() - began
    assert reply.status == 504, reply
    assert reply.headers["x-request-id"] == "deadline-1"
    assert waited < WORK_MS / 1000  # it gave up at the deadline, not when the work ended

    # The catalog, two hops down, was told less than the client's budget and gave up.
    await eventually(lambda: bool(catalog.lines("work cancelled GET deadline-1")))
    assert not catalog.lines("work done")
    (front_line,) = front.lines("chain started GET deadline-1")
    (catalog_line,) = catalog.lines("work started GET deadline-1")
    at_front = int(re.findall(r"budget=(\d+)", front_line)[0])
    at_catalog = int(re.findall(r"budget=(\d+)", catalog_line)[0])
    assert 0 < at_catalog <= at_front <= BUDGET_MS


async def test_a_spent_budget_is_not_sent_on(system: System) -> None:
    front = await system.start_service("tests.system.apps:front", "--factory")
    await system.start_gateway(FRONT)
    await system.until_gateway_picks("front", {front.instance_id})
    reply = await request(
        system.port,
        "GET",
        "/front/chain?ms=10",
        headers={"X-Request-Timeout-Ms": "0", "X-Request-ID": "spent-1"},
    )
    assert reply.status == 504
    assert reply.json()["request_id"] == "spent-1"
    assert not front.lines("chain started")  # answered by the gateway, never forwarded
