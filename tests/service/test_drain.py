"""SIGTERM on a real ``distsys service run`` process: DRAINING, deregistered, no new
connections, the in-flight request still answered, then a clean exit."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from distsys.registry import ChangeKind, ServiceChange, Status, open_registry
from tests.service.wire import PROCESS_WAIT, WAIT, Connection, ServiceProcess, request


async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def until_refused(port: int) -> None:
    """Wait (bounded) until the port refuses connections: the process closed its socket."""
    async with asyncio.timeout(PROCESS_WAIT):
        while not await refused(port):  # noqa: ASYNC110 - the socket is in another process
            await asyncio.sleep(0.01)


async def test_sigterm_drains_in_flight_requests_and_deregisters_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    release = tmp_path / "release"
    service = await ServiceProcess.start(
        "tests.service.apps:svc", "--registry", url, "--drain-timeout", str(PROCESS_WAIT),
        env={"DISTSYS_TEST_RELEASE": str(release)},
    )  # fmt: skip
    changes: list[ServiceChange] = []
    try:
        async with open_registry(url) as registry:
            (instance,) = await registry.instances("apps")
            assert instance.port == service.port
            assert instance.status is Status.UP

            watching = asyncio.Event()

            async def watch() -> None:
                async for change in registry.watch("apps"):
                    changes.append(change)
                    watching.set()
                    if change.kind is ChangeKind.REMOVED:
                        return

            watcher = asyncio.create_task(watch())
            await asyncio.wait_for(watching.wait(), WAIT)

            # A slow request is in flight when SIGTERM arrives.
            slow = await Connection.open(service.port)
            await slow.send("GET", "/slow")
            await service.wait_for_line("slow request started")
            service.proc.send_signal(signal.SIGTERM)

            # Deregistered (DRAINING, then DOWN, then gone) while the request still runs...
            await asyncio.wait_for(watcher, PROCESS_WAIT)
            assert await registry.instances("apps") == []
            # ...and the listening socket is closed: new connections are refused.
            await until_refused(service.port)
            assert service.proc.returncode is None  # still draining the slow request

            release.touch()
            reply = await slow.read()
            assert reply.status == 200
            assert reply.json() == {"slow": "done"}
            await slow.close()

        code, out, err = await service.wait()
        assert code == 0, err
        assert "apps stopped (terminated)" in out
    finally:
        service.kill()
    statuses = [c.instance.status for c in changes if c.kind is ChangeKind.UPDATED and c.instance]
    assert statuses == [Status.DRAINING, Status.DOWN]
    assert changes[-1].kind is ChangeKind.REMOVED
    assert not changes[-1].expired  # deregistered, not timed out


async def test_a_second_signal_cuts_the_drain_short(tmp_path: Path) -> None:
    service = await ServiceProcess.start(
        "tests.service.apps:svc", "--drain-timeout", str(PROCESS_WAIT),
        env={"DISTSYS_TEST_RELEASE": str(tmp_path / "never")},
    )  # fmt: skip
    try:
        slow = await Connection.open(service.port)
        await slow.send("GET", "/slow")
        await service.wait_for_line("slow request started")
        service.proc.send_signal(signal.SIGTERM)
        await until_refused(service.port)
        service.proc.send_signal(signal.SIGINT)
        code, _, err = await service.wait()
        assert code == 0, err
        await slow.close()
    finally:
        service.kill()


async def test_an_idle_service_stops_at_once_on_sigterm(tmp_path: Path) -> None:
    service = await ServiceProcess.start("tests.service.apps:svc")
    try:
        assert (await request(service.port, "GET", "/hello")).status == 200
        service.proc.send_signal(signal.SIGTERM)
        code, out, err = await service.wait()
        assert code == 0, err
        assert "stopped (terminated)" in out
    finally:
        service.kill()
