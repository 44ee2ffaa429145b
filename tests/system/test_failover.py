"""A replica SIGKILLed under load: idempotent requests in flight to it fail over.

Three catalog replicas behind the gateway (round robin, so each has its share). Slow
GETs and POSTs are put in flight on every replica, a load runs, and one replica is
killed with SIGKILL: its GET is retried on another replica and succeeds, its POST (not
idempotent, and it had reached the replica) is answered 502, and the load sees at most a
handful of failures, none once the replica's breaker has ejected it.
"""

from __future__ import annotations

import asyncio
import re
import signal
from typing import Any

from tests.service.wire import Reply, request
from tests.system.conftest import WAIT, Load, Replica, System, eventually

CATALOG: dict[str, Any] = {
    "name": "catalog",
    "prefix": "/api",
    "service": "catalog",
    "strip_prefix": True,
    "balancer": "round_robin",
    "retries": 3,
    "timeout": "20s",
    "breaker": {"failure_rate": 0.5, "minimum_calls": 5, "window": "2s", "wait": "30s"},
}
SLOW_MS = 2000


def started(replica: Replica) -> dict[str, str]:
    """Return the requests whose work started on ``replica``: request id -> method."""
    return {
        rid: method
        for line in replica.lines("work started")
        for method, rid in re.findall(r"work started (GET|POST) (\S+)", line)
    }


async def test_a_killed_replica_fails_over_idempotent_requests(system: System) -> None:
    replicas = await system.start_replicas(3)
    await system.start_gateway(CATALOG)
    await system.until_gateway_picks("catalog", {r.instance_id for r in replicas})

    # Six slow requests, one after another from the balancer's point of view: two each.
    def slow(method: str, i: int) -> asyncio.Task[Reply]:
        headers = {"X-Request-ID": f"{method.lower()}-{i}"}
        if method == "GET":
            call = request(system.port, "GET", f"/api/slow?ms={SLOW_MS}", headers=headers)
        else:
            work = {"ms": SLOW_MS}
            call = request(system.port, "POST", "/api/slow", json_body=work, headers=headers)
        return asyncio.create_task(call)

    calls = {f"{m.lower()}-{i}": slow(m, i) for i in range(3) for m in ("GET", "POST")}
    load = Load(system.url("/api/items/1"), rate=100)
    try:
        await eventually(lambda: sum(len(started(r)) for r in replicas) == 6)
        mixed = [r for r in replicas if set(started(r).values()) == {"GET", "POST"}]
        assert mixed, [started(r) for r in replicas]  # round robin: two requests each
        victim = mixed[0]
        in_flight = started(victim)
        load.start()
        await eventually(lambda: load.totals.sent > 0)  # the load is running

        victim.child.signal_group(signal.SIGKILL)
        assert await victim.child.exited(WAIT)
        # The breaker opens and ejects the dead replica; then nothing fails any more.
        await system.until_gateway_picks(
            "catalog", {r.instance_id for r in replicas if r is not victim}
        )
        before = load.totals.failed
        sent = load.totals.sent
        await eventually(lambda: load.totals.sent >= sent + 150)
        after = load.totals.failed - before
        totals = await load.stop()
        replies = {rid: await asyncio.wait_for(task, WAIT) for rid, task in calls.items()}
    finally:
        load.cancel()
        for task in calls.values():
            task.cancel()

    errors = await system.upstream_errors("catalog")
    print(f"load: {totals}; gateway upstream errors: {dict(errors)}")  # the report (-s)
    for rid, method in in_flight.items():
        if method == "GET":  # retried on another replica, where it started again
            assert replies[rid].status == 200, replies[rid]
            assert replies[rid].json()["served_by"] != victim.instance_id
            assert any(rid in started(r) for r in replicas if r is not victim)
        else:  # it had reached the replica: not repeated, 502
            assert replies[rid].status == 502, replies[rid]
            assert not any(rid in started(r) for r in replicas if r is not victim)
    for rid, reply in replies.items():
        if rid not in in_flight:
            assert reply.status == 200, (rid, reply)
    assert errors["lost"] >= len(in_flight)  # the gateway saw the connections die
    # Bounded: the load's requests that met the dead replica were retried elsewhere.
    assert totals.failed <= max(2, totals.sent // 100), str(totals)
    assert after == 0, f"{after} failed after the ejection; {totals}"
