"""Real processes on one SQLite registry: a SIGKILLed instance disappears after its lease."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from distsys.registry import ChangeKind, open_registry

REGISTER = textwrap.dedent(
    """
    import asyncio, sys
    from distsys.registry import Instance, open_registry

    async def main() -> None:
        registry = open_registry(sys.argv[1])
        await registry.register(
            Instance("worker", sys.argv[2], "127.0.0.1", int(sys.argv[3])), ttl=1.0, heartbeat=0.25
        )
        print("registered", flush=True)
        await asyncio.Event().wait()  # heartbeat until killed

    asyncio.run(main())
    """
)


def spawn(url: str, instance_id: str, port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", REGISTER, url, instance_id, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "registered"
    return process


def stop(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait(10)
    if process.stdout is not None:
        process.stdout.close()


async def test_killed_instances_disappear_after_their_lease(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    processes = [spawn(url, f"w{i}", 7000 + i) for i in range(3)]
    try:
        async with open_registry(url) as registry:
            changes = registry.watch("worker")
            reset = await asyncio.wait_for(anext(changes), 10)
            assert [i.id for i in reset.instances] == ["w0", "w1", "w2"]
            # Two heartbeating processes stay; the killed one's lease runs out.
            os.kill(processes[1].pid, signal.SIGKILL)
            processes[1].wait(10)
            async with asyncio.timeout(15):
                change = await anext(changes)
                while change.kind is not ChangeKind.REMOVED:
                    change = await anext(changes)
            assert change.instance is not None
            assert change.instance.id == "w1"
            assert change.expired
            assert [i.id for i in change.instances] == ["w0", "w2"]
            assert [i.id for i in await registry.instances("worker")] == ["w0", "w2"]
            await changes.aclose()
    finally:
        for process in processes:
            stop(process)


async def test_a_resolver_in_another_process_sees_registrations(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    async with (
        open_registry(url) as registry,
        registry.resolver("worker", self_preservation=1.0) as resolver,
    ):
        process = spawn(url, "w9", 7009)
        try:
            await resolver.wait_for(lambda r: len(r.available()) == 1, timeout=10)
            assert resolver.available()[0].address == "127.0.0.1:7009"
            process.terminate()  # no graceful deregistration in the script: the lease expires
            process.wait(10)
            await resolver.wait_for(lambda r: not r.available(), timeout=15)
        finally:
            stop(process)
