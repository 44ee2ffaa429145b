"""distsys registry ls / watch against a SQLite registry file."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from click.testing import CliRunner, Result

from distsys.cli import main
from distsys.registry import Instance, Registration, Status, open_registry


async def invoke(args: list[str]) -> Result:
    """Run the CLI in a thread: it runs its own event loop."""
    return await asyncio.to_thread(CliRunner().invoke, main, args)


async def register(url: str, *instances: Instance) -> list[Registration]:
    registry = open_registry(url)
    return [await registry.register(i, ttl=60) for i in instances]


def test_ls_lists_instances_with_their_status(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"

    async def scenario() -> None:
        orders, draining, users = await register(
            url,
            Instance("orders", "o1", "127.0.0.1", 8001, metadata={"version": "2.1"}),
            Instance("orders", "o2", "127.0.0.1", 8002, zone="eu-1"),
            Instance("users", "u1", "10.0.0.7", 9000, weight=3),
        )
        await draining.set_status(Status.DRAINING)
        everything = await invoke(["registry", "ls", "--url", url])
        assert everything.exit_code == 0, everything.output
        for text in ("orders", "o1", "127.0.0.1:8001", "version=2.1", "DRAINING", "eu-1"):
            assert text in everything.output
        assert "10.0.0.7:9000" in everything.output
        one = await invoke(["registry", "ls", "--url", url, "users"])
        assert "u1" in one.output
        assert "o1" not in one.output
        empty = await invoke(["registry", "ls", "--url", url, "billing"])
        assert "no instances registered for billing" in empty.output
        for registration in (orders, draining, users):
            await registration.aclose()

    asyncio.run(scenario())


def test_watch_prints_changes_as_they_happen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"

    async def scenario() -> list[str]:
        (first,) = await register(url, Instance("api", "a1", "127.0.0.1", 7001))
        watcher = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "distsys.cli", "registry", "watch", "--url", url,
            "--count", "3", "api", stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert watcher.stdout is not None
        lines = [(await asyncio.wait_for(watcher.stdout.readline(), 30)).decode()]
        (second,) = await register(url, Instance("api", "a2", "127.0.0.1", 7002))
        await second.set_status(Status.DRAINING)
        out, _ = await asyncio.wait_for(watcher.communicate(), 30)
        await second.aclose()
        await first.aclose()
        return lines + out.decode().splitlines()

    lines = asyncio.run(scenario())
    assert "snapshot: 1 instance(s): a1@127.0.0.1:7001" in lines[0]
    assert "added a2 127.0.0.1:7002 UP; now 2 instance(s)" in lines[1]
    assert "updated a2 127.0.0.1:7002 DRAINING" in lines[2]


def test_a_bad_url_is_refused_naming_the_option() -> None:
    outcome = CliRunner().invoke(main, ["registry", "ls", "--url", "sqlit:///x.db"])
    assert outcome.exit_code != 0
    assert "--url" in outcome.output
    assert "did you mean sqlite://" in outcome.output
