"""A rolling restart of every replica, one by one, drops no request under steady load.

Each replica gets SIGTERM: it marks itself DRAINING and deregisters (the gateway stops
picking it), stops accepting, finishes what it has, and exits 0. A replacement starts
and registers before the next replica goes. The gateway's retries cover the moments a
pooled connection meets a replica that has just closed it.
"""

from __future__ import annotations

import signal
from typing import Any

from tests.system.conftest import STOP, Load, System, eventually

CATALOG: dict[str, Any] = {
    "name": "catalog",
    "prefix": "/api",
    "service": "catalog",
    "strip_prefix": True,
    "retries": 3,
    "timeout": "10s",
}


async def test_a_rolling_restart_drops_no_request(system: System) -> None:
    replicas = await system.start_replicas(3)
    await system.start_gateway(CATALOG)
    current = {r.instance_id for r in replicas}
    await system.until_gateway_picks("catalog", current)

    load = Load(system.url("/api/items/3"), rate=100).start()
    try:
        await eventually(lambda: load.totals.sent > 0)
        fresh = []
        for old in replicas:
            old.child.signal_group(signal.SIGTERM)
            assert await old.child.exited(STOP), old.child.output()
            assert old.child.process.returncode == 0, old.child.output()
            assert "catalog stopped (terminated)" in old.child.output()
            new = await system.start_service()
            fresh.append(new)
            current = (current - {old.instance_id}) | {new.instance_id}
            await system.until_gateway_picks("catalog", current)
        sent = load.totals.sent
        await eventually(lambda: load.totals.sent >= sent + 100)  # the new ones serve
        totals = await load.stop()
    finally:
        load.cancel()

    print(f"rolling restart under load: {totals}")
    assert totals.sent >= 300
    assert totals.failed == 0, str(totals)
    served = await system.admin("/services")
    (catalog,) = [s for s in served["services"] if s["service"] == "catalog"]
    requests = {i["id"]: i["requests"] for i in catalog["instances"]}
    assert set(requests) == {r.instance_id for r in fresh}  # the old ones left the registry
    assert all(requests[r.instance_id] > 0 for r in fresh), requests
